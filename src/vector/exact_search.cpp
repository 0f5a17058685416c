#include "mmu/exact_search.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "base/blas.h"
#include "mmu/error.h"
#include "vector/canonical_dot.h"
#include "vector/hit_order.h"

// Every score reported is the canonical one, D(q, x) (vector/canonical_dot.h):
// it does not depend on the row's place in a block, a subset, a shard or a
// merged store, nor on the batch or the threads, so a set of stores and MPI
// ranks report the merged store's bits and rank near-ties as it does.
//
// One query: every row is scored with D directly (a scan at the bandwidth floor).
//
// A batch (nq >= 2) is scored by SGEMM, B(q, x), and only the rows that can
// reach the top k are re-scored with D. Why that answer is exact:
//   |B - <q,x>| <= gamma_dim sum_i |q_i x_i| + dim 2^-150 (any summation order,
//     FMA or not; the second term is the products' underflow),
//     gamma_n = n u / (1 - n u), u = 2^-24;
//   |D - <q,x>| <= u |<q,x>| + 2^-150 + (1 + u) gamma^d_dim sum_i |q_i x_i|
//     (double sum, then one rounding to float; gamma^d with 2^-53) <= 2u sum_i |q_i x_i| + 2^-150;
//   sum_i |q_i x_i| <= ||q|| ||x|| <= ||q|| R_b, R_b the block's largest row norm.
//   So |B - D| <= E = (gamma_dim + 2u) ||q|| R_b + (dim + 2) 2^-150; the code
//   uses (1 + 2^-20) times the first term (it covers the rounding of the norms,
//   computed in double, and of E itself) and (dim + 2) 2^-149.
//   Valid while no float partial sum of B overflows: |partial| <= (1 + gamma)
//   ||q|| R_b, so a block with ||q|| R_b > FLT_MAX / 4 is scored with D for
//   that query, as is every block when dim u >= 1/2 (gamma is then void).
// The selection: per thread per query a heap of the k best (D, then lower row)
// so far, w its k-th D. A row is re-scored with D when B >= the largest float
// <= w - E (threshold_below rounds down), every row while the heap is not full.
// Let T be the k-th D of the final answer. w never exceeds T (the k-th best of
// a subset of rows is not above the k-th best of all), so a row of the answer,
// D >= T >= w, has B >= D - E >= w - E and is re-scored, and pushed: it ranks
// among the k best of any set of rows that holds it. The per-thread heaps thus
// hold every row of the answer, and their merge by (D desc, row asc) is it,
// ties included. A row re-scored needlessly only costs time; with rows spread
// like real vectors a few per block pass once w has risen (E ~ 3e-5 ||q|| R_b
// at dim 512), with exact duplicates all of them (each is a tie): rows of a
// block with identical bytes share one canonical score per query (SameRows).

namespace mmu {

namespace {

// Rows scored per call: large enough to stream at full bandwidth, small
// enough that a block (2 MB at d = 512) and its scores stay in cache.
constexpr int64_t kBlockRows = 1024;
constexpr int64_t kMinValuesPerThread = int64_t{1} << 20;
// Queries per SGEMM call, so a thread's scores take at most 8 MB however many
// queries come. Smaller tiles and row blocks (scores that fit L2) measured no
// faster: OpenBLAS's rate at 1024 rows x 1000 queries was the best of those
// tried, and its scores are selected from L3 at a fraction of the multiply's time.
constexpr int64_t kQueryTile = 960;

// The k best hits seen so far; the heap's front is the worst of them, so most
// candidates are rejected by one comparison. A NaN score never enters.
class TopK {
 public:
  explicit TopK(int64_t k) : k_(static_cast<size_t>(k)) { heap_.reserve(k_); }
  void push(int64_t id, float score) {
    if (std::isnan(score)) return;
    if (heap_.size() < k_) {
      heap_.push_back({id, score});
      std::push_heap(heap_.begin(), heap_.end(), ranks_before);
      return;
    }
    if (!ranks_before(Hit{id, score}, heap_.front())) return;
    std::pop_heap(heap_.begin(), heap_.end(), ranks_before);
    heap_.back() = {id, score};
    std::push_heap(heap_.begin(), heap_.end(), ranks_before);
  }
  bool full() const { return heap_.size() == k_; }
  float worst_score() const { return heap_.front().score; }  // when full()
  const std::vector<Hit>& hits() const { return heap_; }

 private:
  size_t k_;
  std::vector<Hit> heap_;
};

__attribute__((target("f16c,avx"))) void halves_to_floats_f16c(const uint16_t* in, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
  for (; i < n; ++i) out[i] = half_to_float(in[i]);
}

// The largest float <= w - e (w a score, e >= 0 a bound), computed so that
// the double subtraction's rounding cannot lift it above the exact value.
float threshold_below(float w, double e) {
  if (e == 0) return w;
  double t = static_cast<double>(w) - e;  // within 2^-53 |t| of w - e
  t -= std::fabs(t) * 0x1p-50;            // now <= w - e, this step's rounding included
  if (!(t >= -std::numeric_limits<float>::max())) return -std::numeric_limits<float>::infinity();
  float f = static_cast<float>(t);
  if (static_cast<double>(f) > t) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
  return f;
}

// Offers rows ids[0..n) to top by their canonical scores score(i), given
// scores s[0..n) with |s_i - score(i)| <= e: once top is full, a row whose
// s_i is below the largest float <= (top's k-th score) - e cannot enter (nor
// can NaN), so score(i) is computed only for the rows at or above it. The
// AVX2 version compares 16 at a time: a handful of rows per block pass once
// the threshold has risen, where a heap comparison per score took 15% of a
// batched scan (perf). Same hits as pushing every row's score(i).
template <class Score>
int64_t offer_until_full(TopK& top, const float* s, const int64_t* ids, int64_t n, const Score& score) {
  int64_t i = 0;
  for (; i < n && !top.full(); ++i)
    if (!std::isnan(s[i])) top.push(ids[i], score(i));
  return i;
}

template <class Score>
void offer_rest(TopK& top, const float* s, const int64_t* ids, int64_t i, int64_t n, double e, const Score& score) {
  if (i == n) return;
  float thr = threshold_below(top.worst_score(), e);
  for (; i < n; ++i)
    if (s[i] >= thr) {
      top.push(ids[i], score(i));
      thr = threshold_below(top.worst_score(), e);
    }
}

template <class Score>
__attribute__((target("avx2"))) void offer_avx2(TopK& top, const float* s, const int64_t* ids, int64_t n, double e,
                                                const Score& score) {
  int64_t i = offer_until_full(top, s, ids, n, score);
  if (i == n) return;
  float thr = threshold_below(top.worst_score(), e);
  for (; i + 16 <= n; i += 16) {
    const __m256 t = _mm256_set1_ps(thr);
    const int lo = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + i), t, _CMP_GE_OQ));
    const int hi = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + i + 8), t, _CMP_GE_OQ));
    if ((lo | hi) == 0) continue;
    for (unsigned m = static_cast<unsigned>(lo | (hi << 8)); m != 0; m &= m - 1) {
      const int64_t r = i + __builtin_ctz(m);
      top.push(ids[r], score(r));
    }
    thr = threshold_below(top.worst_score(), e);
  }
  offer_rest(top, s, ids, i, n, e, score);
}

template <class Score>
void offer(TopK& top, const float* s, const int64_t* ids, int64_t n, double e, const Score& score) {
  static const bool has_avx2 = __builtin_cpu_supports("avx2");
  if (has_avx2) {
    offer_avx2(top, s, ids, n, e, score);
    return;
  }
  offer_rest(top, s, ids, offer_until_full(top, s, ids, n, score), n, e, score);
}

// The rows of a block that hold the same bytes as an earlier row of it: their
// canonical scores are equal (D reads nothing but the bytes), so a batch
// computes one per distinct row and query. Stores hold many identical
// vectors (blank or fully masked cutouts share one feature vector; objects
// duplicated across files), and every copy ties at the top of a query like
// them: re-scoring each copy made a batch of such queries 4.7x slower at 90%
// copies (docs/BENCHMARKS.md, "Batched exact queries over identical rows").
class SameRows {
 public:
  explicit SameRows(int64_t block_rows)
      : hash_(static_cast<size_t>(block_rows)), first_(static_cast<size_t>(block_rows)),
        slots_(table_size(block_rows), -1) {}

  // first(i), for rows[0..nb), each dim floats: the lowest row with i's bytes.
  void find(const float* rows, int64_t nb, int64_t dim) {
    std::fill(slots_.begin(), slots_.end(), -1);
    const size_t mask = slots_.size() - 1, bytes = static_cast<size_t>(dim) * sizeof(float);
    for (int64_t i = 0; i < nb; ++i) {
      const char* x = reinterpret_cast<const char*>(rows + i * dim);
      hash_[i] = hash(x, bytes);
      for (size_t at = hash_[i] & mask;; at = (at + 1) & mask) {
        const int32_t j = slots_[at];
        if (j < 0) {
          slots_[at] = static_cast<int32_t>(i);
          first_[i] = static_cast<int32_t>(i);
          break;
        }
        if (hash_[j] == hash_[i] && std::memcmp(rows + j * dim, x, bytes) == 0) {
          first_[i] = j;
          break;
        }
      }
    }
  }
  int64_t first(int64_t i) const { return first_[i]; }

 private:
  // A power of two, at least twice the rows: probes stay short.
  static size_t table_size(int64_t rows) {
    size_t n = 2;
    while (n < static_cast<size_t>(2 * rows)) n *= 2;
    return n;
  }
  static uint64_t hash(const char* p, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      h = (h ^ w) * 0xff51afd7ed558ccdull;
    }
    for (; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
  }
  std::vector<uint64_t> hash_;
  std::vector<int32_t> first_;
  std::vector<int32_t> slots_;  // open addressing, -1 empty
};

// An upper bound of every row's L2 norm in the block, in double.
double max_row_norm(const float* rows, int64_t nb, int64_t dim) {
  double most = 0;
  for (int64_t r = 0; r < nb; ++r) {
    const float* x = rows + r * dim;
    double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= dim; i += 8)
      for (int j = 0; j < 8; ++j) l[j] += static_cast<double>(x[i + j]) * x[i + j];
    for (; i < dim; ++i) l[0] += static_cast<double>(x[i]) * x[i];
    most = std::max(most, ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])));
  }
  return std::sqrt(most) * (1 + 0x1p-30);
}

}  // namespace

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to infinity
  if (abs < 0x38800000u) {  // subnormal half (or zero)
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(abs >> 23);  // 14..24
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = ((abs - 0x38000000u) >> 13);
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  uint32_t x;
  if (exp == 0x1f) {
    x = sign | 0x7f800000u | (mant << 13);
  } else if (exp != 0) {
    x = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    x = sign;
  } else {  // subnormal: value = mant * 2^-24
    float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

void halves_to_floats(const uint16_t* in, int64_t n, float* out) {
  static const bool has_f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx");
  if (has_f16c) {
    halves_to_floats_f16c(in, n, out);
    return;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = half_to_float(in[i]);
}

ScanShape exact_scan_shape(int64_t, int64_t) { return {kBlockRows, kQueryTile}; }

std::vector<std::vector<Hit>> exact_top_k(const VectorMatrix& base, const float* queries, int64_t nq, int64_t k,
                                          const std::vector<int64_t>* subset) {
  if (nq <= 0) return {};
  if (k <= 0) throw InvalidArgument("k must be at least 1, got " + std::to_string(k));
  for (int64_t i = 0; i < nq * base.dim; ++i)
    if (!std::isfinite(queries[i]))
      throw InvalidArgument("query vector " + std::to_string(i / base.dim) + " has a non-finite value at position " +
                            std::to_string(i % base.dim));
  const int64_t dim = base.dim;
  const ScanShape shape = exact_scan_shape(nq, dim);
  const int64_t block_rows = shape.block_rows;
  // One query is scored canonically row by row (a scan at the bandwidth
  // floor); a batch by SGEMM, then the rows that can reach the top k canonically.
  const bool one_query = nq == 1;
  // Query tiles of shape.query_tile, the last one taking the remainder (up to twice the tile).
  const int64_t n_tiles = std::max<int64_t>(1, nq / shape.query_tile);
  const int64_t n_items = subset ? static_cast<int64_t>(subset->size()) : base.rows;
  const int64_t n_blocks = (n_items + block_rows - 1) / block_rows;
  // A thread per ~4 MB of vectors at least: below that, waking a second thread
  // (and waiting for it when its core is busy) costs more than the scan.
  const int64_t by_size = (n_items * dim * std::max<int64_t>(nq, 1) + kMinValuesPerThread - 1) / kMinValuesPerThread;
  const int threads = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>({static_cast<int64_t>(omp_get_max_threads()), n_blocks, by_size})));
  // Contiguous fp32 rows are scored in place; anything else is gathered
  // (subset) or widened (fp16) into a per-thread block first.
  const bool in_place = base.type == VectorType::kF32 && subset == nullptr;
  std::vector<std::vector<TopK>> found(threads, std::vector<TopK>(static_cast<size_t>(nq), TopK(k)));

  // The queries in double (D reads them so) and, for a batch, their norms and
  // the bound's factor (gamma_dim + 2u) (1 + 2^-20) (the proof at the top).
  const std::vector<double> wide(queries, queries + nq * dim);
  std::vector<double> qnorm(static_cast<size_t>(one_query ? 0 : nq));
  for (size_t j = 0; j < qnorm.size(); ++j) {
    double q2 = 0;
    for (int64_t i = 0; i < dim; ++i) q2 += wide[j * dim + i] * wide[j * dim + i];
    qnorm[j] = std::sqrt(q2);
  }
  const double u = 0x1p-24, nu = static_cast<double>(dim) * u;
  const bool bounded = nu < 0.5;  // else every row of a batch is scored canonically
  const double factor = bounded ? (nu / (1 - nu) + 2 * u) * (1 + 0x1p-20) : 0.0;
  const double underflow = static_cast<double>(dim + 2) * 0x1p-149;

#pragma omp parallel num_threads(threads)
  {
    // OpenBLAS (OpenMP build) would start its own threads for each call when
    // this team has one thread; the parallelism is ours, over row blocks.
    omp_set_num_threads(1);
    const int t = omp_get_thread_num();
    std::vector<float> block(in_place ? 0 : static_cast<size_t>(block_rows * dim));
    const int64_t widest_tile = one_query ? 1 : nq - (n_tiles - 1) * shape.query_tile;
    std::vector<float> scores(static_cast<size_t>(block_rows * widest_tile));
    std::vector<float> canonical(one_query ? 0 : static_cast<size_t>(block_rows));
    std::vector<int64_t> ids(static_cast<size_t>(block_rows));
    // A batch's canonical re-scores of this block: one per distinct row and
    // query once the block's copies are known (SameRows), memo[r] holding
    // row r's score for the query whose turn memo_turn[r] is.
    SameRows same(one_query ? 1 : block_rows);
    std::vector<float> memo(one_query ? 0 : static_cast<size_t>(block_rows));
    std::vector<int64_t> memo_turn(one_query ? 0 : static_cast<size_t>(block_rows), -1);
    int64_t turn = 0;
#pragma omp for schedule(dynamic, 4)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t first = b * block_rows, nb = std::min(block_rows, n_items - first);
      for (int64_t i = 0; i < nb; ++i) ids[i] = subset ? (*subset)[first + i] : first + i;
      const float* rows = nullptr;
      if (in_place) {
        rows = static_cast<const float*>(base.data) + first * dim;
      } else if (!subset) {  // fp16, contiguous
        halves_to_floats(static_cast<const uint16_t*>(base.data) + first * dim, nb * dim, block.data());
      } else {
        for (int64_t i = 0; i < nb; ++i) {
          if (base.type == VectorType::kF32)
            std::memcpy(&block[i * dim], static_cast<const float*>(base.data) + ids[i] * dim, dim * sizeof(float));
          else
            halves_to_floats(static_cast<const uint16_t*>(base.data) + ids[i] * dim, dim, &block[i * dim]);
        }
      }
      if (!in_place) rows = block.data();
      if (one_query) {
        canonical_dots(wide.data(), rows, nb, dim, scores.data());
        offer(found[t][0], scores.data(), ids.data(), nb, 0.0, [&](int64_t i) { return scores[i]; });
        continue;
      }
      const double norm = max_row_norm(rows, nb, dim);
      // The copies are looked for once the block's re-scores outnumber half
      // its rows (a pass over the block, as one re-score of each half would
      // cost): on data without copies a small batch re-scores a few rows a
      // block and skips the search.
      int64_t rescored = 0;
      bool copies_known = false;
      const auto rescore = [&](const double* qd, int64_t i) {
        if (!copies_known && ++rescored > nb / 2) {
          same.find(rows, nb, dim);
          copies_known = true;
        }
        if (!copies_known) return canonical_dot(qd, rows + i * dim, dim);
        const int64_t r = same.first(i);  // r's bytes are i's: the same score
        if (memo_turn[r] != turn) {
          memo[r] = canonical_dot(qd, rows + r * dim, dim);
          memo_turn[r] = turn;
        }
        return memo[r];
      };
      for (int64_t tile = 0; tile < n_tiles; ++tile) {
        const int64_t q0 = tile * shape.query_tile;
        const int64_t qn = tile + 1 < n_tiles ? shape.query_tile : nq - q0;
        const int m = static_cast<int>(dim), n = static_cast<int>(nb), q = static_cast<int>(qn);
        const float one = 1.0f, zero = 0.0f;
        sgemm_("T", "N", &n, &q, &m, &one, rows, &m, queries + q0 * dim, &m, &zero, scores.data(), &n);
        for (int64_t j = q0; j < q0 + qn; ++j) {
          const double* qd = &wide[j * dim];
          const double reach = qnorm[j] * norm;  // >= sum_i |q_i x_i| for every row of the block
          // Where a float partial sum could overflow, or the bound is void, the
          // SGEMM scores prove nothing: every row is scored canonically.
          if (!bounded || !(reach <= 0.25 * std::numeric_limits<float>::max())) {
            canonical_dots(qd, rows, nb, dim, canonical.data());
            offer(found[t][j], canonical.data(), ids.data(), nb, 0.0, [&](int64_t i) { return canonical[i]; });
            continue;
          }
          const double e = factor * reach + underflow;
          ++turn;
          offer(found[t][j], &scores[(j - q0) * nb], ids.data(), nb, e, [&](int64_t i) { return rescore(qd, i); });
        }
      }
    }
  }

  std::vector<std::vector<Hit>> out(static_cast<size_t>(nq));
  for (int64_t j = 0; j < nq; ++j) {
    std::vector<Hit>& all = out[j];
    for (int t = 0; t < threads; ++t) all.insert(all.end(), found[t][j].hits().begin(), found[t][j].hits().end());
    const size_t keep = std::min(all.size(), static_cast<size_t>(k));
    std::partial_sort(all.begin(), all.begin() + keep, all.end(), ranks_before);
    all.resize(keep);
  }
  return out;
}

}  // namespace mmu
