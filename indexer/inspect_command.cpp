#include "inspect_command.h"

#include <iostream>

#include "mmu/inspect.h"

namespace mmu::cli {

CLI::App* add_inspect_command(CLI::App& app, InspectFlags& f) {
  auto* ins = app.add_subcommand("inspect", "describe MMU files: keys, dtypes, shapes, compression, what is read");
  ins->add_option("paths", f.paths, "files or folders")->required();
  ins->add_option("--format", f.format, "text or json")->check(CLI::IsMember({"text", "json"}));
  return ins;
}

int run_inspect(const InspectFlags& f) {
  const auto files = inspect_paths(f.paths);
  if (f.format == "json")
    write_inspection_json(files, std::cout);
  else
    write_inspection_text(files, std::cout);
  for (const auto& file : files)
    if (!file.error.empty()) return 1;
  return 0;
}

}  // namespace mmu::cli
