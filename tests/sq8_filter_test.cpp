// The sq8 scan's 8-bit filter (vector/compressed_scan.cpp): its kernels
// against a scalar sum, and whole queries against exact_top_k bit for bit
// where the filter is most likely to drop a row it must keep: a row whose
// coarse estimate is as far below its score as the bound D8 allows, near
// ties, one huge query weight, negative weights, dims that are not a
// multiple of 32 or 64, k >= rows, subsets.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>

#include "mmu/exact_search.h"
#include "search_test_util.h"
#include "vector/compressed_scan.h"

namespace {

using mmu::test::random_unit_rows;
using mmu::test::require_identical;

const std::string kSha(64, 'b');

// Every query against exact_top_k; returns the rows that passed the filter.
// `filter`: the kernel to use (none: this CPU's best).
int64_t check(const std::vector<float>& base, int64_t n, int64_t d, const std::vector<float>& queries, int64_t k,
              const std::vector<int64_t>* subset = nullptr, mmu::Sq8Filter filter = {}) {
  const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, n, d};
  const auto image = mmu::encode_sq8(m, kSha);
  const mmu::Sq8Copy copy(image.data(), image.size(), "test.sq8");
  int64_t passed = 0;
  for (size_t j = 0; j < queries.size() / static_cast<size_t>(d); ++j) {
    INFO("d " << d << " query " << j << " k " << k << (subset ? " subset" : ""));
    int64_t f = 0;
    mmu::Sq8Scan how;
    how.filter = filter;
    how.filtered = &f;
    require_identical(copy.top_k(m, &queries[j * d], k, subset, how),
                      mmu::exact_top_k(m, &queries[j * d], 1, k, subset)[0]);
    passed += f;
  }
  return passed;
}

}  // namespace

TEST_CASE("sq8 filter kernels equal a scalar sum, ties at the threshold included", "[sq8]") {
  std::mt19937_64 rng(61);
  std::uniform_int_distribution<int> code(0, 255), w127(-127, 127), w64(-64, 64);
  for (const int64_t stride : {16, 32, 48, 64, 80, 96, 112, 512, 528}) {
    const int64_t rows = 13;  // one allocation per row, exactly stride bytes: a read past the end is a bug
    std::vector<std::vector<uint8_t>> codes(rows, std::vector<uint8_t>(static_cast<size_t>(stride)));
    for (auto& r : codes)
      for (auto& c : r) c = static_cast<uint8_t>(code(rng));
    for (int64_t i = 0; i < stride; ++i) codes[0][i] = 255;  // the largest sums: every code 255
    for (const int bound : {64, 127}) {
      std::vector<int8_t> w(static_cast<size_t>((stride + 31) / 32 * 32), 0);
      for (int64_t i = 0; i < stride; ++i) w[i] = static_cast<int8_t>(bound == 64 ? w64(rng) : w127(rng));
      if (bound == 127) std::fill(w.begin(), w.begin() + stride, int8_t{127});  // the extreme weight everywhere
      for (int shift = 0; shift < 5; ++shift) {
        const uint8_t* block[8];
        for (int j = 0; j < 8; ++j) block[j] = codes[static_cast<size_t>((j * 3 + shift) % rows)].data();
        int32_t sums[8];
        for (int j = 0; j < 8; ++j) {
          sums[j] = 0;
          for (int64_t i = 0; i < stride; ++i) sums[j] += block[j][i] * w[i];
        }
        for (const int32_t t : {sums[shift % 8] - 1, sums[shift % 8], sums[shift % 8] + 1, INT32_MIN, INT32_MAX}) {
          uint32_t want = 0;
          for (int j = 0; j < 8; ++j) want |= sums[j] >= t ? 1u << j : 0u;
          INFO("stride " << stride << " bound " << bound << " t " << t);
          REQUIRE(mmu::sq8_filter8_scalar(block, w.data(), stride, t) == want);
          if (bound == 64 && __builtin_cpu_supports("avx2")) REQUIRE(mmu::sq8_filter8_avx2(block, w.data(), stride, t) == want);
          if (mmu::sq8_filter8_vnni_available()) REQUIRE(mmu::sq8_filter8_vnni(block, w.data(), stride, t) == want);
        }
      }
    }
  }
}

namespace {

// Every dimension spans [0, 1] (scale 1/255, codes exact), and each query
// weight sits 0.4 of a step past an 8-bit level (m8 levels), rounding towards
// zero, so x* = (1 where q > 0, else 0) has the best score and an 8-bit
// estimate exactly D8 below it. A decoy 0.4 steps below x* comes first and
// sets tau; a filter with D8 10% too small skips x* (checked by hand). Every
// value is on the code grid, so the residual bounds do not hide such a shortfall.
void check_tight_row(int64_t m8, mmu::Sq8Filter filter = {}) {
  const int64_t d = 40, fill = 100;
  std::mt19937_64 rng(71);
  std::uniform_int_distribution<int64_t> level(1, m8 - 2);
  std::uniform_int_distribution<int> low(0, 127);  // filler codes: on the grid, so every row's residual is ~0
  for (int trial = 0; trial < 4; ++trial) {
    std::vector<float> q(static_cast<size_t>(d));
    q[0] = 1.0f;  // the largest weight, at level m8 exactly
    for (int64_t i = 1; i < d; ++i) {
      const double v = (static_cast<double>(i == 1 ? 0 : level(rng)) + 0.4) / static_cast<double>(m8);
      q[i] = static_cast<float>(i % 3 == 2 ? -v : v);
    }
    const int64_t n = 3 + fill + 1;
    std::vector<float> base(static_cast<size_t>(n * d), 0.0f);
    for (int64_t i = 0; i < d; ++i) base[d + i] = 1.0f;  // row 1 all ones (row 0 all zeros): the [0, 1] ranges
    std::vector<float> best(static_cast<size_t>(d));
    for (int64_t i = 0; i < d; ++i) best[i] = q[i] > 0 ? 1.0f : 0.0f;
    std::copy(best.begin(), best.end(), base.begin() + 2 * d);
    base[2 * d + 1] = 254.0f / 255.0f;  // the decoy: x* one code lower on its smallest weight
    for (int64_t r = 3; r < 3 + fill; ++r)
      for (int64_t i = 0; i < d; ++i) base[r * d + i] = static_cast<float>(low(rng)) / 255.0f;  // filler, far below
    std::copy(best.begin(), best.end(), base.begin() + (n - 1) * d);
    const std::vector<float> queries = q;
    for (int64_t k : {1, 2, 3}) check(base, n, d, queries, k, nullptr, filter);
    const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, n, d};
    REQUIRE(mmu::exact_top_k(m, q.data(), 1, 1)[0][0].id == n - 1);  // x*, not the decoy, is first
  }
}

}  // namespace

TEST_CASE("sq8 keeps the row whose 8-bit estimate is as low as the bound allows", "[sq8]") {
  check_tight_row(mmu::sq8_filter8_vnni_available() ? 127 : 64);  // the filter's weight range on this CPU
}

TEST_CASE("sq8 answers equal the fp32 scan with each filter kernel", "[sq8]") {
  struct Kernel {
    const char* name;
    mmu::Sq8FilterFn fn;
    int64_t max_weight;
    bool available;
  };
  const Kernel kernels[] = {{"scalar", mmu::sq8_filter8_scalar, 127, true},
                            {"avx2", mmu::sq8_filter8_avx2, 64, __builtin_cpu_supports("avx2") != 0},
                            {"vnni", mmu::sq8_filter8_vnni, 127, mmu::sq8_filter8_vnni_available()}};
  for (const Kernel& k : kernels) {
    if (!k.available) continue;
    DYNAMIC_SECTION("kernel " << k.name) {
      const mmu::Sq8Filter filter{k.fn, k.max_weight};
      check_tight_row(k.max_weight, filter);
      const int64_t n = 3001, d = 70;
      const auto base = random_unit_rows(n, d, 121);
      auto queries = random_unit_rows(3, d, 122);
      queries[0] = 1e6f;  // one huge weight
      std::vector<int64_t> subset;
      for (int64_t r = 1; r < n; r += 2) subset.push_back(r);
      for (int64_t kk : {int64_t{1}, int64_t{50}, n + 1}) {
        const int64_t passed = check(base, n, d, queries, kk, nullptr, filter);
        check(base, n, d, queries, kk, &subset, filter);
        if (kk == 50) CHECK(passed < 3 * n / 2);  // the kernel filters (3 queries, 1 of them unfilterable)
      }
    }
  }
}

TEST_CASE("sq8 answers equal the fp32 scan under extreme query weights and ragged dims", "[sq8]") {
  for (const int64_t d : {1, 16, 20, 40, 70, 96, 100, 129}) {
    const int64_t n = 1500;
    auto base = random_unit_rows(n, d, static_cast<uint64_t>(80 + d));
    // Near ties: 200 rows within ~1e-7 of row 0's direction, so the k-th
    // score of a query near it falls among them.
    std::mt19937_64 rng(static_cast<uint64_t>(90 + d));
    std::uniform_int_distribution<int64_t> row(1, n - 1), dim(0, d - 1);
    for (int i = 0; i < 200; ++i) {
      const int64_t r = row(rng);
      std::copy(base.begin(), base.begin() + d, base.begin() + r * d);
      base[r * d + dim(rng)] += (i % 2 ? 1e-7f : -1e-7f);
    }
    std::vector<float> queries(base.begin(), base.begin() + d);  // the tied direction
    auto more = random_unit_rows(4, d, static_cast<uint64_t>(100 + d));
    for (int64_t i = 0; i < d; ++i) {
      more[i] = i == 0 ? 1e6f : 1e-3f * more[i];    // one huge weight, the rest tiny
      more[d + i] = -std::fabs(more[d + i]);       // every weight negative
      more[2 * d + i] = i % 2 ? 0.0f : more[2 * d + i];  // half zero
    }
    queries.insert(queries.end(), more.begin(), more.end());
    std::vector<int64_t> subset;
    for (int64_t r = 0; r < n; r += 3) subset.push_back(r);
    for (int64_t k : {int64_t{1}, int64_t{50}, n - 1, n, n + 1}) {
      check(base, n, d, queries, k);
      check(base, n, d, queries, k, &subset);
    }
  }
}

TEST_CASE("sq8's 8-bit filter passes few rows on random data", "[sq8]") {
  const int64_t n = 20000, d = 64;
  const auto base = random_unit_rows(n, d, 111);
  const auto queries = random_unit_rows(5, d, 112);
  const int64_t passed = check(base, n, d, queries, 10);
  // A filter that kept every row would also give the right answers.
  if (__builtin_cpu_supports("avx2")) CHECK(passed < 5 * n / 4);
}
