#include "mmu/model_transforms.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "mmu/error.h"
#include "mmu/image_bands.h"

namespace mmu {

int64_t find_band(const ImageBatch& b, char band) {
  // Through the MMU band table: a name's last letter says nothing of its filter.
  for (size_t k = 0; k < b.band_names.size(); ++k)
    if (const KnownBand* kb = find_known_band(b.band_names[k]); kb && kb->filter == std::string(1, band))
      return static_cast<int64_t>(k);
  if (!b.band_names.empty()) return -1;
  const std::string order = "griz";
  const auto pos = order.find(band);
  return (pos != std::string::npos && static_cast<int64_t>(pos) < b.bands) ? static_cast<int64_t>(pos) : -1;
}

namespace {

// Pixel value with the mask applied: unusable (or non-finite) pixels read as 0.
inline double pixel(const ImageBatch& b, int64_t obj, int64_t band, int64_t y, int64_t x) {
  const size_t i = static_cast<size_t>(((obj * b.bands + band) * b.height + y) * b.width + x);
  const float v = b.pixels[i];
  return (b.good[i] && std::isfinite(v)) ? static_cast<double>(v) : 0.0;
}

int64_t require_band(const ImageBatch& b, char band, const char* transform) {
  const int64_t k = find_band(b, band);
  if (k < 0) throw FormatError(std::string(transform) + " needs band '" + band + "', which the images lack");
  return k;
}

void require_crop(const ImageBatch& b, int64_t crop, const char* transform) {
  if (b.height < crop || b.width < crop)
    throw FormatError(std::string(transform) + " crops " + std::to_string(crop) + "x" + std::to_string(crop) +
                      " pixels, but the images are " + std::to_string(b.height) + "x" + std::to_string(b.width));
}

}  // namespace

namespace {

// asinh(x) for x >= 0 in single precision, written so that a loop of it
// vectorises (std::asinh does not, and was 1.5 ms of 1.5 ms per image):
// asinh x = log1p(u), u = x + x^2 / (1 + sqrt(1 + x^2)), and log1p u =
// e ln 2 + 2 atanh(s) with s = (m - 1) / (m + 1) after 1 + u = 2^e m,
// m in [sqrt(1/2), sqrt(2)), or s = u / (2 + u) directly while u < sqrt(2) - 1
// (no rounding of 1 + u there, so small x keep their relative precision).
// |s| <= 0.1716: the atanh series to s^11 leaves < 1e-9; measured error
// < 4e-7 relative (tests compare the transform with numpy to 1e-6).
inline float asinh_nonnegative(float x) {
  const float u = x + x * x / (1.0f + std::sqrt(1.0f + x * x));
  const float v = 1.0f + u;
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  int32_t e = static_cast<int32_t>(bits >> 23) - 127;
  const uint32_t mantissa = (bits & 0x007fffffu) | 0x3f800000u;  // v / 2^e, in [1, 2)
  float m;
  std::memcpy(&m, &mantissa, sizeof m);
  const bool halve = m > 1.41421356f;
  m = halve ? 0.5f * m : m;
  e = halve ? e + 1 : e;
  const bool small = u < 0.41421356f;
  const float s_small = u / (2.0f + u), s_large = (m - 1.0f) / (m + 1.0f);  // both: a select, not a branch
  const float s = small ? s_small : s_large;
  const float k = small ? 0.0f : static_cast<float>(e);
  const float s2 = s * s;
  const float series = 1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9 + s2 * (1.0f / 11)))));
  return k * 0.693147180559945f + 2.0f * s * series;
}

// A pixel's value with its mask applied: unusable or non-finite pixels are 0.
// Non-finite by its exponent bits, which vectorises where std::isfinite does not.
inline float usable(float v, uint8_t good) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return ((good != 0) & ((bits & 0x7f800000u) != 0x7f800000u)) ? v : 0.0f;
}

// max(0, v) and clamp(v, 0, 1) on values: std::max/std::clamp select
// references, which keeps the loop from vectorising.
inline float positive(float v) { return v > 0.0f ? v : 0.0f; }
inline float unit(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

}  // namespace

void astroclip_image(const ImageBatch& b, const AstroclipImageParams& p, float* out) {
  require_crop(b, p.crop, "astroclip-image");
  const int64_t g = require_band(b, 'g', "astroclip-image"), r = require_band(b, 'r', "astroclip-image"),
                z = require_band(b, 'z', "astroclip-image");
  // torchvision's CenterCrop, as AstroCLIP uses it: offset round((H - crop) / 2), halves to even.
  const int64_t y0 = static_cast<int64_t>(std::nearbyint((b.height - p.crop) / 2.0));
  const int64_t x0 = static_cast<int64_t>(std::nearbyint((b.width - p.crop) / 2.0));
  const int64_t plane = p.crop * p.crop, w = p.crop;
  const float q = static_cast<float>(p.q), inv_sq = static_cast<float>(1.0 / std::sqrt(p.q)),
              m = static_cast<float>(p.m), sz = static_cast<float>(p.scale_z), sr = static_cast<float>(p.scale_r),
              sg = static_cast<float>(p.scale_g);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < b.count; ++i) {
    float* o = out + i * 3 * plane;
    for (int64_t y = 0; y < p.crop; ++y) {
      auto at = [&](int64_t band) {
        return static_cast<size_t>(((i * b.bands + band) * b.height + y0 + y) * b.width + x0);
      };
      const float *pz = b.pixels.data() + at(z), *pr = b.pixels.data() + at(r), *pg = b.pixels.data() + at(g);
      const uint8_t *gz = b.good.data() + at(z), *gr = b.good.data() + at(r), *gg = b.good.data() + at(g);
      float* oz = o + y * w;  // planes: z -> 0, r -> 1, g -> 2
      float* or_ = oz + plane;
      float* og = oz + 2 * plane;
#pragma omp simd
      for (int64_t x = 0; x < w; ++x) {
        const float vz = usable(pz[x], gz[x]) * sz + m, vr = usable(pr[x], gr[x]) * sr + m,
                    vg = usable(pg[x], gg[x]) * sg + m;
        float mean = (positive(vz) + positive(vr) + positive(vg)) * (1.0f / 3.0f);
        const float f = asinh_nonnegative(q * mean) * inv_sq;
        mean = mean == 0.0f ? 1e-6f : mean;
        const float k = f / mean;
        oz[x] = unit(vz * k);
        or_[x] = unit(vr * k);
        og[x] = unit(vg * k);
      }
    }
  }
}

int64_t specformer_tokens(int64_t length, const SpecformerParams& p) {
  // As published: window starts arange(0, length - overlap, stride), then the
  // last window is always dropped; plus the statistics token.
  const int64_t overlap = p.section - p.stride;
  const int64_t starts = std::max<int64_t>(0, (length - overlap + p.stride - 1) / p.stride);
  return std::max<int64_t>(0, starts - 1) + 1;
}

void specformer_spectrum(const SpectrumBatch& b, const SpecformerParams& p, float* out) {
  const int64_t tokens = specformer_tokens(b.length, p), width = p.section + 2;
  const int64_t len = b.length;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < b.count; ++i) {
    std::vector<double> x(len);
    const float* flux = b.flux.data() + i * len;
    const uint8_t* ok = b.good.data() + i * len;
    // Unusable pixels: linear interpolation between usable neighbours (flat at the ends).
    int64_t prev = -1;
    for (int64_t k = 0; k < len; ++k) {
      if (!(ok[k] && std::isfinite(flux[k]))) continue;
      x[k] = flux[k];
      const double start = prev < 0 ? x[k] : x[prev];
      for (int64_t j = prev + 1; j < k; ++j)
        x[j] = prev < 0 ? x[k] : start + (x[k] - start) * double(j - prev) / double(k - prev);
      prev = k;
    }
    for (int64_t j = prev + 1; j < len; ++j) x[j] = prev < 0 ? 0.0 : x[prev];
    double mean = 0.0;
    for (double v : x) mean += v;
    mean /= static_cast<double>(len);
    double ss = 0.0;
    for (double v : x) ss += (v - mean) * (v - mean);
    const double sd = std::max(std::sqrt(ss / static_cast<double>(std::max<int64_t>(1, len - 1))), p.std_floor);
    float* o = out + i * tokens * width;
    std::fill(o, o + tokens * width, 0.0f);
    o[0] = static_cast<float>((mean - 2.0) / 2.0);
    o[1] = static_cast<float>((sd - 2.0) / 8.0);
    for (int64_t t = 1; t < tokens; ++t)
      for (int64_t k = 0; k < p.section; ++k)
        o[t * width + 2 + k] = static_cast<float>((x[(t - 1) * p.stride + k] - mean) / sd);
  }
}

void aion_image(const ImageBatch& b, const AionImageParams& p, float* out) {
  require_crop(b, p.crop, "aion-image");
  const char names[4] = {'g', 'r', 'i', 'z'};
  const double clamps[4] = {p.clamp_g, p.clamp_r, p.clamp_i, p.clamp_z};
  int64_t idx[4];
  for (int k = 0; k < 4; ++k) idx[k] = require_band(b, names[k], "aion-image");
  const int64_t y0 = (b.height - p.crop) / 2, x0 = (b.width - p.crop) / 2, plane = p.crop * p.crop;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < b.count; ++i)
    for (int k = 0; k < 4; ++k) {
      float* o = out + (i * 4 + k) * plane;
      for (int64_t y = 0; y < p.crop; ++y)
        for (int64_t x = 0; x < p.crop; ++x) {
          const double v = std::clamp(pixel(b, i, idx[k], y0 + y, x0 + x), -clamps[k], clamps[k]);
          o[y * p.crop + x] = static_cast<float>(std::asinh(v / 0.01) * 0.01 * 10.0);
        }
    }
}

}  // namespace mmu
