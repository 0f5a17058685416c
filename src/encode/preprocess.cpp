#include "mmu/preprocess.h"

#include "encode/image_rings.h"
#include "mmu/model_transforms.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

namespace mmu {

int64_t image_feature_dim(const ImageFeatureOptions& opt, int64_t bands) { return bands * opt.rings * (opt.modes + 1); }

std::vector<int64_t> image_feature_bands(const ImageBatch& b) {
  if (!b.space_bands.empty()) return b.space_bands;
  std::vector<int64_t> all(static_cast<size_t>(b.bands));
  for (int64_t k = 0; k < b.bands; ++k) all[k] = k;
  return all;
}

namespace {

void normalize_row(float* x, int64_t d) {
  double s = 0.0;
  for (int64_t j = 0; j < d; ++j) s += static_cast<double>(x[j]) * x[j];
  if (s <= 0.0) return;
  // In double: a float 1/norm of a row of huge values would be subnormal or 0.
  const double inv = 1.0 / std::sqrt(s);
  for (int64_t j = 0; j < d; ++j) x[j] = static_cast<float>(x[j] * inv);
}

// Records the smallest failing object index across threads.
void note_bad(std::atomic<int64_t>& first_bad, int64_t i) {
  int64_t cur = first_bad.load();
  while ((cur < 0 || i < cur) && !first_bad.compare_exchange_weak(cur, i)) {
  }
}

}  // namespace

int64_t image_features(const ImageBatch& b, const ImageFeatureOptions& opt, float* out) {
  const double scale = b.pixel_scale > 0 ? b.pixel_scale : opt.default_scale;
  const int64_t side = std::min(b.height, b.width);
  const int64_t crop = std::clamp<int64_t>(std::lround(opt.crop_arcsec / scale), std::min<int64_t>(side, 1), side);
  const int64_t y0 = (b.height - crop) / 2, x0 = (b.width - crop) / 2;
  const std::vector<int64_t> bands = image_feature_bands(b);
  const int64_t n_bands = static_cast<int64_t>(bands.size());
  const int64_t dim = image_feature_dim(opt, n_bands);
  const int64_t plane = b.height * b.width;
  const double inv_soft = 1.0 / opt.softening;
  const RingGeometry rings(crop, opt.rings, opt.modes);
  const int64_t per_band = rings.features();
  std::atomic<int64_t> first_bad{-1};

#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < b.count; ++i) {
    float* f = out + i * dim;
    std::fill(f, f + dim, 0.0f);
    bool bad = false;
    for (int64_t t = 0; t < n_bands; ++t) {
      const int64_t corner = (i * b.bands + bands[t]) * plane + y0 * b.width + x0;
      if (!rings.describe(b.pixels.data() + corner, b.good.data() + corner, b.width, inv_soft, f + t * per_band))
        bad = true;
    }
    if (bad) note_bad(first_bad, i);
    normalize_row(f, dim);
  }
  return first_bad.load();
}

int64_t spectrum_feature_dim(const SpectrumFeatureOptions& opt) { return opt.bins; }

int64_t spectrum_bins(const SpectrumBatch& b, const SpectrumFeatureOptions& opt, float* values, float* weights) {
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
      // A wavelength <= 0 or non-finite has no bin (and its log would not convert to one).
      if (!std::isfinite(flux[p]) || !std::isfinite(ivar[p]) || !(lam[p] > 0.0f) || !std::isfinite(lam[p])) {
        bad = true;
        continue;
      }
      const int64_t k = static_cast<int64_t>(std::floor((std::log(static_cast<double>(lam[p])) - lmin) * scale));
      if (k < 0 || k >= nb) continue;
      wsum[k] += ivar[p];
      fsum[k] += static_cast<double>(ivar[p]) * flux[p];
    }
    float* v = values + i * nb;
    float* w = weights + i * nb;
    bool any = false;
    for (int64_t k = 0; k < nb; ++k) {
      // A bin whose summed weight is not positive (ivar 0 or negative) carries no information.
      const bool filled = wsum[k] > 0.0;
      v[k] = filled ? static_cast<float>(fsum[k] / wsum[k]) : 0.0f;
      w[k] = filled ? static_cast<float>(wsum[k]) : 0.0f;
      any = any || filled;
    }
    if (!any || bad) {
      note_bad(first_bad, i);
      std::fill(v, v + nb, 0.0f);
      std::fill(w, w + nb, 0.0f);
    }
  }
  return first_bad.load();
}

void standardise_spectra(const float* values, const float* weights, int64_t n, int64_t bins, float* out) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float* src = values + i * bins;
    const float* w = weights ? weights + i * bins : nullptr;
    std::vector<double> v(src, src + bins);
    std::vector<int64_t> filled;
    for (int64_t k = 0; k < bins; ++k)
      if (!w || w[k] > 0.0f) filled.push_back(k);
    float* f = out + i * bins;
    if (filled.empty()) {
      std::fill(f, f + bins, 0.0f);
      continue;
    }
    // Empty bins: linear interpolation of their neighbours, the edge value beyond the ends.
    for (int64_t k = 0; k < filled.front(); ++k) v[k] = v[filled.front()];
    for (int64_t k = filled.back() + 1; k < bins; ++k) v[k] = v[filled.back()];
    for (size_t j = 0; j + 1 < filled.size(); ++j) {
      const int64_t a = filled[j], c = filled[j + 1];
      for (int64_t k = a + 1; k < c; ++k) v[k] = v[a] + (v[c] - v[a]) * double(k - a) / double(c - a);
    }
    double mean = 0.0;
    for (double x : v) mean += x;
    mean /= bins;
    double var = 0.0;
    for (double x : v) var += (x - mean) * (x - mean);
    const double sd = std::sqrt(var / std::max<int64_t>(1, bins - 1));
    const double inv = sd > 0.0 ? 1.0 / sd : 0.0;
    for (int64_t k = 0; k < bins; ++k) f[k] = static_cast<float>((v[k] - mean) * inv);
  }
}

int64_t spectrum_features(const SpectrumBatch& b, const SpectrumFeatureOptions& opt, float* out) {
  std::vector<float> weights(static_cast<size_t>(b.count * opt.bins));
  const int64_t bad = spectrum_bins(b, opt, out, weights.data());
  standardise_spectra(out, weights.data(), b.count, opt.bins, out);
  return bad;
}

}  // namespace mmu

namespace mmu {

int64_t light_curve_feature_dim(const LightCurveFeatureOptions& opt) { return opt.phase_bins + 3; }

int64_t light_curve_features(const LightCurveBatch& b, const LightCurveFeatureOptions& opt, float* out) {
  const int64_t dim = light_curve_feature_dim(opt), nb = opt.phase_bins;
  const double width = (opt.phase_max - opt.phase_min) / nb;
  std::atomic<int64_t> first_bad{-1};

#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < b.count; ++i) {
    float* f = out + i * dim;
    std::fill(f, f + dim, 0.0f);
    // Brightness in magnitudes (larger = brighter): -mag, or -2.5 log10 of the
    // flux floored at its 1-sigma error so faint points stay finite.
    std::vector<double> t, m;
    int64_t bands_used = 0;
    bool bad = false;
    for (int64_t band = 0; band < b.bands; ++band) {
      bool any = false;
      for (int64_t k = 0; k < b.length; ++k) {
        const size_t p = (i * b.bands + band) * b.length + k;
        if (!b.good[p]) continue;
        const double v = b.value[p], e = std::fabs(b.error[p]);
        if (!std::isfinite(v) || !std::isfinite(b.time[p])) {
          bad = true;
          continue;
        }
        const double bright = b.magnitudes ? -v : 2.5 * std::log10(std::max({v, e, 1e-30}));
        t.push_back(b.time[p]);
        m.push_back(bright);
        any = true;
      }
      bands_used += any;
    }
    if (bad || t.empty()) {
      note_bad(first_bad, i);
      continue;
    }
    const size_t peak = static_cast<size_t>(std::max_element(m.begin(), m.end()) - m.begin());
    std::vector<double> sum(nb, 0.0);
    std::vector<int64_t> cnt(nb, 0);
    for (size_t p = 0; p < t.size(); ++p) {
      const double phase = t[p] - t[peak];
      const int64_t k = static_cast<int64_t>(std::floor((phase - opt.phase_min) / width));
      if (k < 0 || k >= nb) continue;
      sum[k] += m[p] - m[peak];
      ++cnt[k];
    }
    // Empty phase bins take the nearest filled bin's value (0 = the peak level).
    for (int64_t k = 0; k < nb; ++k) {
      if (cnt[k]) {
        f[k] = static_cast<float>(sum[k] / cnt[k]);
        continue;
      }
      for (int64_t d = 1; d < nb; ++d) {
        if (k - d >= 0 && cnt[k - d]) { f[k] = static_cast<float>(sum[k - d] / cnt[k - d]); break; }
        if (k + d < nb && cnt[k + d]) { f[k] = static_cast<float>(sum[k + d] / cnt[k + d]); break; }
      }
    }
    const auto [tmin, tmax] = std::minmax_element(t.begin(), t.end());
    f[nb] = static_cast<float>(bands_used) / 6.0f;
    f[nb + 1] = static_cast<float>(std::log10(1.0 + t.size()));
    f[nb + 2] = static_cast<float>((*tmax - *tmin) / 100.0);
  }
  return first_bad.load();
}

int64_t xp_features(const CoeffBatch& b, float* out) {
  std::atomic<int64_t> first_bad{-1};
  for (int64_t i = 0; i < b.count; ++i) {
    const float* src = b.values.data() + i * b.dim;
    float* f = out + i * b.dim;
    double s = 0.0;
    bool finite = true;
    for (int64_t j = 0; j < b.dim; ++j) {
      finite = finite && std::isfinite(src[j]);
      s += static_cast<double>(src[j]) * src[j];
      f[j] = src[j];
    }
    if (!finite || s <= 0.0) {
      note_bad(first_bad, i);
      std::fill(f, f + b.dim, 0.0f);
      continue;
    }
    normalize_row(f, b.dim);
  }
  return first_bad.load();
}

}  // namespace mmu
