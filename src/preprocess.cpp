#include "mmu/preprocess.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

namespace mmu {

int64_t image_feature_dim(int64_t bands, const ImageFeatureOptions& opt) {
  const int64_t side = opt.crop / opt.block;
  return bands * side * side;
}

namespace {

void normalize_row(float* x, int64_t d) {
  double s = 0.0;
  for (int64_t j = 0; j < d; ++j) s += static_cast<double>(x[j]) * x[j];
  if (s <= 0.0) return;
  const float inv = static_cast<float>(1.0 / std::sqrt(s));
  for (int64_t j = 0; j < d; ++j) x[j] *= inv;
}

// Records the smallest failing object index across threads.
void note_bad(std::atomic<int64_t>& first_bad, int64_t i) {
  int64_t cur = first_bad.load();
  while ((cur < 0 || i < cur) && !first_bad.compare_exchange_weak(cur, i)) {
  }
}

}  // namespace

int64_t image_features(const ImageBatch& b, const ImageFeatureOptions& opt, float* out) {
  const int64_t crop = std::min({opt.crop, b.height, b.width});
  const int64_t side = opt.crop / opt.block;
  const int64_t block = std::max<int64_t>(1, crop / side);
  const int64_t y0 = (b.height - side * block) / 2, x0 = (b.width - side * block) / 2;
  const int64_t dim = image_feature_dim(b.bands, opt);
  const int64_t plane = b.height * b.width;
  const float inv_soft = 1.0f / opt.softening;
  std::atomic<int64_t> first_bad{-1};

#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < b.count; ++i) {
    float* f = out + i * dim;
    bool bad = false;
    for (int64_t band = 0; band < b.bands; ++band) {
      const float* px = b.pixels.data() + (i * b.bands + band) * plane;
      const uint8_t* ok = b.good.data() + (i * b.bands + band) * plane;
      for (int64_t by = 0; by < side; ++by) {
        for (int64_t bx = 0; bx < side; ++bx) {
          double sum = 0.0;
          int64_t n = 0;
          for (int64_t y = 0; y < block; ++y) {
            const int64_t row = (y0 + by * block + y) * b.width + x0 + bx * block;
            for (int64_t x = 0; x < block; ++x) {
              if (!ok[row + x]) continue;
              const float v = px[row + x];
              if (!std::isfinite(v)) {
                bad = true;
                continue;
              }
              sum += std::asinh(v * inv_soft);
              ++n;
            }
          }
          f[(band * side + by) * side + bx] = n ? static_cast<float>(sum / n) : 0.0f;
        }
      }
    }
    if (bad) note_bad(first_bad, i);
    normalize_row(f, dim);
  }
  return first_bad.load();
}

int64_t spectrum_feature_dim(const SpectrumFeatureOptions& opt) { return opt.bins; }

int64_t spectrum_features(const SpectrumBatch& b, const SpectrumFeatureOptions& opt, float* out) {
  const int64_t nb = opt.bins;
  const double lmin = std::log(opt.lambda_min), lmax = std::log(opt.lambda_max);
  const double scale = nb / (lmax - lmin);
  std::atomic<int64_t> first_bad{-1};

#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < b.count; ++i) {
    std::vector<double> wsum(nb, 0.0), fsum(nb, 0.0);
    const float* flux = b.flux.data() + i * b.length;
    const float* ivar = b.ivar.data() + i * b.length;
    const float* lam = b.lambda.data() + i * b.length;
    const uint8_t* ok = b.good.data() + i * b.length;
    bool bad = false;
    for (int64_t p = 0; p < b.length; ++p) {
      if (!ok[p]) continue;
      if (!std::isfinite(flux[p]) || !std::isfinite(ivar[p])) {
        bad = true;
        continue;
      }
      const int64_t k = static_cast<int64_t>(std::floor((std::log(static_cast<double>(lam[p])) - lmin) * scale));
      if (k < 0 || k >= nb) continue;
      wsum[k] += ivar[p];
      fsum[k] += static_cast<double>(ivar[p]) * flux[p];
    }
    // Bin means; empty bins take the linear interpolation of their neighbours.
    std::vector<double> v(nb, 0.0);
    std::vector<int64_t> filled;
    for (int64_t k = 0; k < nb; ++k)
      if (wsum[k] > 0.0) {
        v[k] = fsum[k] / wsum[k];
        filled.push_back(k);
      }
    float* f = out + i * nb;
    if (filled.empty() || bad) {
      note_bad(first_bad, i);
      std::fill(f, f + nb, 0.0f);
      continue;
    }
    for (int64_t k = 0; k < filled.front(); ++k) v[k] = v[filled.front()];
    for (int64_t k = filled.back() + 1; k < nb; ++k) v[k] = v[filled.back()];
    for (size_t j = 0; j + 1 < filled.size(); ++j) {
      const int64_t a = filled[j], c = filled[j + 1];
      for (int64_t k = a + 1; k < c; ++k) v[k] = v[a] + (v[c] - v[a]) * double(k - a) / double(c - a);
    }
    double mean = 0.0;
    for (double x : v) mean += x;
    mean /= nb;
    double var = 0.0;
    for (double x : v) var += (x - mean) * (x - mean);
    const double sd = std::sqrt(var / std::max<int64_t>(1, nb - 1));
    const double inv = sd > 0.0 ? 1.0 / sd : 0.0;
    for (int64_t k = 0; k < nb; ++k) f[k] = static_cast<float>((v[k] - mean) * inv);
  }
  return first_bad.load();
}

}  // namespace mmu
