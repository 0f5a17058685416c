// The sq8 scan (vector/compressed_scan.h) against exact_top_k, bit for bit:
// random data, adversarial near ties and duplicates, large-magnitude and
// constant dimensions, k >= rows, subsets; and damaged copies refused.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "mmu/error.h"
#include "mmu/exact_search.h"
#include "search_test_util.h"
#include "vector/compressed_scan.h"

namespace {

using mmu::test::random_unit_rows;
using mmu::test::require_identical;

const std::string kSha(64, 'a');

struct Case {
  std::vector<float> base;
  int64_t n, d;
  std::vector<uint8_t> image;
  mmu::VectorMatrix m() const { return {base.data(), mmu::VectorType::kF32, n, d}; }
};

Case make_case(std::vector<float> base, int64_t n, int64_t d) {
  Case c{std::move(base), n, d, {}};
  c.image = mmu::encode_sq8(c.m(), kSha);
  return c;
}

// Every query against exact_top_k, with and without `subset`; returns the
// total number of fp32 re-scores.
int64_t check_queries(const Case& c, const std::vector<float>& queries, int64_t k,
                      const std::vector<int64_t>* subset = nullptr) {
  const mmu::Sq8Copy copy(c.image.data(), c.image.size(), "test.sq8");
  int64_t rescored = 0;
  for (size_t j = 0; j < queries.size() / static_cast<size_t>(c.d); ++j) {
    const float* q = &queries[j * c.d];
    const auto want = mmu::exact_top_k(c.m(), q, 1, k, subset)[0];
    int64_t cands = 0;
    mmu::Sq8Scan how;
    how.candidates = &cands;
    const auto got = copy.top_k(c.m(), q, k, subset, how);
    INFO("query " << j << " k " << k);
    require_identical(got, want);
    rescored += cands;
  }
  return rescored;
}

}  // namespace

TEST_CASE("sq8 answers equal the fp32 scan on random data, re-scoring few rows", "[sq8]") {
  const int64_t n = 5003, d = 100;  // ragged last block and a ragged 4-row tail; codes padded to 112
  const Case c = make_case(random_unit_rows(n, d, 11), n, d);
  const auto queries = random_unit_rows(20, d, 12);
  for (int64_t k : {1, 10, 50}) {
    const int64_t rescored = check_queries(c, queries, k);
    // The bound prunes: a scan that re-scored everything would also pass the equality.
    CHECK(rescored < 20 * n / 4);
  }
}

TEST_CASE("sq8 answers equal the fp32 scan on near ties and duplicates", "[sq8]") {
  const int64_t n = 3001, d = 64;
  auto base = random_unit_rows(n, d, 21);
  std::mt19937_64 rng(22);
  std::uniform_int_distribution<int64_t> row(0, n - 1), dim(0, d - 1);
  // 1500 rows within ~1e-7 of one direction (scores within 1e-6 of each
  // other at the top), 300 exact duplicates of it among them.
  const std::vector<float> centre(base.begin(), base.begin() + d);
  for (int64_t i = 0; i < 1500; ++i) {
    const int64_t r = row(rng);
    std::copy(centre.begin(), centre.end(), base.begin() + r * d);
    if (i >= 300) base[r * d + dim(rng)] += (i % 2 ? 1e-7f : -1e-7f);
  }
  const Case c = make_case(base, n, d);
  std::vector<float> queries(centre);
  const auto more = random_unit_rows(5, d, 23);
  queries.insert(queries.end(), more.begin(), more.end());
  for (int64_t k : {1, 50, 400}) check_queries(c, queries, k);
}

TEST_CASE("sq8 answers equal the fp32 scan with large-magnitude and constant dimensions", "[sq8]") {
  const int64_t n = 2050, d = 33;
  auto base = random_unit_rows(n, d, 31);
  for (int64_t i = 0; i < n; ++i) {
    base[i * d + 0] *= 1e4f;      // one dimension 10^4 times the others
    base[i * d + 5] = 0.25f;      // constant: scale 0
    base[i * d + 6] = -3.0e3f;    // constant and large
    base[i * d + 7] = (i % 3) * 1e-30f;  // tiny values
  }
  const Case c = make_case(base, n, d);
  auto queries = random_unit_rows(10, d, 32);
  queries[3] = 0;  // a zero component; and a query of large magnitude
  for (int64_t j = 0; j < d; ++j) queries[9 * d + j] *= 1e5f;
  for (int64_t k : {1, 7, 50}) check_queries(c, queries, k);
}

TEST_CASE("sq8 answers equal the fp32 scan when k >= rows, and with subsets", "[sq8]") {
  const int64_t n = 37, d = 20;
  const Case small = make_case(random_unit_rows(n, d, 41), n, d);
  const auto queries = random_unit_rows(4, d, 42);
  for (int64_t k : {36, 37, 38, 100}) check_queries(small, queries, k);

  const int64_t big = 4100;
  const Case c = make_case(random_unit_rows(big, d, 43), big, d);
  std::mt19937_64 rng(44);
  std::bernoulli_distribution keep(0.4);
  std::vector<int64_t> subset;
  for (int64_t r = 0; r < big; ++r)
    if (keep(rng)) subset.push_back(r);
  const std::vector<int64_t> few{3, 17, 4099};
  const std::vector<int64_t> none;
  for (int64_t k : {1, 50, 5000}) {
    check_queries(c, queries, k, &subset);
    check_queries(c, queries, k, &few);
    check_queries(c, queries, k, &none);
  }
}

TEST_CASE("sq8 copies that are cut short or carry a bad bound are refused, naming the file", "[sq8]") {
  const int64_t n = 40, d = 8;
  Case c = make_case(random_unit_rows(n, d, 51), n, d);
  auto cut = c.image;
  cut.resize(cut.size() - 1);
  REQUIRE_THROWS_WITH(mmu::Sq8Copy(cut.data(), cut.size(), "space/vectors.sq8"),
                      Catch::Contains("space/vectors.sq8") && Catch::Contains("damaged"));
  auto bad = c.image;
  const float nan = std::nanf("");
  // The last row's residual bound sits right before the 64-aligned codes.
  const size_t codes = bad.size() - static_cast<size_t>(n * 16);
  size_t residual_end = 112 + 4 * 8 * 4 + static_cast<size_t>(n) * 4;  // header + 4 x dim floats + rows
  REQUIRE(residual_end <= codes);
  std::memcpy(&bad[residual_end - 4], &nan, 4);
  REQUIRE_THROWS_WITH(mmu::Sq8Copy(bad.data(), bad.size(), "x.sq8"), Catch::Contains("row 39"));
  std::vector<float> inf_rows(c.base);
  inf_rows[5] = std::numeric_limits<float>::infinity();
  REQUIRE_THROWS_WITH(mmu::encode_sq8({inf_rows.data(), mmu::VectorType::kF32, n, d}, kSha),
                      Catch::Contains("row 0") && Catch::Contains("non-finite"));
}
