// `mmu-index build`: read MMU files, embed them (baseline PCA and any model
// packages) and write a store (see mmu/build.h).
#pragma once

#include <CLI/CLI.hpp>

#include "mmu/build.h"

namespace mmu::cli {

struct BuildFlags {
  BuildOptions options;
  bool quiet = false;  // no progress lines, no report; skipped files still go to stderr
  bool wait = false;   // wait for another process writing the store
};

CLI::App* add_build_command(CLI::App& app, BuildFlags& f);
int run_build(const BuildFlags& f);

}  // namespace mmu::cli
