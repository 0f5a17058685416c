// `mmu-search export`: a space's vectors and catalog rows to FITS, HDF5 (MMU
// layout), CSV or .npy (see mmu/export.h).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "mmu/export.h"

namespace mmu::cli {

struct ExportFlags {
  ExportOptions options;
  std::string format = "fits";
  std::string store;
};

CLI::App* add_export_command(CLI::App& app, ExportFlags& f);
int run_export(const ExportFlags& f);

}  // namespace mmu::cli
