// mmu-search: query a store. Only the dispatch: the plain query lives on the
// app itself (query_command), each subcommand in its <name>_command.{h,cpp}.
#include <string>
#include <utility>

#include "cli_common.h"
#include "export_command.h"
#include "hunt_command.h"
#include "predict_command.h"
#include "probe_command.h"
#include "query_command.h"
#include "serve_command.h"
#include "mmu/version.h"

int main(int argc, char** argv) {
  CLI::App app{"mmu-search: find similar objects in an mmu-search store"};
  app.set_version_flag("--version", std::string("mmu-search ") + mmu::kVersion);

  mmu::cli::QueryCommandFlags query;
  mmu::cli::ServeFlags serve;
  mmu::cli::HuntFlags hunt;
  mmu::cli::ExportFlags export_flags;
  mmu::cli::ProbeFlags probe;
  mmu::cli::PredictFlags predict;
  mmu::cli::add_query_command(app, query);
  auto* serve_cmd = mmu::cli::add_serve_command(app, serve);
  auto* hunt_cmd = mmu::cli::add_hunt_command(app, hunt);
  auto* export_cmd = mmu::cli::add_export_command(app, export_flags);
  auto* probe_cmd = mmu::cli::add_probe_command(app, probe);
  auto* predict_cmd = mmu::cli::add_predict_command(app, predict);

  return mmu::cli::run_main(app, argc, argv, [&] {
    // `mmu-search --store S hunt ...` names the store before the subcommand:
    // a subcommand given no --store of its own takes that one (serve never did).
    const std::pair<CLI::App*, std::string*> store_users[] = {
        {hunt_cmd, &hunt.store}, {export_cmd, &export_flags.store}, {probe_cmd, &probe.store}, {predict_cmd, &predict.store}};
    for (const auto& [cmd, store] : store_users)
      if (cmd->count("--store") == 0) *store = query.store;
    if (serve_cmd->parsed()) return mmu::cli::run_serve(serve);
    if (hunt_cmd->parsed()) return mmu::cli::run_hunt(hunt);
    if (export_cmd->parsed()) return mmu::cli::run_export(export_flags);
    if (probe_cmd->parsed()) return mmu::cli::run_probe(probe);
    if (predict_cmd->parsed()) return mmu::cli::run_predict(predict);
    return mmu::cli::run_query(query);
  });
}
