// Helpers shared by the search unit tests: random unit vectors, hit lists
// compared up to fp32 rounding or bit for bit, and the canonical score rule.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "mmu/exact_search.h"

namespace mmu::test {

// n rows of d floats, each a random direction (normal components, L2-normalised).
inline std::vector<float> random_unit_rows(int64_t n, int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> v(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i) {
    double norm = 0;
    for (int64_t j = 0; j < d; ++j) norm += std::pow(v[i * d + j] = g(rng), 2);
    for (int64_t j = 0; j < d; ++j) v[i * d + j] /= static_cast<float>(std::sqrt(norm));
  }
  return v;
}

// got equals want up to fp32 rounding of the scores: same length, scores
// within 2e-6, and the same row at each rank unless that rank's score is
// within 4e-6 of a neighbour's (a near tie the summation order may flip).
inline void check_same_hits(const std::vector<Hit>& got, const std::vector<Hit>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].score == Approx(want[i].score).margin(2e-6));
    const bool near_tie = (i > 0 && std::fabs(want[i].score - want[i - 1].score) < 4e-6) ||
                          (i + 1 < want.size() && std::fabs(want[i].score - want[i + 1].score) < 4e-6);
    if (!near_tie) CHECK(got[i].id == want[i].id);
  }
}

// Same rows, same order, same float scores (bit for bit).
inline void require_identical(const std::vector<Hit>& got, const std::vector<Hit>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("rank " << i);
    REQUIRE(got[i].id == want[i].id);
    REQUIRE(std::memcmp(&got[i].score, &want[i].score, sizeof(float)) == 0);
  }
}

// The canonical score rule (vector/canonical_dot.h) written out from its
// definition, independently of the kernels.
inline float by_the_rule(const float* q, const float* x, int64_t dim) {
  const int64_t main = dim - dim % 8;
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t i = 0; i < main; ++i) lane[i % 8] = lane[i % 8] + static_cast<double>(q[i]) * x[i];
  double s = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
  for (int64_t i = main; i < dim; ++i) s = s + static_cast<double>(q[i]) * x[i];
  return static_cast<float>(s);
}

}  // namespace mmu::test
