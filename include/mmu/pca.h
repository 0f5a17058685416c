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
};

// Fits the top-k components of x (n x d, row-major). Uses at most max_rows
// rows, taken at an even stride, so huge inputs fit in bounded time.
// Throws InvalidArgument when n < 2.
PcaModel fit_pca(const float* x, int64_t n, int64_t d, int64_t k, int64_t max_rows = 50000);

// out (n x output_dim) = L2-normalised (x - mean) * components^T.
void project_pca(const PcaModel& m, const float* x, int64_t n, float* out);

// Versioned binary form ("MMUPCA01" magic); parse_pca throws FormatError
// naming `origin` on anything malformed.
std::string serialize_pca(const PcaModel& m);
PcaModel parse_pca(const std::string& bytes, const std::string& origin);

}  // namespace mmu
