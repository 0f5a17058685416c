// `mmu-index default-space`: show or choose the space each modality's
// searches use when no --space is given.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace mmu::cli {

struct DefaultSpaceFlags {
  std::string store, modality, space;
};

CLI::App* add_default_space_command(CLI::App& app, DefaultSpaceFlags& f);
int run_default_space(const DefaultSpaceFlags& f);

}  // namespace mmu::cli
