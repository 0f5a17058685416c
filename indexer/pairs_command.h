// `mmu-index pairs`: cross-match two MMU surveys and write the matched
// examples (both sides' rows, ids, positions, separation) as an MMU-layout
// dataset for training.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace mmu::cli {

struct PairsFlags {
  std::string left, right, out, name, radius = "1arcsec";
  bool all = false, quiet = false;
};

CLI::App* add_pairs_command(CLI::App& app, PairsFlags& f);
int run_pairs(const PairsFlags& f);

}  // namespace mmu::cli
