#include "merge_command.h"

#include <iostream>

#include "store_flag.h"

namespace mmu::cli {

CLI::App* add_merge_command(CLI::App& app, MergeFlags& f) {
  MergeOptions& o = f.options;
  auto* c = app.add_subcommand("merge", "join shard stores (build --fit F --shard I/N) into one store, all or nothing");
  c->add_option("shards", o.shards, "shard stores, in the order their rows take")->required();
  add_store_flag(c, o.store);
  c->add_flag("--wait", o.wait_for_lock, "wait while another process writes the store (default: fail at once, naming it)");
  c->add_option("--sq8-from-rows", o.sq8_from_rows,
                "spaces of at least this many vectors get the sq8 copy (exact, a quarter of the bytes scanned), as in "
                "a build; 0 = never")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_flag("--quiet", f.quiet, "no report");
  return c;
}

int run_merge(const MergeFlags& f) {
  const MergeReport report = merge_stores(f.options);
  if (!f.quiet) print_merge_report(report, f.options.store, std::cout);
  else
    for (const auto& note : report.notes) std::cerr << "note: " << note << "\n";
  return 0;
}

}  // namespace mmu::cli
