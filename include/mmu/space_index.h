// Building an approximate index (or the fp16 copy) for a space of a store and
// measuring it against the exact scan; what a space's index.json records is
// in index_record.h.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "mmu/index_record.h"

namespace mmu {

class Store;

struct ReindexOptions {
  int64_t recall_k = 50;
  int64_t recall_queries = 200;
  uint64_t seed = 1;
  std::function<void(const std::string&)> log;  // progress lines; may be empty
};

// Builds `spec` for space `space` of the live generation, measures recall and
// latency against the exact scan, and switches index.json to it atomically
// (readers see the old or the new index, never a half-written one). Holds the
// store's write lock while it runs.
IndexRecord reindex_space(const Store& store, const std::string& space, const IndexSpec& spec,
                          const ReindexOptions& opt);

}  // namespace mmu
