// exact_top_k against a brute force in double precision: one and many
// queries, subsets, fp16 storage, k larger than the candidates, ties.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "mmu/error.h"
#include "mmu/exact_search.h"
#include "search_test_util.h"

namespace {

using mmu::test::check_same_hits;
using mmu::test::random_unit_rows;

// Brute force: every candidate's score in double, sorted by (score desc, row asc).
std::vector<mmu::Hit> brute(const std::vector<float>& base, int64_t d, const float* q, int64_t k,
                            const std::vector<int64_t>& rows) {
  std::vector<std::pair<double, int64_t>> all;
  for (int64_t r : rows) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += static_cast<double>(base[r * d + j]) * q[j];
    all.emplace_back(-s, r);
  }
  std::sort(all.begin(), all.end());
  std::vector<mmu::Hit> out;
  for (int64_t i = 0; i < std::min<int64_t>(k, static_cast<int64_t>(all.size())); ++i)
    out.push_back({all[i].second, static_cast<float>(-all[i].first)});
  return out;
}

}  // namespace

TEST_CASE("exact_top_k equals a brute force for one and many queries", "[exact]") {
  const int64_t n = 5000, d = 48;  // several blocks, a ragged last one
  const auto base = random_unit_rows(n, d, 1);
  const auto queries = random_unit_rows(37, d, 2);
  const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, n, d};
  std::vector<int64_t> all(n);
  for (int64_t i = 0; i < n; ++i) all[i] = i;
  for (int64_t nq : {1, 37}) {
    const auto got = mmu::exact_top_k(m, queries.data(), nq, 50);
    REQUIRE(static_cast<int64_t>(got.size()) == nq);
    for (int64_t j = 0; j < nq; ++j) check_same_hits(got[j], brute(base, d, &queries[j * d], 50, all));
  }
}

TEST_CASE("exact_top_k restricted to a subset never returns other rows", "[exact]") {
  const int64_t n = 3000, d = 16;
  const auto base = random_unit_rows(n, d, 3);
  const auto q = random_unit_rows(1, d, 4);
  std::vector<int64_t> subset;
  for (int64_t i = 5; i < n; i += 7) subset.push_back(i);
  const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, n, d};
  check_same_hits(mmu::exact_top_k(m, q.data(), 1, 20, &subset)[0], brute(base, d, q.data(), 20, subset));
  // More asked for than allowed: every allowed row, once.
  const std::vector<int64_t> few = {3, 9, 2999};
  const auto got = mmu::exact_top_k(m, q.data(), 1, 10, &few)[0];
  check_same_hits(got, brute(base, d, q.data(), 10, few));
}

TEST_CASE("fp16 storage: exact over the rounded vectors", "[exact]") {
  const int64_t n = 2500, d = 32;
  const auto base = random_unit_rows(n, d, 5);
  std::vector<uint16_t> half(base.size());
  std::vector<float> rounded(base.size());
  for (size_t i = 0; i < base.size(); ++i) {
    half[i] = mmu::float_to_half(base[i]);
    rounded[i] = mmu::half_to_float(half[i]);
    REQUIRE(std::fabs(rounded[i] - base[i]) <= std::fabs(base[i]) * 0x1p-11f + 0x1p-25f);
  }
  const auto q = random_unit_rows(3, d, 6);
  const mmu::VectorMatrix m{half.data(), mmu::VectorType::kF16, n, d};
  std::vector<int64_t> all(n);
  for (int64_t i = 0; i < n; ++i) all[i] = i;
  const auto got = mmu::exact_top_k(m, q.data(), 3, 25);
  for (int j = 0; j < 3; ++j) check_same_hits(got[j], brute(rounded, d, &q[j * d], 25, all));
  std::vector<int64_t> subset = {1, 100, 2000};
  check_same_hits(mmu::exact_top_k(m, q.data(), 1, 5, &subset)[0], brute(rounded, d, q.data(), 5, subset));
}

TEST_CASE("half conversion matches IEEE round-to-nearest-even", "[exact]") {
  CHECK(mmu::float_to_half(1.0f) == 0x3c00);
  CHECK(mmu::float_to_half(-2.0f) == 0xc000);
  CHECK(mmu::float_to_half(65504.0f) == 0x7bff);
  CHECK(mmu::float_to_half(65520.0f) == 0x7c00);               // rounds to infinity
  CHECK(mmu::float_to_half(1.0f + 0x1p-11f) == 0x3c00);        // tie, to even
  CHECK(mmu::float_to_half(1.0f + 3 * 0x1p-11f) == 0x3c02);    // tie, to even (up)
  CHECK(mmu::float_to_half(0x1p-24f) == 0x0001);               // smallest subnormal
  CHECK(mmu::half_to_float(0x0001) == 0x1p-24f);
  CHECK(mmu::half_to_float(0x7bff) == 65504.0f);
  int round_trip_failures = 0;
  for (uint32_t h = 0; h < 0x7c00; ++h)
    round_trip_failures += mmu::float_to_half(mmu::half_to_float(static_cast<uint16_t>(h))) != h;
  CHECK(round_trip_failures == 0);
}

TEST_CASE("ties rank the lower row first; bad queries are refused", "[exact]") {
  const int64_t d = 4;
  std::vector<float> base(static_cast<size_t>(3000 * d), 0.5f);  // all rows equal
  const std::vector<float> q = {0.5f, 0.5f, 0.5f, 0.5f};
  const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, 3000, d};
  const auto got = mmu::exact_top_k(m, q.data(), 1, 5)[0];
  REQUIRE(got.size() == 5);
  for (int64_t i = 0; i < 5; ++i) CHECK(got[i].id == i);
  const std::vector<float> bad = {0.5f, NAN, 0.5f, 0.5f};
  CHECK_THROWS_AS(mmu::exact_top_k(m, bad.data(), 1, 5), mmu::Error);
  CHECK_THROWS_AS(mmu::exact_top_k(m, q.data(), 1, 0), mmu::Error);
}
