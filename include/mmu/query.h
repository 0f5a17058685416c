// Similarity queries over a store: resolve what the user named (object ids, a
// sky position, a vector), build the query vector, restrict the candidates,
// search, and return catalog rows.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mmu/store.h"
#include "mmu/types.h"

namespace mmu {

struct LikeQuery {
  // What to look for: the mean of the `like` objects' vectors (positives),
  // minus unlike_weight times the mean of the `unlike` ones (negatives), or the
  // nearest catalogued object to `near`, or `vector` itself; L2-normalised.
  std::vector<std::string> like;
  std::vector<std::string> unlike;
  std::optional<SkyCone> near;
  std::vector<float> vector;
  std::string vector_label;  // where `vector` came from, for output
  double unlike_weight = 0.5;

  int64_t k = 50;
  // "" = the query objects' only space, or, when they have several, the
  // default space of their modality (Store::default_space).
  std::string space;
  // Cross-modal search between towers trained into one space (mmu-index
  // train): the objects' vectors in the `from` tower ("image", "spectrum", or
  // "both" averaged) are searched among the `to` tower's. `space` may name
  // either tower to choose among several trained models. "" = off.
  std::string from, to;
  std::string survey;  // survey of the ids given, when an id exists in several
  RowFilter filter;         // --in, --cells, --cone, --where
  double dedup_arcsec = 0;  // > 0: drop a result closer on the sky than this to a better one
  SearchOptions search;
};

struct Neighbor {
  int64_t rank = 0;  // 1-based
  CatalogRow object;
  float score = 0;   // cosine similarity
};

struct LikeResult {
  std::string label;  // the query as the user gave it, e.g. "39627...", "3 objects", "vector q.npy"
  bool ranked_list = false;  // a hunt or outlier list: `label` describes it, there is no query object
  CatalogRow query;   // first positive, or the object found near the position (row -1 for a vector)
  std::vector<CatalogRow> positives, negatives;
  double near_sep_arcsec = -1;  // for --near: how far the object found is from the position
  std::string space;
  bool default_space = false;  // `space` is the store's default, chosen among several without --space
  // Why `space` was searched although it is not its modality's default: the
  // query object has a vector only there ("" otherwise).
  std::string space_note;
  std::string method;  // how the search ran, e.g. "exact fp32 scan"
  // The object whose vector was the query when it is not `query` itself: a
  // cross-matched partner carrying the wanted modality (row -1 otherwise).
  CatalogRow via;
  int64_t requested_k = 0;
  std::vector<Neighbor> neighbors;  // best first; never contains a query object
  std::string note;                 // e.g. why fewer than k came back; "" otherwise
  std::string error;                // batch mode only: why this query failed
};

// The ranges of a query's search settings, one check for the command line and
// the server alike: dedup a finite number >= 0 arcsec, nprobe and ef_search
// 0..2^20 (0 = the index's own), unlike_weight a finite number >= 0. Throws
// InvalidArgument naming the flag and the JSON field. search_like calls it.
void check_search_settings(const LikeQuery& q);

// Throws InvalidArgument for a bad k or an ambiguous id/space/query, NotFound
// for an unknown id (saying how many objects the store has) or an object
// without vectors.
LikeResult search_like(const Store& store, const LikeQuery& q);

// An object and the vector that stands for it in a space: its own, or that of
// a cross-matched partner (`owner` is then the partner's row).
struct ObjectVector {
  CatalogRow object;
  int64_t owner = -1;
  std::vector<float> vector;
};

// Resolves ids as --like does (--survey for ids in several surveys, linked
// partners for a missing modality) to their vectors in one space. *space is
// the space asked for ("" = the first object's only space); it is set to the
// resolved name.
std::vector<ObjectVector> object_vectors(const Store& store, const std::vector<std::string>& ids,
                                         const std::string& survey, std::string* space);

// The vector rows (ascending) of `space` that pass filter f
// (Store::filtered_vector_rows); nullopt when f restricts nothing.
std::optional<std::vector<int64_t>> filtered_vector_rows(const Store& store, const std::string& space,
                                                         const RowFilter& f);

// Searches `space` with an arbitrary query vector, ranked by inner product
// (the vector is used as given, not normalised: a linear classifier's weights
// rank by its score), never returning the catalog rows in `exclude`. k, the
// filters, de-duplication and search options come from q; its like/near/vector
// fields are ignored. The result's label and query are left empty.
LikeResult search_with_vector(const Store& store, const std::string& space, std::vector<float> v,
                              std::vector<int64_t> exclude, const LikeQuery& q);

// One query per id (each as `common` with like = {id}), searched together:
// the vectors of one space go through one batched scan. A query that cannot be
// resolved gets its error in LikeResult::error; the others still run.
std::vector<LikeResult> search_like_batch(const Store& store, const LikeQuery& common,
                                          const std::vector<std::string>& ids);

// A query resolved in one store to what search_like scans with; a set of
// stores (store_set.h) resolves it in the store holding its objects and scans
// every store with it.
struct ResolvedQuery {
  LikeResult result;             // label, query objects, space; no neighbours yet
  std::vector<float> vector;     // L2-normalised
  std::vector<int64_t> exclude;  // catalog rows of `store` never returned (ascending)
  std::string method_suffix;     // " (image -> spectrum in shared space ID)" for a cross-modal search
};
// The checks and errors of search_like, without the search.
ResolvedQuery resolve_query(const Store& store, const LikeQuery& q);

}  // namespace mmu
