#include "mmu/inspect.h"

#include <algorithm>
#include <map>
#include <set>

#include "read/hdf5_util.h"
#include "mmu/error.h"
#include "mmu/result_format.h"

namespace mmu {

namespace {

std::string shape_text(const std::vector<int64_t>& s) {
  if (s.empty()) return "scalar";
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// Mask polarity differs by modality in MMU (../shared/mmu-format.md §2).
std::string polarity_note(const std::string& name) {
  if (name == "image_mask") return "mask (True = good pixel)";
  if (name == "spectrum_mask") return "mask (True = bad pixel)";
  return "";
}

std::string guess_layout(const std::vector<DatasetSummary>& ds) {
  bool nested = false, scalar_id = false, row_keys = false;
  for (const auto& d : ds) {
    nested = nested || d.name.find('/') != std::string::npos;
    scalar_id = scalar_id || (d.name == "object_id" && d.shape.empty());
    row_keys = row_keys || d.name == "object_id" || d.name == "source_id" || d.name == "ra" || d.name == "RA";
  }
  if (nested) return "groups per object";
  if (scalar_id) return "per-object scalars";
  return row_keys ? "row table" : "unknown";
}

FileInspection inspect_file(const SourceFile& f) {
  FileInspection fi;
  fi.file = f;
  fi.layout = "unknown";
  fi.modality = modality_name(Modality::kNone);
  try {
    h5::Handle file = h5::open_file(f.path);
    for (const std::string& name : h5::list_datasets(file.get())) {
      h5::Dataset d(file.get(), f.path, name);
      fi.datasets.push_back({name, d.info().type_text, d.info().dims, d.info().filters, polarity_note(name)});
    }
    fi.layout = guess_layout(fi.datasets);
  } catch (const Error& e) {
    fi.error = e.what();
    return fi;
  }
  try {
    MmuFileReader reader(f);
    const auto cols = reader.columns();
    fi.modality = modality_name(reader.modality());
    fi.objects = reader.rows();
    const FileCatalog cat = reader.read_catalog();
    std::set<int64_t> cells(cat.healpix.begin(), cat.healpix.end());
    fi.cells.assign(cells.begin(), cells.end());
    const std::map<std::string, std::string> roles = {
        {cols.id, "object_id"}, {cols.ra, "ra"}, {cols.dec, "dec"},
        {cols.healpix, "healpix"}, {cols.data, std::string(modality_name(reader.modality())) + " data"}};
    for (auto& d : fi.datasets) {
      auto it = roles.find(d.name);
      if (it != roles.end() && !d.name.empty()) d.role = it->second;
    }
    if (cols.healpix.empty())
      fi.datasets.push_back({"(computed)", "int64", {}, "", "healpix: no dataset, recomputed from ra/dec"});
  } catch (const Error& e) {
    fi.error = e.what();
  }
  return fi;
}

}  // namespace

std::vector<FileInspection> inspect_paths(const std::vector<std::string>& paths) {
  std::vector<FileInspection> out;
  for (const SourceFile& f : discover_files(paths)) out.push_back(inspect_file(f));
  return out;
}

void write_inspection_text(const std::vector<FileInspection>& files, std::ostream& out) {
  // Summary per dataset/subset, then each file.
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
        << (f.file.healpix >= 0 ? std::to_string(f.file.healpix) : std::string("?")) << ", layout " << f.layout
        << ", " << f.objects << " objects, modality " << f.modality << "\n";
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
  out << "[";
  for (size_t i = 0; i < files.size(); ++i) {
    const auto& f = files[i];
    out << (i ? ",\n " : "\n ") << "{\"path\": " << json_quote(f.file.path) << ", \"dataset\": "
        << json_quote(f.file.dataset) << ", \"subset\": " << json_quote(f.file.subset)
        << ", \"healpix_folder\": " << f.file.healpix << ", \"layout\": " << json_quote(f.layout)
        << ", \"modality\": " << json_quote(f.modality) << ", \"objects\": " << f.objects << ", \"cells\": [";
    for (size_t c = 0; c < f.cells.size(); ++c) out << (c ? ", " : "") << f.cells[c];
    out << "], \"error\": " << (f.error.empty() ? "null" : json_quote(f.error)) << ", \"keys\": [";
    for (size_t k = 0; k < f.datasets.size(); ++k) {
      const auto& d = f.datasets[k];
      out << (k ? ", " : "") << "{\"name\": " << json_quote(d.name) << ", \"dtype\": " << json_quote(d.dtype)
          << ", \"shape\": [";
      for (size_t s = 0; s < d.shape.size(); ++s) out << (s ? ", " : "") << d.shape[s];
      out << "], \"compression\": " << (d.compression.empty() ? "null" : json_quote(d.compression))
          << ", \"role\": " << (d.role.empty() ? "null" : json_quote(d.role)) << "}";
    }
    out << "]}";
  }
  out << "\n]\n";
}

}  // namespace mmu
