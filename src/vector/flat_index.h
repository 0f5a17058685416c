// The FAISS index of one space: exact inner product (= cosine on our
// L2-normalised vectors) with FAISS ids equal to catalog rows. Private to mmu_core.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mmu/exact_search.h"

namespace mmu {

// Builds IDMap2(FlatIP) over n x dim vectors and writes it atomically to path.
void write_flat_index(const std::string& path, int64_t dim, int64_t n, const float* vectors, const int64_t* ids);

// Loads the index at path and returns the k best hits for one query, best first.
std::vector<Hit> search_flat_index(const std::string& path, int64_t dim, const float* query, int64_t k);

}  // namespace mmu
