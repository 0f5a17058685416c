// The order of every exact answer: higher score first, ties to the lower row,
// so an answer is the same whatever order its rows were scanned in.
#pragma once

#include "mmu/types.h"  // Hit

namespace mmu {

inline bool ranks_before(const Hit& a, const Hit& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

}  // namespace mmu
