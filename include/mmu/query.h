// Similarity queries over a store: resolve an object, pick its space, search.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mmu/store.h"

namespace mmu {

struct LikeQuery {
  std::string object_id;
  int64_t k = 50;
  std::string space;   // "" = the object's only space (ambiguity is an error)
  std::string survey;  // "" = the object's only survey; else a dataset name or dataset/subset
  // Only return objects of these surveys (dataset or dataset/subset names);
  // empty = all. Exact: every allowed vector is scored.
  std::vector<std::string> in_surveys;
};

struct Neighbor {
  int64_t rank = 0;  // 1-based
  CatalogRow object;
  float score = 0;   // cosine similarity
};

struct LikeResult {
  CatalogRow query;
  std::string space;
  // The object whose vector was the query when it is not `query` itself: a
  // cross-matched partner carrying the wanted modality (row -1 otherwise).
  CatalogRow via;
  int64_t requested_k = 0;
  std::vector<Neighbor> neighbors;  // best first; never contains the query itself
  std::string note;                 // e.g. why fewer than k came back; "" otherwise
};

// Throws InvalidArgument for a bad k or an ambiguous id/space, NotFound for an
// unknown id (saying how many objects the store has) or an object without vectors.
LikeResult search_like(const Store& store, const LikeQuery& q);

}  // namespace mmu
