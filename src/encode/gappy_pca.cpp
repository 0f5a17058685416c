// Gappy PCA for spectra (Connolly & Szalay 1999): the spectrum baseline's fit
// and its gap filling. See mmu/pca.h for the contract.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "base/blas.h"
#include "mmu/error.h"
#include "mmu/pca.h"
#include "mmu/preprocess.h"

namespace mmu {

namespace {

// The fill is the posterior mean of the missing bins under the Gaussian model
// the fit describes (Connolly & Szalay 1999 with their prior): amplitudes
// b_j ~ N(0, variance_j), and each filled bin's deviation from the model has
// variance noise (1 / ivar, in standardised units) + the residual variance the
// fill components leave. No tuned constants: the old fixed prior strength
// (0.1 with weights scaled to mean 1) over the 64 projection components left
// the fill too smooth, and same-class neighbours (ellipticals a few 0.01 apart
// in redshift) then beat the masked twin (bench/fidelity_spectra.py). More
// fill components than the projection keeps describe a gap's features (line
// and break positions shift with redshift) that 64 cannot; the prior keeps the
// noise-level ones from amplifying noise into the gap.
constexpr int64_t kFillPerOutput = 4;

}  // namespace

PcaModel fit_spectrum_pca(const float* values, const float* weights, int64_t n, int64_t d, int64_t k) {
  if (n < 2) throw InvalidArgument("a PCA needs at least 2 objects, got " + std::to_string(n));
  // Fitting on the well-covered spectra keeps interpolated fills out of the
  // components, and needs no iteration, so the fit stays deterministic. An
  // iterative gappy refit (Connolly & Szalay section 4) would let the sparse
  // spectra in only through fills made by the model itself.
  std::vector<int64_t> filled(n, 0);
  for (int64_t i = 0; i < n; ++i)
    filled[i] = std::count_if(weights + i * d, weights + (i + 1) * d, [](float w) { return w > 0.0f; });
  std::vector<int64_t> sorted = filled;
  std::nth_element(sorted.begin(), sorted.begin() + n / 2, sorted.end());
  const double threshold = 0.8 * static_cast<double>(sorted[n / 2]);
  std::vector<float> x;
  int64_t m = 0;
  double total = 0.0;  // summed variance of the standardised spectra, for the residual
  for (int64_t i = 0; i < n; ++i) {
    if (static_cast<double>(filled[i]) < threshold) continue;
    x.resize(static_cast<size_t>((m + 1) * d));
    standardise_spectra(values + i * d, weights + i * d, 1, d, x.data() + m * d);
    ++m;
  }
  if (m < 2) throw InvalidArgument("a PCA needs at least 2 well-covered spectra, got " + std::to_string(m));
  for (int64_t j = 0; j < d; ++j) {
    double s = 0.0, s2 = 0.0;
    for (int64_t i = 0; i < m; ++i) {
      s += x[i * d + j];
      s2 += static_cast<double>(x[i * d + j]) * x[i * d + j];
    }
    total += (s2 - s * s / static_cast<double>(m)) / static_cast<double>(m - 1);
  }
  PcaModel model = fit_pca(x.data(), m, d, std::max(k, std::min(kFillPerOutput * k, d / 2)));
  double kept = 0.0;
  for (float v : model.variances) kept += v;
  model.fill_dim = model.output_dim;
  model.output_dim = std::min(k, model.output_dim);
  model.residual_variance = static_cast<float>(std::max(0.0, total - kept) / static_cast<double>(d));
  return model;
}

int64_t gappy_spectrum_features(const PcaModel& model, const float* values, const float* weights, int64_t n,
                                float* out) {
  const int64_t d = model.input_dim, k = std::max(model.output_dim, model.fill_dim), p = k + 2;
  const double residual = model.residual_variance;
  std::atomic<int64_t> first_bad{-1};
  // The components bin by bin (d x k): every use below reads one bin's k values
  // (~10% of a DESI build). Made only when a spectrum of the call has a gap.
  std::vector<double> by_bin;
  if (std::any_of(weights, weights + n * d, [](float w) { return !(w > 0.0f); })) {
    by_bin.resize(static_cast<size_t>(d * k));
    for (int64_t c = 0; c < k; ++c)
      for (int64_t j = 0; j < d; ++j) by_bin[j * k + c] = model.components[c * d + j];
  }

#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < n; ++i) {
    const float* v = values + i * d;
    const float* w = weights + i * d;
    std::vector<float> row(v, v + d);
    int64_t filled = 0;
    for (int64_t j = 0; j < d; ++j)
      if (w[j] > 0.0f) ++filled;
    bool ok = filled > 0;
    if (ok && filled < d) {
      // bin ~ offset + scale * mean + sum_j b_j e_j: the per-object offset and
      // scale of the standardisation are unknowns too, because a spectrum's
      // mean and spread over part of the grid are not those over all of it.
      std::vector<double> a(static_cast<size_t>(p * p), 0.0), rhs(p, 0.0);
      // a = sum_j w_j basis_j basis_j^T over the filled bins, by dsyrk on blocks
      // of kBlock rows sqrt(w_j) basis_j (a scalar loop over the p^2 / 2 terms
      // of every bin was 93% of a DESI build: 6 ms a spectrum at p = 258).
      constexpr int64_t kBlock = 128;
      std::vector<double> block(static_cast<size_t>(kBlock * p));
      int64_t rows = 0;
      bool first_block = true;
      auto flush = [&] {
        if (rows == 0) return;
        const int n_ = static_cast<int>(p), k_ = static_cast<int>(rows);
        const double one = 1.0, beta = first_block ? 0.0 : 1.0;
        // Row-major rows x p is column-major p x rows: a = B B^T, its upper
        // triangle column-major = the lower triangle row-major cholesky_solve reads.
        dsyrk_("U", "N", &n_, &k_, &one, block.data(), &n_, &beta, a.data(), &n_);
        first_block = false;
        rows = 0;
      };
      // Solved in the units of the filled bins' own standardisation so the
      // prior below is in the model's units.
      double m0 = 0.0, s0 = 0.0;
      for (int64_t j = 0; j < d; ++j)
        if (w[j] > 0.0f) m0 += v[j];
      m0 /= static_cast<double>(filled);
      for (int64_t j = 0; j < d; ++j)
        if (w[j] > 0.0f) s0 += (v[j] - m0) * (v[j] - m0);
      s0 = std::sqrt(s0 / static_cast<double>(filled));
      if (!(s0 > 0.0)) s0 = 1.0;
      for (int64_t j = 0; j < d; ++j) {
        if (!(w[j] > 0.0f)) continue;
        const double wj = 1.0 / (1.0 / (static_cast<double>(w[j]) * s0 * s0) + residual);
        const double u = (v[j] - m0) / s0, sw = std::sqrt(wj);
        double* b = block.data() + rows * p;
        b[0] = sw;
        b[1] = sw * model.mean[j];
        const double* e = by_bin.data() + j * k;
        for (int64_t c = 0; c < k; ++c) b[2 + c] = sw * e[c];
        for (int64_t r = 0; r < p; ++r) rhs[r] += b[r] * (sw * u);
        if (++rows == kBlock) flush();
      }
      flush();
      a[0] += 1e-6;  // offset and scale: unpenalised but for conditioning
      a[p + 1] += 1e-6;
      for (int64_t c = 0; c < k; ++c) a[(2 + c) * p + 2 + c] += 1.0 / std::max(1e-6, static_cast<double>(model.variances[c]));
      // Cholesky by LAPACK: the row-major lower triangle is the column-major
      // upper one. Not positive definite (info > 0) leaves the object unfilled.
      const int n_ = static_cast<int>(p), one_rhs = 1;
      int info = 0;
      dposv_("U", &n_, &one_rhs, a.data(), &n_, rhs.data(), &n_, &info);
      ok = info == 0;
      for (int64_t j = 0; ok && j < d; ++j) {
        if (w[j] > 0.0f) continue;
        double fill = rhs[0] + rhs[1] * model.mean[j];
        const double* e = by_bin.data() + j * k;
        for (int64_t c = 0; c < k; ++c) fill += rhs[2 + c] * e[c];
        row[j] = static_cast<float>(m0 + s0 * fill);
        ok = std::isfinite(row[j]);
      }
    }
    if (!ok) {
      int64_t cur = first_bad.load();
      while ((cur < 0 || i < cur) && !first_bad.compare_exchange_weak(cur, i)) {
      }
      std::fill(out + i * d, out + (i + 1) * d, 0.0f);
      continue;
    }
    standardise_spectra(row.data(), nullptr, 1, d, out + i * d);
  }
  return first_bad.load();
}

}  // namespace mmu
