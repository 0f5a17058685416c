// Principal component projection: the baseline encoder's learned part.
// Fitting is deterministic (same input -> same bytes) for a fixed thread count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmu {

struct PcaModel {
  int64_t input_dim = 0;
  int64_t output_dim = 0;
  std::vector<float> mean;        // input_dim
  std::vector<float> components;  // output_dim x input_dim, row-major, unit rows
  std::vector<float> variances;   // output_dim, descending
  // Spectrum models only (fit_spectrum_pca): gappy filling uses fill_dim >=
  // output_dim components (components and variances then hold fill_dim rows;
  // projection uses the first output_dim) and residual_variance, the data's
  // variance per input beyond them. 0 = no fill model.
  int64_t fill_dim = 0;
  float residual_variance = 0.0f;
};

// Fits the top-k components of x (n x d, row-major). Uses at most max_rows
// rows, taken at an even stride, so huge inputs fit in bounded time.
// Throws InvalidArgument when n < 2.
PcaModel fit_pca(const float* x, int64_t n, int64_t d, int64_t k, int64_t max_rows = 50000);

// out (n x output_dim) = L2-normalised (x - mean) * components^T.
void project_pca(const PcaModel& m, const float* x, int64_t n, float* out);

// Gappy PCA for rebinned spectra (Connolly & Szalay 1999, AJ 117, 2052): a
// spectrum with masked bins is not judged by a guessed fill. values and
// weights are spectrum_bins' output (n x d raw bin means, summed ivar; weight
// 0 = empty bin); the model is a PCA of standardised spectra.

// Fits the spectrum model on the well-covered spectra only (at least 80 % of
// the median object's filled bins; always at least half the objects), each
// standardised with its few empty bins interpolated, so fills do not shape the
// components, with fill_dim = min(4 k, d / 2) components for the fill.
// Deterministic. Throws InvalidArgument when n < 2.
PcaModel fit_spectrum_pca(const float* values, const float* weights, int64_t n, int64_t d, int64_t k);

// Standardised features (n x d, for project_pca) with every empty bin filled
// by the model's reconstruction: per object, the posterior mean of
// bin = offset + scale * mean + sum_j b_j component_j (j < fill_dim) over the
// filled bins only, with per-bin variance = noise (1 / ivar) + the model's
// residual variance and the Gaussian prior b_j ~ N(0, variance_j), so sparse
// coverage cannot make the system singular. A fully covered spectrum gives exactly
// standardise_spectra's features. Returns -1, or the index of the first
// object whose fit failed (no filled bin, or a non-finite solution).
int64_t gappy_spectrum_features(const PcaModel& m, const float* values, const float* weights, int64_t n, float* out);

// Versioned binary form ("MMUPCA01" magic; a fill model follows as a
// "MMUGAP01" section, which readers of the projection alone can ignore);
// parse_pca throws FormatError naming `origin` on anything malformed.
std::string serialize_pca(const PcaModel& m);
PcaModel parse_pca(const std::string& bytes, const std::string& origin);

}  // namespace mmu
