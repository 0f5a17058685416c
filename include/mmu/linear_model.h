// Linear models fitted on embeddings: an L2-regularised logistic regression
// (rare-object hunts; classification probes). Deterministic: Newton's method
// (IRLS) in double precision, no random initialisation.
#pragma once

#include <cstdint>
#include <vector>

namespace mmu {

struct LogisticModel {
  std::vector<double> w;  // one weight per feature
  double b = 0;           // intercept
  int iterations = 0;
  // P(y = 1 | x) for one row of dim features.
  double probability(const float* x) const;
  double decision(const float* x) const;  // w.x + b
};

// Fits P(y=1|x) = sigmoid(w.x + b) to n rows of X (row-major n x dim) with
// labels y (0/1), minimising sum_i weight_i * logloss_i + l2/2 * |w|^2 (the
// intercept is not penalised). Throws InvalidArgument when a class is missing.
LogisticModel fit_logistic(const float* X, int64_t n, int64_t dim, const std::vector<uint8_t>& y,
                           const std::vector<double>& weight, double l2);

}  // namespace mmu
