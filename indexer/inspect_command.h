// `mmu-index inspect`: describe MMU files (keys, dtypes, shapes, compression,
// what the reader takes each as) as text or JSON; see mmu/inspect.h.
#pragma once

#include <CLI/CLI.hpp>
#include <ostream>
#include <string>
#include <vector>

#include "mmu/inspect.h"

namespace mmu::cli {

struct InspectFlags {
  std::vector<std::string> paths;
  std::string format = "text";
};

CLI::App* add_inspect_command(CLI::App& app, InspectFlags& f);
// Prints every file's description; exit code 1 when any file has a problem.
int run_inspect(const InspectFlags& f);

// A summary per dataset/subset, then each file with its datasets.
void write_inspection_text(const std::vector<FileInspection>& files, std::ostream& out);
// One object per file: path, dataset, subset, healpix_folder, layout, modality,
// objects, cells, error and keys (each key: name, dtype, shape, compression, role).
void write_inspection_json(const std::vector<FileInspection>& files, std::ostream& out);

}  // namespace mmu::cli
