// `mmu-search probe`: cross-validated linear probe and k-NN of a target on a
// space's embeddings (see mmu/probe.h); `predict` applies a saved one.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "mmu/probe.h"

namespace mmu::cli {

struct ProbeFlags {
  std::string space, target, labels, task, save, plot, format = "table";
  ProbeOptions options;
  std::string store;
};

CLI::App* add_probe_command(CLI::App& app, ProbeFlags& f);
int run_probe(const ProbeFlags& f);

}  // namespace mmu::cli
