// Finite-value checks for vectors on their way into a store: a NaN or Inf that
// got in would rank first in every query and break JSON output. Private to mmu_core.
#pragma once

#include <cmath>
#include <cstdint>

namespace mmu {

// Index of the first of n rows of d floats holding a NaN or Inf, or -1.
inline int64_t first_non_finite_row(const float* x, int64_t n, int64_t d) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j)
      if (!std::isfinite(x[i * d + j])) return i;
  return -1;
}

}  // namespace mmu
