// The canonical score of a query and a row: one float per (query, row) that
// does not depend on where the row sits (block, position, shard, subset),
// on the batch, the thread count or the CPU's SIMD flavour, so a set of stores,
// MPI ranks and the merged store report the same bits. Private to mmu_core.
//
// D(q, r) = (float) S, S a double-precision sum of q_i * r_i in a fixed order:
// for the first dim - dim % 8 elements, element i is added to lane i % 8 in
// increasing i; the lanes are reduced as ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7));
// then the last dim % 8 products are added in order. A float * float product
// is exact in double, so an FMA gives the bits of a multiply then an add.
//
// Error: |D - <q, r>| <= u |<q, r>| + 2^-150 + (1 + u) gamma^d_dim * sum |q_i r_i|
// (u = 2^-24, gamma^d_n = n 2^-53 / (1 - n 2^-53)), well inside
// gamma_dim * sum |q_i r_i| + 2^-149 for the fp32 gamma_dim at dim >= 1.
#pragma once

#include <cstdint>
#include <vector>

namespace mmu {

// The query in double, once per query (D reads it as doubles).
std::vector<double> widen_query(const float* q, int64_t dim);

// out[i] = D(q, rows[i * dim .. (i + 1) * dim)) for n contiguous fp32 rows,
// q from widen_query. AVX2 + FMA when the CPU has them, else scalar: same bits.
void canonical_dots(const double* q, const float* rows, int64_t n, int64_t dim, float* out);

// D(q, row) for one row.
float canonical_dot(const double* q, const float* row, int64_t dim);

// Both kernels, for the tests that prove they agree.
void canonical_dots_scalar(const double* q, const float* rows, int64_t n, int64_t dim, float* out);
bool canonical_dots_avx2_available();
void canonical_dots_avx2(const double* q, const float* rows, int64_t n, int64_t dim, float* out);

}  // namespace mmu
