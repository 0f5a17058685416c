#include "encode/image_rings.h"

#include <cmath>

namespace mmu {

RingGeometry::RingGeometry(int64_t crop, int64_t rings, int64_t modes)
    : crop_(crop), rings_(rings), modes_(modes), ring_(crop * crop, -1), cos_(crop * crop * modes), sin_(crop * crop * modes) {
  // Centred between pixels for an even crop, on one for an odd crop: np.rot90 of a
  // centred stamp maps the crop onto itself about this point.
  const double c = (crop - 1) / 2.0, radius = crop / 2.0;
  for (int64_t y = 0; y < crop; ++y)
    for (int64_t x = 0; x < crop; ++x) {
      const int64_t p = y * crop + x;
      const double dy = y - c, dx = x - c;
      const auto k = static_cast<int64_t>(std::floor(std::hypot(dy, dx) / radius * rings));
      if (k < rings) ring_[p] = static_cast<int32_t>(k);
      const double theta = std::atan2(dy, dx);
      for (int64_t m = 1; m <= modes; ++m) {
        cos_[p * modes + m - 1] = std::cos(m * theta);
        sin_[p * modes + m - 1] = std::sin(m * theta);
      }
    }
}

bool RingGeometry::describe(const float* px, const uint8_t* ok, int64_t stride, double inv_softening, float* out) const {
  std::vector<double> mean(rings_, 0.0), re(rings_ * modes_, 0.0), im(rings_ * modes_, 0.0);
  std::vector<int64_t> n(rings_, 0);
  bool finite = true;
  for (int64_t y = 0; y < crop_; ++y)
    for (int64_t x = 0; x < crop_; ++x) {
      const int64_t at = y * stride + x;
      if (!ok[at]) continue;
      const float v = px[at];
      if (!std::isfinite(v)) {
        finite = false;
        continue;
      }
      const int64_t p = y * crop_ + x;
      const int32_t k = ring_[p];
      if (k < 0) continue;  // a crop corner: no rotation keeps it inside the crop
      // In double: a float pixel near FLT_MAX over the softening overflows to Inf.
      const double s = std::asinh(static_cast<double>(v) * inv_softening);
      mean[k] += s;
      ++n[k];
      for (int64_t m = 0; m < modes_; ++m) {
        re[k * modes_ + m] += s * cos_[p * modes_ + m];
        im[k * modes_ + m] += s * sin_[p * modes_ + m];
      }
    }
  for (int64_t k = 0; k < rings_; ++k) {
    const double inv = n[k] ? 1.0 / n[k] : 0.0;
    out[k] = static_cast<float>(mean[k] * inv);
    for (int64_t m = 0; m < modes_; ++m)
      out[(m + 1) * rings_ + k] = static_cast<float>(std::hypot(re[k * modes_ + m], im[k * modes_ + m]) * inv);
  }
  return finite;
}

}  // namespace mmu
