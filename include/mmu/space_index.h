// Building an approximate index (or the fp16 copy) for a space of a store and
// measuring it against the exact scan; what a space's index.json records is
// in index_record.h.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

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

// Whether a flat space of `count` vectors gets the sq8 copy on a build or a
// merge (BuildOptions / MergeOptions::sq8_from_rows; 0 = never).
inline bool gets_sq8_copy(int64_t count, int64_t sq8_from_rows) {
  return sq8_from_rows > 0 && count >= sq8_from_rows;
}

// Each (space, index) of the store at `store_path`, built by reindex_space after
// a build or merge committed: a failure leaves the space searched exactly (the
// same answers, slower), so it is returned, not thrown.
struct ReindexOutcome {
  std::vector<std::string> built;                            // "space: index, recall@k r"
  std::vector<std::pair<std::string, std::string>> failed;  // space, error
};
ReindexOutcome reindex_committed(const std::string& store_path,
                                 const std::vector<std::pair<std::string, IndexSpec>>& todo);

}  // namespace mmu
