// `mmu-index reindex`: choose how a space is searched (flat, flat16, IVF,
// HNSW), measure recall against exact search, and record it in the store.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "mmu/space_index.h"

namespace mmu::cli {

struct ReindexFlags {
  std::string store, space, kind = "flat";
  IndexSpec spec;
  ReindexOptions opt;
  bool quiet = false;
};

CLI::App* add_reindex_command(CLI::App& app, ReindexFlags& f);
int run_reindex(const ReindexFlags& f);

}  // namespace mmu::cli
