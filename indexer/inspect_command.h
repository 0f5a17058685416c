// `mmu-index inspect`: describe MMU files (keys, dtypes, shapes, compression,
// what the reader takes each as) as text or JSON; see mmu/inspect.h.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace mmu::cli {

struct InspectFlags {
  std::vector<std::string> paths;
  std::string format = "text";
};

CLI::App* add_inspect_command(CLI::App& app, InspectFlags& f);
// Prints every file's description; exit code 1 when any file has a problem.
int run_inspect(const InspectFlags& f);

}  // namespace mmu::cli
