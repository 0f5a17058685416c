// mmu-index: ingest MMU files into a store. Only the dispatch: each
// subcommand is one <name>_command.{h,cpp}.
#include <iostream>
#include <string>

#include "build_command.h"
#include "cli_common.h"
#include "default_space_command.h"
#include "fit_command.h"
#include "merge_command.h"
#include "inspect_command.h"
#include "pairs_command.h"
#include "preprocess_command.h"
#include "reindex_command.h"
#include "train_command.h"
#include "xmatch_command.h"
#include "mmu/version.h"

int main(int argc, char** argv) {
  CLI::App app{"mmu-index: build an embedding store from Multimodal Universe HDF5 files"};
  app.set_version_flag("--version", std::string("mmu-index ") + mmu::kVersion);
  app.require_subcommand(1);

  mmu::cli::BuildFlags build;
  mmu::cli::InspectFlags inspect;
  mmu::cli::PreprocessFlags preprocess;
  mmu::cli::XmatchFlags xmatch;
  mmu::cli::ReindexFlags reindex;
  mmu::cli::TrainFlags train;
  mmu::cli::DefaultSpaceFlags default_space;
  mmu::cli::PairsFlags pairs;
  mmu::cli::FitFlags fit;
  mmu::cli::MergeFlags merge;
  auto* build_cmd = mmu::cli::add_build_command(app, build);
  auto* inspect_cmd = mmu::cli::add_inspect_command(app, inspect);
  auto* preprocess_cmd = mmu::cli::add_preprocess_command(app, preprocess);
  auto* xmatch_cmd = mmu::cli::add_xmatch_command(app, xmatch);
  auto* reindex_cmd = mmu::cli::add_reindex_command(app, reindex);
  auto* train_cmd = mmu::cli::add_train_command(app, train);
  auto* default_space_cmd = mmu::cli::add_default_space_command(app, default_space);
  auto* pairs_cmd = mmu::cli::add_pairs_command(app, pairs);
  auto* fit_cmd = mmu::cli::add_fit_command(app, fit);
  auto* merge_cmd = mmu::cli::add_merge_command(app, merge);

  // CLI11 reports a misspelt subcommand as "a subcommand is required": name it.
  if (argc > 1 && argv[1][0] != '-') {
    std::string known;
    bool found = false;
    for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      known += (known.empty() ? "" : ", ") + sub->get_name();
      found = found || sub->get_name() == argv[1];
    }
    if (!found) {
      std::cerr << "error: unknown command '" << argv[1] << "' (known: " << known << ")\n";
      return 2;
    }
  }

  return mmu::cli::run_main(app, argc, argv, [&] {
    if (build_cmd->parsed()) return mmu::cli::run_build(build);
    if (inspect_cmd->parsed()) return mmu::cli::run_inspect(inspect);
    if (preprocess_cmd->parsed()) return mmu::cli::run_preprocess(preprocess);
    if (xmatch_cmd->parsed()) return mmu::cli::run_xmatch(xmatch);
    if (reindex_cmd->parsed()) return mmu::cli::run_reindex(reindex);
    if (train_cmd->parsed()) return mmu::cli::run_train(train);
    if (default_space_cmd->parsed()) return mmu::cli::run_default_space(default_space);
    if (pairs_cmd->parsed()) return mmu::cli::run_pairs(pairs);
    if (fit_cmd->parsed()) return mmu::cli::run_fit(fit);
    if (merge_cmd->parsed()) return mmu::cli::run_merge(merge);
    return 0;
  });
}
