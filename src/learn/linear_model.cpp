#include "mmu/linear_model.h"

#include <algorithm>
#include <cmath>

#include "base/blas.h"
#include "mmu/error.h"

namespace mmu {

namespace {

double sigmoid(double t) { return t >= 0 ? 1.0 / (1.0 + std::exp(-t)) : std::exp(t) / (1.0 + std::exp(t)); }

}  // namespace

double LogisticModel::decision(const float* x) const {
  double t = b;
  for (size_t j = 0; j < w.size(); ++j) t += w[j] * x[j];
  return t;
}

double LogisticModel::probability(const float* x) const { return sigmoid(decision(x)); }

LogisticModel fit_logistic(const float* X, int64_t n, int64_t dim, const std::vector<uint8_t>& y,
                           const std::vector<double>& weight, double l2) {
  if (static_cast<int64_t>(y.size()) != n || static_cast<int64_t>(weight.size()) != n)
    throw InvalidArgument("fit_logistic: labels and weights must have one entry per row");
  const bool has_pos = std::count(y.begin(), y.end(), 1) > 0, has_neg = std::count(y.begin(), y.end(), 0) > 0;
  if (!has_pos || !has_neg) throw InvalidArgument("a classifier needs examples of both classes");
  if (!(l2 > 0)) throw InvalidArgument("the L2 penalty must be > 0");
  const int p = static_cast<int>(dim + 1);  // features + intercept (last)
  LogisticModel m;
  std::vector<double> theta(static_cast<size_t>(p), 0.0), a(static_cast<size_t>(n) * p), h(static_cast<size_t>(p) * p),
      g(static_cast<size_t>(p));
  // Newton steps: H = X'DX + l2*I (intercept unpenalised, a tiny ridge keeps
  // H definite), g = X'W(prob - y) + l2*w. Converges in a few steps.
  for (m.iterations = 1; m.iterations <= 50; ++m.iterations) {
    std::fill(g.begin(), g.end(), 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const float* x = X + i * dim;
      double t = theta[p - 1];
      for (int64_t j = 0; j < dim; ++j) t += theta[j] * x[j];
      const double prob = sigmoid(t), r = weight[i] * (prob - y[i]);
      const double s = std::sqrt(std::max(weight[i] * prob * (1 - prob), 1e-300));
      double* row = &a[static_cast<size_t>(i) * p];
      for (int64_t j = 0; j < dim; ++j) {
        row[j] = s * x[j];
        g[j] += r * x[j];
      }
      row[p - 1] = s;
      g[p - 1] += r;
    }
    const int ni = static_cast<int>(n);
    const double one = 1.0, zero = 0.0;
    dsyrk_("U", "N", &p, &ni, &one, a.data(), &p, &zero, h.data(), &p);
    for (int j = 0; j < p - 1; ++j) {
      h[static_cast<size_t>(j) * p + j] += l2;
      g[j] += l2 * theta[j];
    }
    h[static_cast<size_t>(p - 1) * p + (p - 1)] += 1e-9;
    int info = 0, nrhs = 1;
    dposv_("U", &p, &nrhs, h.data(), &p, g.data(), &p, &info);
    if (info != 0) throw InternalError("logistic regression: the Newton system is singular (LAPACK info " + std::to_string(info) + ")");
    double step = 0;
    for (int j = 0; j < p; ++j) {
      theta[j] -= g[j];
      step = std::max(step, std::fabs(g[j]));
    }
    if (step < 1e-9) break;
  }
  m.iterations = std::min(m.iterations, 50);
  m.w.assign(theta.begin(), theta.end() - 1);
  m.b = theta.back();
  return m;
}

}  // namespace mmu
