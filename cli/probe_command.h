// `mmu-search probe` (cross-validated linear probe and k-NN of a target on a
// space's embeddings) and `mmu-search predict` (a saved probe applied to every
// object of its space); see mmu/probe.h.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "mmu/probe.h"

namespace mmu {
class Store;
}

namespace mmu::cli {

struct ProbeFlags {
  std::string space, target, labels, task, save, plot, format = "table";
  ProbeOptions options;
};

struct PredictFlags {
  std::string probe, out = "-", where;
};

CLI::App* setup_probe(CLI::App& app, ProbeFlags& f);
int run_probe(const Store& store, const ProbeFlags& f);
CLI::App* setup_predict(CLI::App& app, PredictFlags& f);
int run_predict(const Store& store, const PredictFlags& f);

}  // namespace mmu::cli
