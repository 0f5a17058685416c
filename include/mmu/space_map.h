// A 2-D map of an embedding space for the gallery: each vector projected on
// the space's first two principal components.
#pragma once

#include <cstdint>
#include <string>

#include "mmu/store.h"

namespace mmu {

// {"space", "modality", "count", "column", "points": [{"object_id", "survey", "x", "y", "value"}]}:
// the PCA is fitted on (and drawn for) at most max_points vectors taken at an
// even stride in vector-row order ("count" is the space's full size). Throws
// NotFound for an unknown space. With `column` (a stored catalog column, e.g.
// "Z"), each point has its "value" (a number, text, or null when the object
// has none); NotFound when the store has no such column.
std::string space_map_json(const Store& store, const std::string& space, const std::string& column = "",
                           int64_t max_points = 20000);

}  // namespace mmu
