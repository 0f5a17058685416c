// DeviceIndex (the LibTorch exact search of --device cuda) run on LibTorch's
// CPU device, the very code a GPU runs, against exact_top_k (the CPU path):
// one and many queries, blocks much smaller than the space (so block
// candidates are merged), subsets, fp16 storage, k larger than the
// candidates, exact ties across blocks, and the argument checks.
//
// Scores are fp32 on both sides but summed in a different order (BLAS sgemv /
// sgemm vs LibTorch's mm), so they may differ in the last bits: rows are then
// compared only where no other score lies within rounding (near ties may swap).
// With values whose sums are exact in fp32 the two must agree bit for bit.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "mmu/device_search.h"
#include "mmu/error.h"
#include "mmu/exact_search.h"
#include "search_test_util.h"

namespace {

using mmu::test::check_same_hits;
using mmu::test::random_unit_rows;

void check_all(const std::vector<std::vector<mmu::Hit>>& got, const std::vector<std::vector<mmu::Hit>>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t j = 0; j < got.size(); ++j) check_same_hits(got[j], want[j]);
}

constexpr auto kTorchCpu = mmu::SearchDevice::kTorchCpu;

}  // namespace

TEST_CASE("device search on torch-cpu equals exact_top_k: one and many queries, small blocks", "[device]") {
  const int64_t n = 3001, d = 32;  // ragged last block
  const auto base = random_unit_rows(n, d, 11);
  const auto queries = random_unit_rows(9, d, 12);
  const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, n, d};
  // 64 KB blocks: a single query's scores span several blocks, a batch's more.
  for (const int64_t block_bytes : {int64_t{64} << 10, mmu::kDefaultDeviceBlockBytes}) {
    const auto index = mmu::DeviceIndex::open(m, kTorchCpu, block_bytes);
    CHECK(index->rows() == n);
    CHECK(index->dim() == d);
    for (const int64_t k : {int64_t{1}, int64_t{10}, int64_t{257}}) {
      check_all(index->top_k(queries.data(), 1, k), mmu::exact_top_k(m, queries.data(), 1, k));
      check_all(index->top_k(queries.data(), 9, k), mmu::exact_top_k(m, queries.data(), 9, k));
    }
  }
}

TEST_CASE("device search on torch-cpu: subsets, k beyond the candidates, fp16 rows", "[device]") {
  const int64_t n = 2000, d = 24;
  const auto base = random_unit_rows(n, d, 21);
  const auto queries = random_unit_rows(4, d, 22);
  const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, n, d};
  const auto index = mmu::DeviceIndex::open(m, kTorchCpu, 16 << 10);

  std::vector<int64_t> subset;
  for (int64_t i = 3; i < n; i += 7) subset.push_back(i);
  check_all(index->top_k(queries.data(), 4, 30, &subset), mmu::exact_top_k(m, queries.data(), 4, 30, &subset));
  for (const auto& hits : index->top_k(queries.data(), 4, 30, &subset))
    for (const auto& h : hits) CHECK(std::binary_search(subset.begin(), subset.end(), h.id));

  // k larger than the candidates: every candidate, ranked.
  const std::vector<int64_t> few = {5, 17, 1999};
  const auto got_few = index->top_k(queries.data(), 4, 50, &few);
  check_all(got_few, mmu::exact_top_k(m, queries.data(), 4, 50, &few));
  CHECK(got_few[0].size() == 3);
  check_all(index->top_k(queries.data(), 2, n + 10), mmu::exact_top_k(m, queries.data(), 2, n + 10));
  const std::vector<int64_t> none;
  const auto got_none = index->top_k(queries.data(), 4, 5, &none);
  REQUIRE(got_none.size() == 4);
  CHECK(got_none[0].empty());

  // fp16 storage: both paths widen the same halves to fp32.
  std::vector<uint16_t> halves(base.size());
  for (size_t i = 0; i < base.size(); ++i) halves[i] = mmu::float_to_half(base[i]);
  const mmu::VectorMatrix h{halves.data(), mmu::VectorType::kF16, n, d};
  const auto half_index = mmu::DeviceIndex::open(h, kTorchCpu, 16 << 10);
  check_all(half_index->top_k(queries.data(), 4, 40), mmu::exact_top_k(h, queries.data(), 4, 40));
  check_all(half_index->top_k(queries.data(), 1, 40, &subset), mmu::exact_top_k(h, queries.data(), 1, 40, &subset));
}

TEST_CASE("device search breaks exact ties as exact_top_k does: lower row first, across blocks", "[device]") {
  // Small integers: every product and sum is exact in fp32, so both paths give
  // bit-identical scores and many rows tie; the rows must then agree exactly.
  const int64_t n = 1500, d = 8;
  std::mt19937_64 rng(5);
  std::uniform_int_distribution<int> val(-2, 2);
  std::vector<float> base(static_cast<size_t>(n * d)), queries(3 * d);
  for (auto& v : base) v = static_cast<float>(val(rng));
  for (auto& v : queries) v = static_cast<float>(val(rng));
  const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, n, d};
  const auto index = mmu::DeviceIndex::open(m, kTorchCpu, 4 << 10);  // ~80-row blocks
  std::vector<int64_t> odd;
  for (int64_t i = 1; i < n; i += 2) odd.push_back(i);
  for (const int64_t k : {int64_t{1}, int64_t{7}, int64_t{100}}) {
    const std::vector<int64_t>* subsets[] = {nullptr, &odd};
    for (const std::vector<int64_t>* subset : subsets) {
      const auto got = index->top_k(queries.data(), 3, k, subset);
      const auto want = mmu::exact_top_k(m, queries.data(), 3, k, subset);
      REQUIRE(got.size() == want.size());
      for (size_t j = 0; j < got.size(); ++j) {
        REQUIRE(got[j].size() == want[j].size());
        for (size_t i = 0; i < got[j].size(); ++i) {
          CHECK(got[j][i].id == want[j][i].id);
          CHECK(got[j][i].score == want[j][i].score);
        }
      }
    }
  }
}

TEST_CASE("device search refuses what exact_top_k refuses, and names --device", "[device]") {
  const int64_t n = 10, d = 4;
  const auto base = random_unit_rows(n, d, 3);
  const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, n, d};
  const auto index = mmu::DeviceIndex::open(m, kTorchCpu);
  std::vector<float> q(d, 0.5f);
  CHECK_THROWS_WITH(index->top_k(q.data(), 1, 0), Catch::Contains("k must be at least 1"));
  q[2] = std::nanf("");
  CHECK_THROWS_WITH(index->top_k(q.data(), 1, 3), Catch::Contains("non-finite value at position 2"));
  CHECK(index->top_k(q.data(), 0, 3).empty());

  CHECK(mmu::parse_search_device("cpu") == mmu::SearchDevice::kCpu);
  CHECK(mmu::parse_search_device("torch-cpu") == kTorchCpu);
  CHECK_THROWS_WITH(mmu::parse_search_device("gpu"), Catch::Contains("--device"));
  if (!mmu::built_with_cuda()) {
    CHECK_THROWS_WITH(mmu::parse_search_device("cuda"), Catch::Contains("-DMMU_ENABLE_CUDA=ON"));
    CHECK_THROWS_WITH(mmu::DeviceIndex::open(m, mmu::SearchDevice::kCuda), Catch::Contains("--device cuda"));
  }
  CHECK_THROWS_AS(mmu::DeviceIndex::open(m, mmu::SearchDevice::kCpu), mmu::Error);
}
