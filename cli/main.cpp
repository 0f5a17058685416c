// mmu-search: query a store.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "cli_common.h"
#include "omp_defaults.h"
#include "mmu/query.h"
#include "mmu/result_format.h"
#include "mmu/store.h"
#include "mmu/version.h"

namespace {

void list_spaces(const mmu::Store& store, std::ostream& out) {
  const auto spaces = store.spaces();
  size_t w_name = 5, w_model = 5, w_version = 7;
  for (const auto& s : spaces) {
    w_name = std::max(w_name, s.name.size());
    w_model = std::max(w_model, s.model.size());
    w_version = std::max(w_version, s.version.size());
  }
  char line[512];
  std::snprintf(line, sizeof(line), "%-*s  %-10s  %-*s  %-*s  %5s  %8s  %-12s  %s\n", static_cast<int>(w_name),
                "space", "modality", static_cast<int>(w_model), "model", static_cast<int>(w_version), "version", "dim",
                "count", "sha256", "created");
  out << line;
  for (const auto& s : spaces) {
    std::snprintf(line, sizeof(line), "%-*s  %-10s  %-*s  %-*s  %5lld  %8lld  %-12s  %s\n", static_cast<int>(w_name),
                  s.name.c_str(), s.modality.c_str(), static_cast<int>(w_model), s.model.c_str(),
                  static_cast<int>(w_version), s.version.c_str(),
                  static_cast<long long>(s.dim), static_cast<long long>(s.count), s.sha256.substr(0, 12).c_str(),
                  s.created.c_str());
    out << line;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mmu-search: find similar objects in an mmu-search store"};
  app.set_version_flag("--version", std::string("mmu-search ") + mmu::kVersion);

  mmu::LikeQuery q;
  std::string store_path = mmu::default_store_path();
  std::string format = "table";
  bool spaces = false;
  auto* like = app.add_option("--like", q.object_id, "object_id whose nearest neighbours (cosine) to list");
  app.add_option("--k", q.k, "number of neighbours")->capture_default_str();
  app.add_option("--space", q.space, "embedding space (image, spectrum) when the object has several");
  app.add_option("--survey", q.survey, "survey of the object when its id exists in several");
  app.add_option("--in", q.in_surveys, "only return objects of this survey (repeatable; dataset or dataset/subset)");
  app.add_option("--format", format, "table, csv or json")->capture_default_str();
  app.add_option("--store", store_path, "store directory (default: $MMU_STORE or ./mmu-store)");
  auto* ls = app.add_flag("--list-spaces", spaces, "list the store's embedding spaces");
  like->excludes(ls);

  return mmu::cli::run_main(app, argc, argv, [&] {
    const mmu::OutputFormat fmt = mmu::parse_output_format(format);
    if (!spaces && q.object_id.empty())
      throw mmu::InvalidArgument("nothing to do: give --like <object_id> or --list-spaces (see --help)");
    auto store = mmu::Store::open(store_path);
    if (spaces) {
      list_spaces(*store, std::cout);
      return 0;
    }
    const mmu::LikeResult r = mmu::search_like(*store, q);
    mmu::write_like_result(r, fmt, std::cout);
    if (!r.note.empty()) std::cerr << "note: " << r.note << "\n";
    return 0;
  });
}
