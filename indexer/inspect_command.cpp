#include "inspect_command.h"

#include <algorithm>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

namespace mmu::cli {

namespace {

std::string shape_text(const std::vector<int64_t>& s) {
  if (s.empty()) return "scalar";
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

const char* layout_text(const FileInspection& f) { return f.layout ? layout_name(*f.layout) : "unknown"; }

// "" is written as null.
nlohmann::ordered_json text_or_null(const std::string& s) {
  return s.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(s);
}

}  // namespace

CLI::App* add_inspect_command(CLI::App& app, InspectFlags& f) {
  auto* ins = app.add_subcommand("inspect", "describe MMU files: keys, dtypes, shapes, compression, what is read");
  ins->add_option("paths", f.paths, "files or folders")->required();
  ins->add_option("--format", f.format, "text or json")->check(CLI::IsMember({"text", "json"}));
  return ins;
}

int run_inspect(const InspectFlags& f) {
  const auto files = inspect_paths(f.paths);
  if (f.format == "json")
    write_inspection_json(files, std::cout);
  else
    write_inspection_text(files, std::cout);
  for (const auto& file : files)
    if (!file.error.empty()) return 1;
  return 0;
}

void write_inspection_text(const std::vector<FileInspection>& files, std::ostream& out) {
  std::map<std::string, std::pair<int64_t, std::set<int64_t>>> surveys;
  int64_t bad = 0;
  for (const auto& f : files) {
    auto& s = surveys[f.file.dataset + "/" + f.file.subset];
    s.first += f.objects;
    s.second.insert(f.cells.begin(), f.cells.end());
    bad += !f.error.empty();
  }
  out << files.size() << " files";
  if (bad) out << " (" << bad << " unreadable or not ingestible)";
  out << "\n";
  for (const auto& [name, s] : surveys)
    out << "  " << name << ": " << s.first << " objects in " << s.second.size() << " cells\n";
  for (const auto& f : files) {
    out << "\n" << f.file.path << "\n  dataset " << f.file.dataset << ", subset " << f.file.subset << ", cell "
        << (f.file.healpix >= 0 ? std::to_string(f.file.healpix) : std::string("?")) << ", layout " << layout_text(f)
        << ", " << f.objects << " objects, modality " << modality_name(f.modality) << "\n";
    if (!f.error.empty()) out << "  PROBLEM: " << f.error << "\n";
    size_t w = 4;
    for (const auto& d : f.datasets) w = std::max(w, d.name.size());
    for (const auto& d : f.datasets) {
      std::string line = "    " + d.name + std::string(w - d.name.size() + 2, ' ') + d.dtype;
      line += std::string(line.size() < w + 18 ? w + 18 - line.size() : 1, ' ') + shape_text(d.shape);
      if (!d.compression.empty()) line += "  " + d.compression;
      if (!d.role.empty()) line += "  <- " + d.role;
      out << line << "\n";
    }
  }
}

void write_inspection_json(const std::vector<FileInspection>& files, std::ostream& out) {
  using Json = nlohmann::ordered_json;
  Json all = Json::array();
  for (const auto& f : files) {
    Json keys = Json::array();
    for (const auto& d : f.datasets)
      keys.push_back({{"name", d.name},
                      {"dtype", d.dtype},
                      {"shape", d.shape},
                      {"compression", text_or_null(d.compression)},
                      {"role", text_or_null(d.role)}});
    all.push_back({{"path", f.file.path},
                   {"dataset", f.file.dataset},
                   {"subset", f.file.subset},
                   {"healpix_folder", f.file.healpix},
                   {"layout", layout_text(f)},
                   {"modality", modality_name(f.modality)},
                   {"objects", f.objects},
                   {"cells", f.cells},
                   {"error", text_or_null(f.error)},
                   {"keys", std::move(keys)}});
  }
  // File and dataset names need not be UTF-8: replace bad bytes rather than throw.
  out << all.dump(1, ' ', false, Json::error_handler_t::replace) << "\n";
}

}  // namespace mmu::cli
