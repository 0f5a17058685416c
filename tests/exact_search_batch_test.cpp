// The batched exact scan (issue 19): many queries at once give the answer of
// a brute force by the canonical score (every row scored alone, every score
// offered to a heap) bit for bit, the answer of a double-precision brute
// force, and the exact tie rule (higher score, then lower row) where scores are
// exactly equal: ties at the k-th score, duplicate rows, k beyond the rows.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <random>

#include "mmu/exact_search.h"
#include "search_test_util.h"
#include "vector/canonical_dot.h"

namespace {

using mmu::Hit;
using mmu::test::check_same_hits;
using mmu::test::random_unit_rows;

bool ranks_before(const Hit& a, const Hit& b) { return a.score > b.score || (a.score == b.score && a.id < b.id); }

std::vector<Hit> best(std::vector<Hit> all, int64_t k) {
  const size_t keep = std::min(all.size(), static_cast<size_t>(k));
  std::partial_sort(all.begin(), all.begin() + keep, all.end(), ranks_before);
  all.resize(keep);
  return all;
}

// Every candidate row (fp32, already widened) scored alone by the scalar
// canonical kernel, then the k best of all scores by the tie rule.
std::vector<std::vector<Hit>> canonical_brute(const std::vector<float>& rows, const std::vector<int64_t>& ids, int64_t d,
                                              const std::vector<float>& queries, int64_t nq, int64_t k) {
  const int64_t n = static_cast<int64_t>(ids.size());
  std::vector<std::vector<Hit>> all(static_cast<size_t>(nq));
  std::vector<float> scores(static_cast<size_t>(n));
  for (int64_t j = 0; j < nq; ++j) {
    const std::vector<double> q = mmu::widen_query(&queries[j * d], d);
    mmu::canonical_dots_scalar(q.data(), rows.data(), n, d, scores.data());
    for (int64_t i = 0; i < n; ++i) all[j].push_back({ids[i], scores[i]});
    all[j] = best(std::move(all[j]), k);
  }
  return all;
}

void check_bit_equal(const std::vector<std::vector<Hit>>& got, const std::vector<std::vector<Hit>>& want) {
  REQUIRE(got.size() == want.size());
  int64_t mismatches = 0;
  for (size_t j = 0; j < got.size(); ++j) {
    REQUIRE(got[j].size() == want[j].size());
    for (size_t i = 0; i < got[j].size(); ++i) {
      uint32_t a = 0, b = 0;
      std::memcpy(&a, &got[j][i].score, 4);
      std::memcpy(&b, &want[j][i].score, 4);
      mismatches += got[j][i].id != want[j][i].id || a != b;
    }
  }
  CHECK(mismatches == 0);
}

std::vector<int64_t> all_rows(int64_t n) {
  std::vector<int64_t> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[i] = i;
  return rows;
}

}  // namespace

TEST_CASE("batched exact_top_k gives the canonical brute force's answer bit for bit", "[exact][batch]") {
  const int64_t n = 5000, d = 24;  // ragged last block; 2,100 queries make two tiles (960 + 1,140)
  const auto base = random_unit_rows(n, d, 11);
  const int64_t nq_max = 2100;
  auto queries = random_unit_rows(nq_max, d, 12);
  // Near ties: some queries are stored rows, some rows repeat others.
  for (int64_t j = 0; j < nq_max; j += 7) std::copy_n(&base[(j * 13 % n) * d], d, &queries[j * d]);
  auto rows = base;
  for (int64_t i = 100; i < n; i += 97) std::copy_n(&rows[(i - 50) * d], d, &rows[i * d]);
  const mmu::VectorMatrix m{rows.data(), mmu::VectorType::kF32, n, d};
  const auto ids = all_rows(n);
  for (int64_t nq : {int64_t{1}, int64_t{2}, int64_t{37}, nq_max}) {
    CAPTURE(nq);
    const std::vector<float> q(queries.begin(), queries.begin() + nq * d);
    check_bit_equal(mmu::exact_top_k(m, q.data(), nq, 50), canonical_brute(rows, ids, d, q, nq, 50));
  }

  SECTION("fp16 rows and a subset") {
    std::vector<uint16_t> half(rows.size());
    std::vector<float> widened(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) widened[i] = mmu::half_to_float(half[i] = mmu::float_to_half(rows[i]));
    const mmu::VectorMatrix h{half.data(), mmu::VectorType::kF16, n, d};
    const int64_t nq = 300;
    const std::vector<float> q(queries.begin(), queries.begin() + nq * d);
    check_bit_equal(mmu::exact_top_k(h, q.data(), nq, 40), canonical_brute(widened, ids, d, q, nq, 40));
    std::vector<int64_t> subset;
    std::vector<float> gathered;
    for (int64_t i = 3; i < n; i += 3) {
      subset.push_back(i);
      gathered.insert(gathered.end(), &widened[i * d], &widened[(i + 1) * d]);
    }
    check_bit_equal(mmu::exact_top_k(h, q.data(), nq, 40, &subset), canonical_brute(gathered, subset, d, q, nq, 40));
  }
}

TEST_CASE("batched exact_top_k equals a double-precision brute force", "[exact][batch]") {
  const int64_t n = 4000, d = 32, nq = 300, k = 30;
  const auto base = random_unit_rows(n, d, 21);
  const auto queries = random_unit_rows(nq, d, 22);
  const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, n, d};
  const auto got = mmu::exact_top_k(m, queries.data(), nq, k);
  REQUIRE(static_cast<int64_t>(got.size()) == nq);
  for (int64_t j = 0; j < nq; ++j) {
    std::vector<std::pair<double, int64_t>> all;
    for (int64_t r = 0; r < n; ++r) {
      double s = 0;
      for (int64_t c = 0; c < d; ++c) s += static_cast<double>(base[r * d + c]) * queries[j * d + c];
      all.emplace_back(-s, r);
    }
    std::partial_sort(all.begin(), all.begin() + k, all.end());
    std::vector<Hit> want;
    for (int64_t i = 0; i < k; ++i) want.push_back({all[i].second, static_cast<float>(-all[i].first)});
    check_same_hits(got[j], want);
  }
}

TEST_CASE("batched exact_top_k keeps the tie rule on exactly equal scores", "[exact][batch]") {
  // Components in {-1, 0, 1}: every inner product is a small integer, exact in
  // any summation order, so most scores tie (many at the k-th) and many rows
  // are duplicates; the answer is known exactly.
  const int64_t n = 3000, d = 8, nq = 120;
  std::mt19937_64 rng(31);
  std::uniform_int_distribution<int> digit(-1, 1);
  std::vector<float> base(static_cast<size_t>(n * d)), queries(static_cast<size_t>(nq * d));
  for (float& v : base) v = static_cast<float>(digit(rng));
  for (float& v : queries) v = static_cast<float>(digit(rng));
  const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, n, d};
  auto exact = [&](int64_t j, const std::vector<int64_t>& rows, int64_t k) {
    std::vector<Hit> all;
    for (int64_t r : rows) {
      int s = 0;
      for (int64_t c = 0; c < d; ++c) s += static_cast<int>(base[r * d + c]) * static_cast<int>(queries[j * d + c]);
      all.push_back({r, static_cast<float>(s)});
    }
    return best(std::move(all), k);
  };
  auto check_exact = [&](const std::vector<std::vector<Hit>>& got, const std::vector<int64_t>& rows, int64_t k) {
    REQUIRE(static_cast<int64_t>(got.size()) == nq);
    int64_t wrong = 0, ties_at_kth = 0;
    for (int64_t j = 0; j < nq; ++j) {
      const auto want = exact(j, rows, k);
      REQUIRE(got[j].size() == want.size());
      for (size_t i = 0; i < want.size(); ++i) wrong += got[j][i].id != want[i].id || got[j][i].score != want[i].score;
      ties_at_kth += want.size() >= 2 && want[want.size() - 2].score == want.back().score;
    }
    CHECK(wrong == 0);
    return ties_at_kth;
  };
  const auto every = all_rows(n);
  // The data really ties at the k-th score, or this test would prove nothing.
  CHECK(check_exact(mmu::exact_top_k(m, queries.data(), nq, 50), every, 50) > nq / 2);
  check_exact(mmu::exact_top_k(m, queries.data(), nq, 1), every, 1);
  // k beyond the rows: every row, in rank order.
  check_exact(mmu::exact_top_k(m, queries.data(), nq, n + 500), every, n + 500);
  std::vector<int64_t> few;
  for (int64_t i = 1; i < n; i += 75) few.push_back(i);
  check_exact(mmu::exact_top_k(m, queries.data(), nq, 100, &few), few, 100);
}
