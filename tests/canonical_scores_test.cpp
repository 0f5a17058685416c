// Canonical scores (vector/canonical_dot.h): the AVX2 and scalar kernels and a
// re-implementation of the rule here agree bit for bit; a row's score does not
// depend on its place (rows prepended, other 1024-row blocks, a subset, fp16
// storage, the batch, the threads); exact_top_k equals a brute force by the
// canonical score on random and adversarial near-tie data (rows within 1e-7,
// exact duplicates, huge rows orthogonal to the query, overflowing products).
#include <catch2/catch.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "mmu/exact_search.h"
#include "search_test_util.h"
#include "vector/canonical_dot.h"

namespace {

using mmu::Hit;
using mmu::test::by_the_rule;
using mmu::test::random_unit_rows;

uint32_t bits(float f) {
  uint32_t b = 0;
  std::memcpy(&b, &f, 4);
  return b;
}

bool ranks_before(const Hit& a, const Hit& b) { return a.score > b.score || (a.score == b.score && a.id < b.id); }

// Brute force: every row of `rows` (ids given) scored alone by the rule, the k best by (score desc, id asc).
std::vector<Hit> brute(const std::vector<float>& base, int64_t d, const float* q, int64_t k,
                       const std::vector<int64_t>& rows) {
  std::vector<Hit> all;
  for (int64_t r : rows) all.push_back({r, by_the_rule(q, &base[r * d], d)});
  const size_t keep = std::min(all.size(), static_cast<size_t>(k));
  std::partial_sort(all.begin(), all.begin() + keep, all.end(), ranks_before);
  all.resize(keep);
  return all;
}

std::vector<int64_t> iota_rows(int64_t n, int64_t from = 0) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = from + i;
  return v;
}

// Same ids (after mapping got's through `to_original`) and the same score bits, rank by rank.
int64_t mismatches(const std::vector<Hit>& got, const std::vector<Hit>& want, int64_t shift = 0) {
  if (got.size() != want.size()) return 1 + static_cast<int64_t>(std::max(got.size(), want.size()));
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) bad += got[i].id - shift != want[i].id || bits(got[i].score) != bits(want[i].score);
  return bad;
}

int64_t mismatches(const std::vector<std::vector<Hit>>& got, const std::vector<std::vector<Hit>>& want,
                   int64_t shift = 0) {
  if (got.size() != want.size()) return 1;
  int64_t bad = 0;
  for (size_t j = 0; j < got.size(); ++j) bad += mismatches(got[j], want[j], shift);
  return bad;
}

std::vector<std::vector<Hit>> brute_all(const std::vector<float>& base, int64_t d, const std::vector<float>& queries,
                                        int64_t k, const std::vector<int64_t>& rows) {
  std::vector<std::vector<Hit>> out;
  for (size_t j = 0; j < queries.size() / static_cast<size_t>(d); ++j)
    out.push_back(brute(base, d, &queries[j * d], k, rows));
  return out;
}

struct Threads {  // restores the OpenMP thread count on scope exit
  int before = omp_get_max_threads();
  explicit Threads(int n) { omp_set_num_threads(n); }
  ~Threads() { omp_set_num_threads(before); }
};

}  // namespace

TEST_CASE("canonical kernels: AVX2, scalar and the written rule agree bit for bit", "[canonical]") {
  std::mt19937_64 rng(7);
  std::normal_distribution<float> g;
  std::uniform_int_distribution<int> exponent(-60, 60);
  const std::vector<int64_t> dims = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100, 511, 512, 513, 1000};
  int64_t compared = 0;
  for (int64_t d : dims) {
    for (int kind = 0; kind < 4; ++kind) {  // unit scale, huge, tiny, mixed magnitudes
      const int64_t n = 13;                 // 3 groups of 4 rows and a remainder row
      std::vector<float> q(static_cast<size_t>(d)), rows(static_cast<size_t>(n * d));
      const auto value = [&]() {
        const float v = g(rng);
        if (kind == 1) return v * 1e18f;
        if (kind == 2) return v * 1e-22f;
        if (kind == 3) return std::ldexp(v, exponent(rng));
        return v;
      };
      for (float& v : q) v = value();
      for (float& v : rows) v = value();
      const std::vector<double> wide = mmu::widen_query(q.data(), d);
      std::vector<float> scalar(static_cast<size_t>(n)), avx2(static_cast<size_t>(n)), any(static_cast<size_t>(n));
      mmu::canonical_dots_scalar(wide.data(), rows.data(), n, d, scalar.data());
      mmu::canonical_dots(wide.data(), rows.data(), n, d, any.data());
      if (mmu::canonical_dots_avx2_available()) mmu::canonical_dots_avx2(wide.data(), rows.data(), n, d, avx2.data());
      for (int64_t r = 0; r < n; ++r) {
        INFO("dim " << d << " kind " << kind << " row " << r);
        const float rule = by_the_rule(q.data(), &rows[r * d], d);
        CHECK(bits(scalar[r]) == bits(rule));
        CHECK(bits(any[r]) == bits(rule));
        CHECK(bits(mmu::canonical_dot(wide.data(), &rows[r * d], d)) == bits(rule));
        if (mmu::canonical_dots_avx2_available()) CHECK(bits(avx2[r]) == bits(rule));
        // Accurate: within u |<q,x>| + 2^-149 + 2^-48 sum|q x| of a long double sum.
        long double exact = 0, mag = 0;
        for (int64_t i = 0; i < d; ++i) {
          exact += static_cast<long double>(q[i]) * rows[r * d + i];
          mag += std::fabs(static_cast<long double>(q[i]) * rows[r * d + i]);
        }
        if (std::isfinite(rule))
          CHECK(std::fabs(rule - exact) <= std::ldexp(std::fabs(exact), -24) + std::ldexp(mag, -48) + 0x1p-149L);
        ++compared;
      }
    }
  }
  CHECK(compared == static_cast<int64_t>(dims.size()) * 4 * 13);
}

TEST_CASE("a row's canonical score does not depend on its place, the batch or the threads", "[canonical]") {
  const int64_t n = 3000, d = 40, k = 30;
  auto base = random_unit_rows(n, d, 41);
  // Near ties: rows that differ from another in one component by an ulp or two.
  for (int64_t i = 50; i < n; i += 61) {
    std::copy_n(&base[(i - 17) * d], d, &base[i * d]);
    base[i * d + i % d] = std::nextafter(base[i * d + i % d], 1.0f);
  }
  auto queries = random_unit_rows(1000, d, 42);
  for (int64_t j = 0; j < 1000; j += 5) std::copy_n(&base[(j * 7 % n) * d], d, &queries[j * d]);
  const std::vector<float> q3(queries.begin(), queries.begin() + 3 * d);
  const auto want = brute_all(base, d, queries, k, iota_rows(n));
  const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, n, d};

  SECTION("batches of 1, 3 and 1000, on 1 and 2 threads") {
    for (int threads : {1, 2}) {
      CAPTURE(threads);
      const Threads t(threads);
      CHECK(mismatches(mmu::exact_top_k(m, queries.data(), 1000, k), want) == 0);
      const auto three = mmu::exact_top_k(m, q3.data(), 3, k);
      CHECK(mismatches(three, {want[0], want[1], want[2]}) == 0);
      for (int64_t j = 0; j < 3; ++j) CHECK(mismatches(mmu::exact_top_k(m, &queries[j * d], 1, k)[0], want[j]) == 0);
    }
  }

  SECTION("0 to 7 rows prepended, and other 1024-row blocks") {
    std::mt19937_64 rng(43);
    std::normal_distribution<float> g;
    for (int64_t p : {1, 2, 3, 4, 5, 6, 7, 1021, 1024, 1500}) {
      CAPTURE(p);
      // Prepended rows score far below the stored ones (scaled down), so the answer is the same rows, shifted.
      std::vector<float> shifted(static_cast<size_t>(p * d));
      for (float& v : shifted) v = g(rng) * 1e-3f;
      shifted.insert(shifted.end(), base.begin(), base.end());
      const mmu::VectorMatrix s{shifted.data(), mmu::VectorType::kF32, n + p, d};
      CHECK(mismatches(mmu::exact_top_k(s, q3.data(), 3, k), {want[0], want[1], want[2]}, p) == 0);
      CHECK(mismatches(mmu::exact_top_k(s, queries.data(), 1, k)[0], want[0], p) == 0);
    }
  }

  SECTION("a subset of interleaved rows, and fp16 storage against its widening") {
    std::vector<float> mixed;
    std::vector<int64_t> subset;
    const auto filler = random_unit_rows(n, d, 44);
    for (int64_t i = 0; i < n; ++i) {
      subset.push_back(2 * i + 1);
      mixed.insert(mixed.end(), &filler[i * d], &filler[(i + 1) * d]);
      mixed.insert(mixed.end(), &base[i * d], &base[(i + 1) * d]);
    }
    const mmu::VectorMatrix x{mixed.data(), mmu::VectorType::kF32, 2 * n, d};
    auto remap = [](std::vector<std::vector<Hit>> hits) {
      for (auto& q : hits)
        for (Hit& h : q) h.id = (h.id - 1) / 2;
      return hits;
    };
    CHECK(mismatches(remap(mmu::exact_top_k(x, q3.data(), 3, k, &subset)), {want[0], want[1], want[2]}) == 0);
    CHECK(mismatches(remap(mmu::exact_top_k(x, queries.data(), 1, k, &subset))[0], want[0]) == 0);

    std::vector<uint16_t> half(base.size());
    std::vector<float> widened(base.size());
    for (size_t i = 0; i < base.size(); ++i) widened[i] = mmu::half_to_float(half[i] = mmu::float_to_half(base[i]));
    const mmu::VectorMatrix h{half.data(), mmu::VectorType::kF16, n, d};
    const auto want_half = brute_all(widened, d, q3, k, iota_rows(n));
    CHECK(mismatches(mmu::exact_top_k(h, q3.data(), 3, k), want_half) == 0);
    CHECK(mismatches(mmu::exact_top_k(h, q3.data(), 1, k)[0], want_half[0]) == 0);
    std::vector<int64_t> every_third;
    for (int64_t i = 0; i < n; i += 3) every_third.push_back(i);
    CHECK(mismatches(mmu::exact_top_k(h, q3.data(), 3, k, &every_third), brute_all(widened, d, q3, k, every_third)) == 0);
  }
}

TEST_CASE("one query on 1 and 2 threads scores a large space alike", "[canonical]") {
  const int64_t n = 20000, d = 128, k = 40;  // 2.5 M values: the scan takes two threads
  const auto base = random_unit_rows(n, d, 51);
  const auto queries = random_unit_rows(2, d, 52);
  const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, n, d};
  const auto want = brute_all(base, d, queries, k, iota_rows(n));
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    const Threads t(threads);
    CHECK(mismatches(mmu::exact_top_k(m, queries.data(), 1, k)[0], want[0]) == 0);
    CHECK(mismatches(mmu::exact_top_k(m, queries.data(), 2, k), want) == 0);
  }
}

TEST_CASE("exact_top_k equals the canonical brute force on adversarial near ties", "[canonical]") {
  const int64_t d = 64, k = 25, nq = 40;
  std::mt19937_64 rng(61);
  std::normal_distribution<double> g;
  const auto queries = random_unit_rows(nq, d, 62);
  std::vector<std::vector<float>> plain;
  // Per query a cloud of 60 rows within ~1e-7 of it: scores a few ulps apart,
  // many equal in float, the k-th of each answer among them; a few exact copies.
  for (int64_t j = 0; j < nq; ++j)
    for (int64_t i = 0; i < 60; ++i) {
      std::vector<float> v(&queries[j * d], &queries[(j + 1) * d]);
      if (i % 20 != 0)
        for (float& x : v) x += static_cast<float>(1e-7 * g(rng));
      plain.push_back(v);
    }
  // Exact duplicates of random rows.
  const auto other = random_unit_rows(200, d, 63);
  for (int rep = 0; rep < 5; ++rep)
    for (int64_t i = 0; i < 200; ++i) plain.emplace_back(&other[i * d], &other[(i + 1) * d]);
  std::shuffle(plain.begin(), plain.end(), rng);
  // Rows of norm 1e6 orthogonal to every query (in double, before rounding):
  // they widen the SGEMM bound of their block to ~4 (every row of it re-scored).
  std::vector<std::vector<double>> basis;
  for (int64_t j = 0; j < nq; ++j) {
    std::vector<double> b(&queries[j * d], &queries[(j + 1) * d]);
    for (const auto& c : basis) {
      double p = 0;
      for (int64_t i = 0; i < d; ++i) p += b[i] * c[i];
      for (int64_t i = 0; i < d; ++i) b[i] -= p * c[i];
    }
    double nb = 0;
    for (double x : b) nb += x * x;
    for (double& x : b) x /= std::sqrt(nb);
    basis.push_back(b);
  }
  std::vector<std::vector<float>> huge;
  for (int64_t r = 0; r < 172; ++r) {
    std::vector<double> v(static_cast<size_t>(d));
    for (double& x : v) x = g(rng);
    for (const auto& c : basis) {
      double p = 0;
      for (int64_t i = 0; i < d; ++i) p += v[i] * c[i];
      for (int64_t i = 0; i < d; ++i) v[i] -= p * c[i];
    }
    std::vector<float> f(static_cast<size_t>(d));
    for (int64_t i = 0; i < d; ++i) f[i] = static_cast<float>(1e6 * v[i]);
    huge.push_back(f);
  }
  // Rows whose products overflow a float partial sum (no bound: that block is
  // scored canonically): -a h with <q_0, h> = 100 and <q_j, h> = 1 for the
  // other queries (h in the queries' span, by the basis above), so every query
  // scores them far below its answer, the first one -inf for most.
  std::vector<double> h(static_cast<size_t>(d), 0.0), c(static_cast<size_t>(nq));
  for (int64_t j = 0; j < nq; ++j) {
    double rest = j == 0 ? 100 : 1;
    for (int64_t l = 0; l < j; ++l) {
      double r = 0;
      for (int64_t i = 0; i < d; ++i) r += queries[j * d + i] * basis[l][i];
      rest -= r * c[l];
    }
    double rjj = 0;
    for (int64_t i = 0; i < d; ++i) rjj += queries[j * d + i] * basis[j][i];
    c[j] = rest / rjj;
    for (int64_t i = 0; i < d; ++i) h[i] += c[j] * basis[j][i];
  }
  double h_max = 0;
  for (double x : h) h_max = std::max(h_max, std::fabs(x));
  std::uniform_real_distribution<double> share(0.2, 1.0);
  std::vector<std::vector<float>> overflowing;
  for (int64_t r = 0; r < 100; ++r) {
    const double a = 3e38 / h_max * share(rng);
    std::vector<float> f(static_cast<size_t>(d));
    for (int64_t i = 0; i < d; ++i) f[i] = static_cast<float>(-a * h[i]);
    overflowing.push_back(f);
  }
  // Blocks 0-1 plain rows (the bound at work), block 2 plain and huge rows
  // mixed, then the last plain rows and the overflowing ones.
  std::vector<std::vector<float>> rows(plain.begin(), plain.begin() + 2048);
  std::vector<std::vector<float>> mixed(plain.begin() + 2048, plain.begin() + 2900);
  mixed.insert(mixed.end(), huge.begin(), huge.end());
  std::shuffle(mixed.begin(), mixed.end(), rng);
  rows.insert(rows.end(), mixed.begin(), mixed.end());
  rows.insert(rows.end(), plain.begin() + 2900, plain.end());
  rows.insert(rows.end(), overflowing.begin(), overflowing.end());
  std::vector<float> base;
  for (const auto& r : rows) base.insert(base.end(), r.begin(), r.end());
  const int64_t n = static_cast<int64_t>(rows.size());
  const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, n, d};
  const auto every = iota_rows(n);
  const auto want = brute_all(base, d, queries, k, every);
  // The answers really end among near ties (or this proves nothing).
  int64_t close = 0;
  for (int64_t j = 1; j < nq; ++j) close += want[j][k - 2].score - want[j][k - 1].score <= 1.2e-7f;
  CHECK(close >= nq / 2);
  CHECK(mismatches(mmu::exact_top_k(m, queries.data(), nq, k), want) == 0);
  for (int64_t j = 0; j < nq; j += 13) CHECK(mismatches(mmu::exact_top_k(m, &queries[j * d], 1, k)[0], want[j]) == 0);
  // k beyond the rows: every row in canonical order, infinite scores included.
  const std::vector<float> q2(queries.begin(), queries.begin() + 2 * d);
  const auto all = brute_all(base, d, q2, n + 10, every);
  CHECK(mismatches(mmu::exact_top_k(m, q2.data(), 2, n + 10), all) == 0);
  CHECK(std::count_if(all[0].begin(), all[0].end(), [](const Hit& h) { return std::isinf(h.score); }) >= 2);
}
