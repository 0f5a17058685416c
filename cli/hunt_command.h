// `mmu-search hunt`: rank candidates like a few positive examples, or list
// the most isolated objects of a space (--outliers).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "query_command.h"

namespace mmu::cli {

struct HuntFlags {
  QueryFlags query;  // k, space, survey, filters, format
  std::string positives_file, negatives_file, method = "classifier";
  int64_t background = 0, neighbours = 10;
  double l2 = 1e-3;
  uint64_t seed = 1;
  bool outliers = false;
  std::string store;
};

CLI::App* add_hunt_command(CLI::App& app, HuntFlags& f);
int run_hunt(const HuntFlags& f);

}  // namespace mmu::cli
