// Rare-object hunts: rank a store's objects by how much they resemble a few
// known examples (Stein et al. found 1192 new lens candidates this way), and
// find the most isolated objects of a space (outliers).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mmu/query.h"

namespace mmu {

enum class HuntMethod {
  kClassifier,  // logistic regression: positives against negatives and a random background
  kMean,        // cosine similarity to the positives' mean vector
};

struct HuntQuery {
  std::vector<std::string> positives;  // object ids of the wanted kind (at least 1; 2+ for a classifier)
  std::vector<std::string> negatives;  // optional ids known not to be of that kind
  HuntMethod method = HuntMethod::kClassifier;
  int64_t background = 0;  // random objects taken as negatives; 0 = max(1000, 20 x positives), capped by the space
  double l2 = 1e-3;        // classifier's L2 penalty (class-balanced log loss, so independent of set sizes)
  uint64_t seed = 1;       // background sample
  LikeQuery search;        // k, space, survey (of the ids), filters, de-duplication
};

// The k best candidates, never a positive or negative itself. Scores are the
// classifier's probabilities (kClassifier) or cosine similarities (kMean).
LikeResult hunt(const Store& store, const HuntQuery& h);

struct OutlierQuery {
  int64_t neighbours = 10;  // isolation = 1 - cosine similarity to the n-th nearest neighbour
  LikeQuery search;         // k (how many outliers), space, filters (applied to the objects scored)
  bool progress = false;
};

// The k objects of a space farthest from their n-th nearest neighbour (low
// density), most isolated first; score = 1 - cosine to that neighbour. Every
// object is a query: an exact all-pairs scan in blocks, or the space's
// approximate index when it has one.
LikeResult find_outliers(const Store& store, const OutlierQuery& q);

}  // namespace mmu
