// Exact single-query search that reads a quarter of the fp32 bytes: an 8-bit
// scalar-quantised copy of a space's vectors (per-dimension min and scale) is
// scanned with a proven error bound per row, and only the rows whose upper
// bound can still reach the k-th score are re-scored in fp32 from vectors.f32.
// The answer is the fp32 scan's answer (same rows, same scores, same order),
// not an approximation. Private to mmu_core.
//
// File layout (vectors.sq8, little-endian, every section 8-byte aligned):
//   char[8] magic "MMUSQ8v1"; int64 rows, dim, stride (code bytes per row,
//   dim rounded up to 16), vectors_bytes (size of the vectors.f32 it encodes);
//   char[64] SHA-256 hex of that vectors.f32 (as the catalog recorded it);
//   double max_norm (>= every row's L2 norm); float[dim] min, scale, err
//   (>= every |x_d - x_hat_d|), absmax (>= every |x_d|); float[rows] residual
//   (>= each row's ||x - x_hat||); zero padding to 64 bytes; uint8[rows x stride] codes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "mmu/exact_search.h"
#include "mmu/types.h"  // Hit

namespace mmu {

// The vectors.sq8 image of the fp32 vectors `f32`, recording `vectors_sha256`
// and the size of f32 as what it encodes. Throws FormatError on a non-finite value.
std::vector<uint8_t> encode_sq8(const VectorMatrix& f32, const std::string& vectors_sha256);

// The 8-bit filter's kernels (for the tests that prove they agree): bit j set
// when sum_i w8[i] * rows[j][i] >= t, over stride bytes per row (a multiple of
// 16; w8 holds stride rounded up to 32 weights, zero past the last row byte).
// Exact for |w8| <= 64 (avx2) or 127 (vnni, scalar) while 255 * max|w8| * stride < 2^31.
using Sq8FilterFn = uint32_t (*)(const uint8_t* const* rows, const int8_t* w8, int64_t stride, int32_t t);
uint32_t sq8_filter8_scalar(const uint8_t* const* rows, const int8_t* w8, int64_t stride, int32_t t);
uint32_t sq8_filter8_avx2(const uint8_t* const* rows, const int8_t* w8, int64_t stride, int32_t t);
bool sq8_filter8_vnni_available();
uint32_t sq8_filter8_vnni(const uint8_t* const* rows, const int8_t* w8, int64_t stride, int32_t t);

// A filter kernel and the |w8| bound it is exact for (see above).
struct Sq8Filter {
  Sq8FilterFn fn = nullptr;
  int64_t max_weight = 0;
};

// How Sq8Copy::top_k reads and what it reports; the answer is the same either way.
struct Sq8Scan {
  // Read the codes from this file (the one the copy's image is mapped from)
  // with pread, a 256 KB chunk at a time per thread, instead of through the
  // mapping: for a process that asks once, whose mapping would cost a page
  // fault per 4 KB folio of page cache. Not with a subset.
  const files::MappedFile* codes_file = nullptr;
  // Read the candidates' fp32 rows from this file (vectors.f32) with pread.
  const files::MappedFile* vectors_file = nullptr;
  // The 8-bit filter; none: this CPU's fastest exact one (tests pick others).
  Sq8Filter filter;
  int64_t* candidates = nullptr;  // receives how many rows were re-scored in fp32
  int64_t* filtered = nullptr;    // how many passed the 8-bit filter (all of them on a CPU without AVX2)
};

class Sq8Copy {
 public:
  // Reads the image at data (size bytes; a mapping that must outlive this).
  // Throws FormatError naming `name` when it is not a whole, sane sq8 file.
  Sq8Copy(const void* data, size_t size, const std::string& name);

  int64_t rows() const { return rows_; }
  int64_t dim() const { return dim_; }
  uint64_t vectors_bytes() const { return vectors_bytes_; }
  const std::string& vectors_sha256() const { return sha_; }

  // exact_top_k(f32, query, 1, k, subset)[0], bit for bit: f32 must be the
  // vectors this copy encodes. Throws FormatError naming a file of `how`
  // that was truncated or rewritten while it was read.
  std::vector<Hit> top_k(const VectorMatrix& f32, const float* query, int64_t k, const std::vector<int64_t>* subset,
                         const Sq8Scan& how = {}) const;

 private:
  int64_t rows_ = 0, dim_ = 0, stride_ = 0;
  uint64_t vectors_bytes_ = 0;
  std::string sha_;
  double max_norm_ = 0, max_residual_ = 0;
  const float *min_ = nullptr, *scale_ = nullptr, *err_ = nullptr, *absmax_ = nullptr, *residual_ = nullptr;
  const uint8_t* codes_ = nullptr;
  size_t codes_offset_ = 0;  // of the codes in the image
};

}  // namespace mmu
