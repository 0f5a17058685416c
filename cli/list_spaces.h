// `mmu-search --list-spaces`: the store's embedding spaces, one line each, and
// how each is searched.
#pragma once

#include <ostream>

namespace mmu {
class Store;
}

namespace mmu::cli {

// A header line, then per space: name, modality, model, version, dim, count,
// sha256 (12 digits), created, index ("flat", "hnsw r@50=0.973").
void list_spaces(const Store& store, std::ostream& out);

}  // namespace mmu::cli
