// Exact maximum-inner-product search over a row-major matrix of vectors, the
// engine behind every exact query of a store.
//
// FAISS 1.7.3 scans one query on one thread and only batches of 20 or more
// through BLAS; this splits the *database* into row blocks over all threads and
// merges per-thread top-k heaps, so one query runs at the memory-bandwidth
// floor and a batch near the SGEMM rate. Every score reported is canonical:
// a double-precision sum in a fixed order rounded once to float, the same bits
// wherever the row sits (block, subset, shard or merged store) and however
// many queries or threads share the scan. One query is scored so directly; a
// batch by SGEMM, then only the rows whose proven error bound lets them reach
// the top k are re-scored canonically. Vectors may be stored as fp16 to halve
// the bytes scanned (scored as their fp32 widening).
#pragma once

#include <cstdint>
#include <vector>

#include "mmu/types.h"  // Hit

namespace mmu {

enum class VectorType { kF32, kF16 };

// A view of n x dim vectors, row-major (the memory-mapped vectors file of a space).
struct VectorMatrix {
  const void* data = nullptr;
  VectorType type = VectorType::kF32;
  int64_t rows = 0, dim = 0;
};

// For each of the nq queries (row-major nq x dim floats), the min(k, candidates)
// rows with the largest canonical inner product, best first; ties go to the
// lower row. The scores are the canonical ones, bit for bit (see above).
// `subset`, when given, holds the only rows to consider, ascending and unique.
// Runs on all OpenMP threads; safe to call from several threads at once.
std::vector<std::vector<Hit>> exact_top_k(const VectorMatrix& base, const float* queries, int64_t nq, int64_t k,
                                          const std::vector<int64_t>* subset = nullptr);

// The SGEMM calls of a scan of nq >= 2 queries: block_rows rows at a time by tiles of
// query_tile queries, the last tile taking the remainder (up to twice the
// tile); bench/batch_scan.cpp measures OpenBLAS's SGEMM rate at that shape.
struct ScanShape {
  int64_t block_rows = 0, query_tile = 0;
};
ScanShape exact_scan_shape(int64_t nq, int64_t dim);

// IEEE half <-> float, round-to-nearest-even (what numpy's astype(float16) does).
uint16_t float_to_half(float f);
float half_to_float(uint16_t h);
// out[i] = half_to_float(in[i]) for n values (F16C instructions when the CPU has them).
void halves_to_floats(const uint16_t* in, int64_t n, float* out);

}  // namespace mmu
