#include "mmu/exact_search.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/blas.h"
#include "mmu/error.h"

namespace mmu {

namespace {

// Rows scored per BLAS call: large enough to stream at full bandwidth, small
// enough that a block (2 MB at d = 512) and its scores stay in cache.
constexpr int64_t kBlockRows = 1024;
constexpr int64_t kMinValuesPerThread = int64_t{1} << 20;
// Queries per BLAS call, so a thread's scores take at most 8 MB however many
// queries come. A multiple of every OpenBLAS kernel's column unroll (4 to 24):
// the columns its edge kernels score (with other bits) are then the last ones
// of the whole batch, as in one call over all queries, whatever the CPU.
// Smaller tiles and row blocks (scores that fit L2) measured no faster:
// OpenBLAS's rate at 1024 rows x 1000 queries was the best of those tried, and
// its scores are selected from L3 at a fraction of the multiply's time.
constexpr int64_t kQueryTile = 960;

// "a ranks before b": higher score, then lower row (deterministic ties).
inline bool ranks_before(const Hit& a, const Hit& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

// The k best hits seen so far; the heap's front is the worst of them, so most
// candidates are rejected by one comparison.
class TopK {
 public:
  explicit TopK(int64_t k) : k_(static_cast<size_t>(k)) { heap_.reserve(k_); }
  void push(int64_t id, float score) {
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

// Offers rows ids[0..n) with scores s[0..n) to top. Once top is full, a score
// below its worst cannot enter (nor can NaN), so the scores are compared with
// that threshold 16 at a time and only those at or above it are pushed: a
// handful per block once the threshold has risen, where a heap comparison per
// score took 15% of a batched scan (perf). Same hits as pushing every score.
__attribute__((target("avx2"))) void offer_avx2(TopK& top, const float* s, const int64_t* ids, int64_t n) {
  int64_t i = 0;
  for (; i < n && !top.full(); ++i) top.push(ids[i], s[i]);
  if (i == n) return;
  __m256 threshold = _mm256_set1_ps(top.worst_score());
  for (; i + 16 <= n; i += 16) {
    const int lo = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + i), threshold, _CMP_GE_OQ));
    const int hi = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + i + 8), threshold, _CMP_GE_OQ));
    if ((lo | hi) == 0) continue;
    for (unsigned m = static_cast<unsigned>(lo | (hi << 8)); m != 0; m &= m - 1) {
      const int l = __builtin_ctz(m);
      top.push(ids[i + l], s[i + l]);
    }
    threshold = _mm256_set1_ps(top.worst_score());
  }
  for (; i < n; ++i) top.push(ids[i], s[i]);
}

void offer(TopK& top, const float* s, const int64_t* ids, int64_t n) {
  static const bool has_avx2 = __builtin_cpu_supports("avx2");
  if (has_avx2) {
    offer_avx2(top, s, ids, n);
    return;
  }
  for (int64_t i = 0; i < n; ++i) top.push(ids[i], s[i]);
}

// Scores of nq queries against nb contiguous fp32 rows: scores[j * nb + i] = <row i, query j>.
// One query alone goes through sgemv (a scan at the bandwidth floor).
void score_rows(const float* rows, int64_t nb, int64_t dim, const float* queries, int64_t nq, bool one_query,
                float* scores) {
  const int m = static_cast<int>(dim), n = static_cast<int>(nb), q = static_cast<int>(nq), inc = 1;
  const float one = 1.0f, zero = 0.0f;
  if (one_query) {
    sgemv_("T", &m, &n, &one, rows, &m, queries, &inc, &zero, scores, &inc);
  } else {
    sgemm_("T", "N", &n, &q, &m, &one, rows, &m, queries, &m, &zero, scores, &n);
  }
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
  // Query tiles of shape.query_tile, the last one taking the remainder (up to
  // twice the tile), so no tile of one query goes to sgemv.
  const int64_t n_tiles = std::max<int64_t>(1, nq / shape.query_tile);
  const int64_t n_items = subset ? static_cast<int64_t>(subset->size()) : base.rows;
  const int64_t n_blocks = (n_items + block_rows - 1) / block_rows;
  // A thread per ~4 MB of vectors at least: below that, waking a second thread
  // (and waiting for it when its core is busy) costs more than the scan.
  const int64_t by_size = (n_items * dim * std::max<int64_t>(nq, 1) + kMinValuesPerThread - 1) / kMinValuesPerThread;
  const int threads = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>({static_cast<int64_t>(omp_get_max_threads()), n_blocks, by_size})));
  // Contiguous fp32 rows can be handed to BLAS in place; anything else is
  // gathered (subset) or widened (fp16) into a per-thread block first.
  const bool in_place = base.type == VectorType::kF32 && subset == nullptr;
  std::vector<std::vector<TopK>> found(threads, std::vector<TopK>(static_cast<size_t>(nq), TopK(k)));

#pragma omp parallel num_threads(threads)
  {
    // OpenBLAS (OpenMP build) would start its own threads for each call when
    // this team has one thread; the parallelism is ours, over row blocks.
    omp_set_num_threads(1);
    const int t = omp_get_thread_num();
    std::vector<float> block(in_place ? 0 : static_cast<size_t>(block_rows * dim));
    const int64_t widest_tile = nq - (n_tiles - 1) * shape.query_tile;
    std::vector<float> scores(static_cast<size_t>(block_rows * widest_tile));
    std::vector<int64_t> ids(static_cast<size_t>(block_rows));
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
      for (int64_t tile = 0; tile < n_tiles; ++tile) {
        const int64_t q0 = tile * shape.query_tile;
        const int64_t qn = tile + 1 < n_tiles ? shape.query_tile : nq - q0;
        score_rows(rows, nb, dim, queries + q0 * dim, qn, nq == 1, scores.data());
        for (int64_t j = 0; j < qn; ++j) offer(found[t][q0 + j], &scores[j * nb], ids.data(), nb);
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
