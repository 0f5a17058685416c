// Batched exact queries over many identical rows (blank cutouts share one
// feature vector; objects repeat across files): a batch re-scores one row per
// group of identical bytes and reuses its canonical score for the others
// (exact_search.cpp, SameRows). The answers must stay those of one query at a
// time and of a brute force by the canonical rule, bit for bit, ties by row;
// fp32, fp16 and subsets alike.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "mmu/exact_search.h"
#include "search_test_util.h"

namespace {

using mmu::Hit;
using mmu::test::by_the_rule;

// Every row of `ids` scored alone, the k best by (score desc, row asc).
std::vector<Hit> brute(const std::vector<float>& rows, int64_t d, const float* q, int64_t k,
                       const std::vector<int64_t>& ids) {
  std::vector<Hit> all;
  for (int64_t r : ids) all.push_back({r, by_the_rule(q, &rows[r * d], d)});
  const auto before = [](const Hit& a, const Hit& b) {
    return a.score > b.score || (a.score == b.score && a.id < b.id);
  };
  const size_t keep = std::min(all.size(), static_cast<size_t>(k));
  std::partial_sort(all.begin(), all.begin() + keep, all.end(), before);
  all.resize(keep);
  return all;
}

// Ranks whose row or score bits differ.
int64_t mismatches(const std::vector<Hit>& got, const std::vector<Hit>& want) {
  if (got.size() != want.size()) return 1 + static_cast<int64_t>(std::max(got.size(), want.size()));
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    bad += got[i].id != want[i].id || std::memcmp(&got[i].score, &want[i].score, sizeof(float)) != 0;
  return bad;
}

}  // namespace

TEST_CASE("canonical scores: a batch over many identical rows equals single queries and the brute force bit for bit",
          "[canonical][exact]") {
  // dim 61: the rule's tail (dim % 8) too; 3,000 rows: three blocks of the scan.
  const int64_t d = 61, n = 3000;
  std::mt19937_64 rng(4242);
  std::uniform_real_distribution<double> unit;
  const std::vector<float> random = mmu::test::random_unit_rows(n + 10, d, 4243);
  const float* v = &random[static_cast<size_t>(n * d)];
  const float* w = v + d;
  std::vector<float> rows(random.begin(), random.begin() + n * d);
  int64_t copies_of_v = 0;
  for (int64_t r = 0; r < n; ++r) {
    float* x = &rows[r * d];
    const double p = unit(rng);
    if (p < 0.55) {  // v
      std::copy(v, v + d, x);
      ++copies_of_v;
    } else if (p < 0.65) {  // w
      std::copy(w, w + d, x);
    } else if (p < 0.67) {  // v one ulp away in one coordinate, up or down: a hair above or below the copies
      std::copy(v, v + d, x);
      const int64_t j = static_cast<int64_t>(unit(rng) * d);
      x[j] = std::nextafter(x[j], p < 0.66 ? 2.0f : -2.0f);
    } else if (p < 0.68) {  // -v
      for (int64_t j = 0; j < d; ++j) x[j] = -v[j];
    }
  }
  REQUIRE(copies_of_v > 1500);
  // Queries: v (twice), a near v, w, v halved, -v, stored rows, and new directions.
  std::vector<float> queries(v, v + d);
  queries.insert(queries.end(), v, v + d);
  for (int64_t r = 0; r < n && queries.size() < static_cast<size_t>(3 * d); ++r)
    if (std::memcmp(&rows[r * d], v, d * sizeof(float)) != 0 && std::fabs(rows[r * d] - v[0]) < 1e-6f)
      queries.insert(queries.end(), &rows[r * d], &rows[(r + 1) * d]);
  REQUIRE(queries.size() == static_cast<size_t>(3 * d));
  queries.insert(queries.end(), w, w + d);
  for (int64_t j = 0; j < d; ++j) queries.push_back(0.5f * v[j]);
  for (int64_t j = 0; j < d; ++j) queries.push_back(-v[j]);
  for (int64_t r = 7; r < n; r += 211) queries.insert(queries.end(), &rows[r * d], &rows[(r + 1) * d]);
  queries.insert(queries.end(), random.begin() + (n + 2) * d, random.begin() + (n + 10) * d);
  const int64_t nq = static_cast<int64_t>(queries.size()) / d;

  std::vector<int64_t> every(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) every[r] = r;
  std::vector<int64_t> subset;  // every third row and a run
  for (int64_t r = 0; r < n; ++r)
    if (r % 3 == 0 || (r >= 1000 && r < 1300)) subset.push_back(r);
  std::vector<uint16_t> halves(rows.size());
  std::vector<float> widened(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) widened[i] = mmu::half_to_float(halves[i] = mmu::float_to_half(rows[i]));

  struct Case {
    const char* name;
    mmu::VectorMatrix m;
    const std::vector<float>* scored;  // what the brute force reads
    const std::vector<int64_t>* ids;
  };
  const Case cases[] = {
      {"fp32", {rows.data(), mmu::VectorType::kF32, n, d}, &rows, &every},
      {"fp32 subset", {rows.data(), mmu::VectorType::kF32, n, d}, &rows, &subset},
      {"fp16", {halves.data(), mmu::VectorType::kF16, n, d}, &widened, &every},
  };
  for (const Case& c : cases)
    for (const int64_t k : {int64_t{10}, int64_t{700}, int64_t{2500}}) {
      INFO(c.name << ", k " << k);
      const std::vector<int64_t>* subset_arg = c.ids == &every ? nullptr : c.ids;
      const auto batch = mmu::exact_top_k(c.m, queries.data(), nq, k, subset_arg);
      REQUIRE(static_cast<int64_t>(batch.size()) == nq);
      int64_t bad = 0, alone_bad = 0;
      for (int64_t j = 0; j < nq; ++j) {
        const auto want = brute(*c.scored, d, &queries[j * d], k, *c.ids);
        bad += mismatches(batch[j], want);
        alone_bad += mismatches(mmu::exact_top_k(c.m, &queries[j * d], 1, k, subset_arg)[0], want);
      }
      CHECK(bad == 0);
      CHECK(alone_bad == 0);
      // The query v: its answer opens with copies of v, tied and by ascending row.
      const std::vector<Hit>& top = batch[0];
      int64_t ties = 0;
      for (size_t i = 1; i < top.size(); ++i)
        if (top[i].score == top[i - 1].score) {
          ++ties;
          CHECK(top[i].id > top[i - 1].id);
        }
      CHECK(ties >= std::min<int64_t>(k, 500) - 30);
    }
}
