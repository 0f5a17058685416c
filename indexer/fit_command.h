// `mmu-index fit`: the baseline fit of every baseline space, on a seeded
// sample of HEALPix cells, for sharded builds to share (see mmu/fit.h).
#pragma once

#include <CLI/CLI.hpp>

#include "mmu/fit.h"

namespace mmu::cli {

struct FitFlags {
  FitOptions options;
  bool quiet = false;
};

CLI::App* add_fit_command(CLI::App& app, FitFlags& f);
int run_fit(const FitFlags& f);

}  // namespace mmu::cli
