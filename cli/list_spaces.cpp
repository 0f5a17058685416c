#include "list_spaces.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "mmu/index_record.h"
#include "mmu/store.h"

namespace mmu::cli {

namespace {

// "flat", or "hnsw r@50=0.973": how the space is searched and how well.
std::string index_summary(const Store& store, const std::string& space) {
  const IndexRecord r = read_index_record(store.space_dir(space));
  std::string s = index_kind_name(r.spec.kind);
  if (r.recall_k > 0 && r.spec.kind != IndexKind::kFlat) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), " r@%lld=%.3f", static_cast<long long>(r.recall_k), r.recall);
    s += buf;
  }
  return s;
}

}  // namespace

void list_spaces(const Store& store, std::ostream& out) {
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
  std::snprintf(line, sizeof(line), "%-*s  %-10s  %-*s  %-*s  %5s  %8s  %-12s  %-20s  %-18s  %s\n", static_cast<int>(w_name),
                "space", "modality", static_cast<int>(w_model), "model", static_cast<int>(w_version), "version", "dim",
                "count", "sha256", "created", "index", "default");
  out << line;
  for (size_t i = 0; i < spaces.size(); ++i) {
    const auto& s = spaces[i];
    // Which space a search without --space uses for this modality.
    const char* mark = store.default_space(s.modality) != s.name ? "-"
                       : store.default_space_chosen(s.modality) ? "yes (chosen)"
                                                                 : "yes";
    std::snprintf(line, sizeof(line), "%-*s  %-10s  %-*s  %-*s  %5lld  %8lld  %-12s  %-20s  %-18s  %s\n",
                  static_cast<int>(w_name), s.name.c_str(), s.modality.c_str(), static_cast<int>(w_model),
                  s.model.c_str(), static_cast<int>(w_version), s.version.c_str(), static_cast<long long>(s.dim),
                  static_cast<long long>(s.count), s.sha256.substr(0, 12).c_str(), s.created.c_str(), indexes[i].c_str(),
                  mark);
    out << line;
  }
}

}  // namespace mmu::cli
