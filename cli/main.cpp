// mmu-search: query a store.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "cli_common.h"
#include "process_defaults.h"
#include "export_command.h"
#include "hunt_command.h"
#include "probe_command.h"
#include "query_command.h"
#include "serve_command.h"
#include "mmu/space_index.h"
#include "mmu/store.h"
#include "mmu/version.h"

namespace {

// "flat", or "hnsw r@50=0.973": how the space is searched and how well.
std::string index_summary(const mmu::Store& store, const std::string& space) {
  const mmu::IndexRecord r = mmu::read_index_record(store.space_dir(space));
  std::string s = mmu::index_kind_name(r.spec.kind);
  if (r.recall_k > 0 && r.spec.kind != mmu::IndexKind::kFlat) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), " r@%lld=%.3f", static_cast<long long>(r.recall_k), r.recall);
    s += buf;
  }
  return s;
}

void list_spaces(const mmu::Store& store, std::ostream& out) {
  const auto spaces = store.spaces();
  size_t w_name = 5, w_model = 5, w_version = 7;
  std::vector<std::string> indexes;
  for (const auto& s : spaces) {
    w_name = std::max(w_name, s.name.size());
    w_model = std::max(w_model, s.model.size());
    w_version = std::max(w_version, s.version.size());
    indexes.push_back(index_summary(store, s.name));
  }
  char line[512];
  // New columns go last: scripts read the first ones by position.
  std::snprintf(line, sizeof(line), "%-*s  %-10s  %-*s  %-*s  %5s  %8s  %-12s  %-20s  %s\n", static_cast<int>(w_name),
                "space", "modality", static_cast<int>(w_model), "model", static_cast<int>(w_version), "version", "dim",
                "count", "sha256", "created", "index");
  out << line;
  for (size_t i = 0; i < spaces.size(); ++i) {
    const auto& s = spaces[i];
    std::snprintf(line, sizeof(line), "%-*s  %-10s  %-*s  %-*s  %5lld  %8lld  %-12s  %-20s  %s\n",
                  static_cast<int>(w_name), s.name.c_str(), s.modality.c_str(), static_cast<int>(w_model),
                  s.model.c_str(), static_cast<int>(w_version), s.version.c_str(), static_cast<long long>(s.dim),
                  static_cast<long long>(s.count), s.sha256.substr(0, 12).c_str(), s.created.c_str(), indexes[i].c_str());
    out << line;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mmu-search: find similar objects in an mmu-search store"};
  app.set_version_flag("--version", std::string("mmu-search ") + mmu::kVersion);

  mmu::cli::QueryFlags query;
  std::string store_path = mmu::default_store_path();
  bool spaces = false;
  mmu::cli::add_query_flags(app, query);
  app.add_option("--store", store_path, "store directory (default: $MMU_STORE or ./mmu-store)");
  auto* ls = app.add_flag("--list-spaces", spaces, "list the store's embedding spaces and how each is indexed");
  for (const char* query_flag : {"--like", "--near", "--vector", "--like-file"}) ls->excludes(app.get_option(query_flag));
  mmu::cli::ServeFlags serve;
  CLI::App* serve_command = mmu::cli::add_serve_command(app, serve);

  mmu::cli::HuntFlags hunt;
  auto* hunt_cmd = mmu::cli::setup_hunt(app, hunt);
  hunt_cmd->add_option("--store", store_path, "store directory (default: $MMU_STORE or ./mmu-store)");
  mmu::cli::ExportFlags export_flags;
  mmu::cli::ProbeFlags probe_flags;
  mmu::cli::PredictFlags predict_flags;
  auto* export_cmd = mmu::cli::setup_export(app, export_flags);
  auto* probe_cmd = mmu::cli::setup_probe(app, probe_flags);
  auto* predict_cmd = mmu::cli::setup_predict(app, predict_flags);
  for (auto* c : {export_cmd, probe_cmd, predict_cmd})
    c->add_option("--store", store_path, "store directory (default: $MMU_STORE or ./mmu-store)");

  return mmu::cli::run_main(app, argc, argv, [&] {
    if (*serve_command) return mmu::cli::run_serve(serve);
    if (hunt_cmd->parsed()) return mmu::cli::run_hunt(*mmu::Store::open(store_path), hunt);
    if (export_cmd->parsed()) return mmu::cli::run_export(*mmu::Store::open(store_path), export_flags);
    if (probe_cmd->parsed()) return mmu::cli::run_probe(*mmu::Store::open(store_path), probe_flags);
    if (predict_cmd->parsed()) return mmu::cli::run_predict(*mmu::Store::open(store_path), predict_flags);
    const mmu::LikeQuery& q = query.q;
    const bool asked = !q.like.empty() || !query.near.empty() || !query.vector_file.empty() || !query.like_file.empty();
    if (!spaces && !asked)
      throw mmu::InvalidArgument(
          "nothing to do: give --like <object_id>, --near RA,DEC, --vector f.npy, --like-file ids.txt or --list-spaces (see --help)");
    auto store = mmu::Store::open(store_path);
    if (spaces) {
      list_spaces(*store, std::cout);
      return 0;
    }
    return mmu::cli::run_query(*store, query);
  });
}
