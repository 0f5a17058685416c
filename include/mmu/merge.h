// `mmu-index merge`: one store from shard stores (issue 18), all-or-nothing
// like a build: the catalogue, catalogue columns, links, files table and
// every space, rows in the order of the shards as given.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

namespace mmu {

struct MergeOptions {
  std::vector<std::string> shards;  // shard stores, in the order their rows take
  std::string store;                // the merged store (a new generation if it exists)
  bool wait_for_lock = false;
  // Spaces of at least this many vectors get the sq8 copy after the merge,
  // as a build gives them (BuildOptions::sq8_from_rows); 0 = never.
  int64_t sq8_from_rows = 262144;
};

struct MergeReport {
  int64_t shards = 0, files = 0, objects = 0, links = 0;
  std::map<std::string, int64_t> space_counts;
  std::vector<std::string> notes;  // e.g. a shard's approximate index not carried over
  std::vector<std::string> reindexed;  // "space: index, recall" built after the merge (sq8_from_rows); a failure is a note
  double seconds = 0;
};

// Refuses, naming the shards, before anything is written: a missing or
// unreadable shard, a shard given twice or equal to the target, spaces of one
// name made by different fits or models (SHA-256, model, version or
// dimension), a file or an object id (within a survey) in two shards, a
// damaged vector file. Vectors are streamed a chunk at a time.
MergeReport merge_stores(const MergeOptions& opt);

void print_merge_report(const MergeReport& r, const std::string& store, std::ostream& out);

}  // namespace mmu
