// `mmu-index reindex`: choose how a space is searched (flat, flat16, IVF,
// HNSW), measure recall against exact search, and record it in the store.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "mmu/space_index.h"

namespace mmu::cli {

struct ReindexCommand {
  std::string store, space, kind = "flat";
  IndexSpec spec;
  ReindexOptions opt;
  bool quiet = false;
};

CLI::App* setup_reindex(CLI::App& app, ReindexCommand& cmd);
int run_reindex(ReindexCommand& cmd);

}  // namespace mmu::cli
