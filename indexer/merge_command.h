// `mmu-index merge`: one store from shard stores (see mmu/merge.h).
#pragma once

#include <CLI/CLI.hpp>

#include "mmu/merge.h"

namespace mmu::cli {

struct MergeFlags {
  MergeOptions options;
  bool quiet = false;
};

CLI::App* add_merge_command(CLI::App& app, MergeFlags& f);
int run_merge(const MergeFlags& f);

}  // namespace mmu::cli
