// Searching a set of stores as the one store merged from them in that order
// would be searched (mmu-index merge): the same top-k, scores and ties, with
// nothing merged on disk. A merged store's rows are the stores' rows in order
// and an exact scan breaks ties towards the lower row, so candidates of equal
// score go to the earlier store, then to the lower row within it.
//
// Exact spaces give exactly the merged store's answer. An IVF or HNSW space is
// searched in each store with that store's own index and the candidate lists
// merged: the answer of one process over the same shards, not that of an index
// built over a merged store.
//
// The scan itself is a SetScanner, so that mmu-search-mpi can spread the
// stores over ranks and reuse everything else here.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mmu/query.h"
#include "mmu/store.h"
#include "mmu/types.h"

namespace mmu {

// The stores a manifest lists, one path per line ('#' comments and blank lines
// skipped; a relative path is relative to the manifest's folder). Throws
// NotFound / InvalidArgument naming `flag` and the file.
std::vector<std::string> read_store_manifest(const std::string& path, const std::string& flag = "--stores");

// One store's best candidates for one query.
struct StoreScan {
  std::vector<Hit> hits;   // id = catalog row of that store; best first, ties to the lower vector row
  bool exhausted = true;   // every candidate of the store is in hits
  int64_t candidates = 0;  // objects of the store that pass the filter (vectors of the space without one)
};

// The best `fetch` candidates of `space` in `store` for each of nq queries
// (nq x dim floats) among the objects passing `filter`; none, exhausted, when
// the store lacks the space or no object of it passes.
std::vector<StoreScan> scan_store(const Store& store, const std::string& space, const float* queries, int64_t nq,
                                  int64_t fetch, const RowFilter& filter, const SearchOptions& opts);

// Scans every store of a set: result[query][store]. In one process each store
// in turn (local_scanner); mmu-search-mpi spreads the stores over its ranks.
using SetScanner = std::function<std::vector<std::vector<StoreScan>>(
    const std::string& space, const std::vector<float>& queries, int64_t nq, int64_t fetch)>;

class StoreSet {
 public:
  // Opens the stores in order and refuses, naming the stores, a set that is
  // not one merged store's parts: a store given twice, a source file held by
  // two stores (its objects would come back twice), or a space that differs
  // between stores (model, version, dimension, or fit / model SHA-256: vectors
  // of different fits cannot be compared). Every space is an inner-product
  // space, so there is no metric to differ.
  explicit StoreSet(const std::vector<std::string>& paths);
  ~StoreSet();

  size_t size() const { return stores_.size(); }
  const Store& store(size_t i) const { return *stores_[i]; }
  const std::string& path(size_t i) const { return paths_[i]; }
  // What a user should know: each store lacking a space another store has
  // (it adds nothing to searches of that space).
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  std::vector<std::string> paths_;
  std::vector<std::unique_ptr<Store>> stores_;
  std::vector<std::string> warnings_;
};

// Scans each store of `set` in this process, with q's filter and search options.
SetScanner local_scanner(const StoreSet& set, const LikeQuery& q);

// search_like over the set: the query's objects must lie in one store (an id
// found in two stores of the same survey is refused: the stores overlap).
// Errors as search_like's, naming the stores where they concern the set.
LikeResult search_like_set(const StoreSet& set, const LikeQuery& q, const SetScanner& scan);

// search_like_batch over the set: one query per id, those of one space scanned together.
std::vector<LikeResult> search_like_set_batch(const StoreSet& set, const LikeQuery& common,
                                              const std::vector<std::string>& ids, const SetScanner& scan);

}  // namespace mmu
