// `mmu-search predict`: a saved probe (mmu-search probe --save) applied to
// every object of its space, written as CSV (see mmu/probe.h).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace mmu::cli {

struct PredictFlags {
  std::string probe, out = "-", where;
  std::string store;
};

CLI::App* add_predict_command(CLI::App& app, PredictFlags& f);
int run_predict(const PredictFlags& f);

}  // namespace mmu::cli
