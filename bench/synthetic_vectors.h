// Synthetic L2-normalised vectors for the search benches: one recipe, so
// mmu_bench_make_store's stores and the in-memory benches scan the same data.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace mmu::bench {

inline void normalise(float* v, int64_t dim) {
  double s = 0;
  for (int64_t j = 0; j < dim; ++j) s += static_cast<double>(v[j]) * v[j];
  const float inv = static_cast<float>(1.0 / std::sqrt(std::max(s, 1e-30)));
  for (int64_t j = 0; j < dim; ++j) v[j] *= inv;
}

// One cluster: a unit centre, a per-coordinate spread and a sampling weight.
struct Clusters {
  std::vector<float> centres;
  std::vector<float> sigma;
  std::vector<double> cumulative_weight;  // ends at 1
};

inline Clusters make_clusters(int64_t count, int64_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed ^ 0x5eedc1u);
  std::normal_distribution<float> gauss;
  std::uniform_real_distribution<double> unit;
  Clusters c;
  c.centres.resize(static_cast<size_t>(count * dim));
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t j = 0; j < dim; ++j) c.centres[i * dim + j] = gauss(rng);
    normalise(&c.centres[i * dim], dim);
  }
  // Noise norm r = sigma * sqrt(dim), log-uniform in [0.3, 1.2]: a member lies
  // 17 to 50 degrees from its centre, so clusters of varied tightness overlap
  // in their outskirts.
  double total = 0;
  for (int64_t i = 0; i < count; ++i) {
    const double r = 0.3 * std::pow(4.0, unit(rng));
    c.sigma.push_back(static_cast<float>(r / std::sqrt(static_cast<double>(dim))));
    total += std::exp(gauss(rng));
    c.cumulative_weight.push_back(total);
  }
  for (double& w : c.cumulative_weight) w /= total;
  c.cumulative_weight.back() = 1.0;
  return c;
}

// n unit vectors: uniform directions (normalised gaussians), or members of
// `clusters` gaussian clusters; deterministic for a seed whatever the threads.
inline std::vector<float> synthetic_vectors(int64_t n, int64_t dim, bool clustered, int64_t clusters_count, uint64_t seed) {
  std::vector<float> v(static_cast<size_t>(n * dim));
  const Clusters clusters = clustered ? make_clusters(clusters_count, dim, seed) : Clusters{};
  constexpr int64_t kRowsPerSeed = 4096;
  const int64_t blocks = (n + kRowsPerSeed - 1) / kRowsPerSeed;
#pragma omp parallel for schedule(dynamic)
  for (int64_t b = 0; b < blocks; ++b) {
    std::mt19937_64 rng(seed * 1000003u + static_cast<uint64_t>(b));
    std::normal_distribution<float> gauss;
    std::uniform_real_distribution<double> unit;
    for (int64_t i = b * kRowsPerSeed; i < std::min(n, (b + 1) * kRowsPerSeed); ++i) {
      float* x = &v[static_cast<size_t>(i * dim)];
      if (clusters.centres.empty()) {
        for (int64_t j = 0; j < dim; ++j) x[j] = gauss(rng);
      } else {
        const auto& cw = clusters.cumulative_weight;
        const int64_t c = std::lower_bound(cw.begin(), cw.end(), unit(rng)) - cw.begin();
        const float* centre = &clusters.centres[static_cast<size_t>(c * dim)];
        for (int64_t j = 0; j < dim; ++j) x[j] = centre[j] + clusters.sigma[c] * gauss(rng);
      }
      normalise(x, dim);
    }
  }
  return v;
}

}  // namespace mmu::bench
