#include "mmu/inspect.h"

#include <map>
#include <set>

#include "read/hdf5_util.h"
#include "mmu/error.h"
#include "mmu/text.h"

namespace mmu {

namespace {

// Mask polarity differs by modality in MMU (docs/MMU-FORMAT.md §2).
std::string polarity_note(const std::string& name) {
  if (name == "image_mask") return "mask (True = good pixel)";
  if (name == "spectrum_mask") return "mask (True = bad pixel)";
  return "";
}

// From the names alone, so a file the reader refuses still gets a layout.
std::optional<FileLayout> guess_layout(const std::vector<DatasetSummary>& ds) {
  bool nested = false, scalar_id = false, row_keys = false;
  for (const auto& d : ds) {
    nested = nested || d.name.find('/') != std::string::npos;
    scalar_id = scalar_id || (d.name == "object_id" && d.shape.empty());
    row_keys = row_keys || d.name == "object_id" || d.name == "source_id" || d.name == "ra" || d.name == "RA";
  }
  if (nested) return FileLayout::kGroupsPerObject;
  if (scalar_id) return FileLayout::kPerObjectScalars;
  if (row_keys) return FileLayout::kRowTable;
  return std::nullopt;
}

FileInspection inspect_file(const SourceFile& f) {
  FileInspection fi;
  fi.file = f;
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
    fi.modality = reader.modality();
    fi.objects = reader.rows();
    const FileCatalog cat = reader.read_catalog();
    std::set<int64_t> cells(cat.healpix.begin(), cat.healpix.end());
    fi.cells.assign(cells.begin(), cells.end());
    std::map<std::string, std::string> roles = {
        {cols.id, "object_id"}, {cols.ra, "ra"}, {cols.dec, "dec"},
        {cols.healpix, "healpix"}, {cols.data, std::string(modality_name(reader.modality())) + " data"}};
    for (const auto& [name, role] : reader.other_roles()) roles.emplace(name, role);
    for (auto& d : fi.datasets) {
      auto it = roles.find(d.name);
      if (it != roles.end() && !d.name.empty()) d.role = it->second;
    }
    if (reader.modality() == Modality::kImage) {
      const ImageBands& ib = reader.image_bands();
      fi.datasets.push_back({"(image)", "", {}, "", "space " + ib.space + "; pixel scale " +
                             text::format_double("%.4g", ib.pixel_scale) + "\"/px (" + ib.scale_source + ")"});
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
  std::vector<UnusableInput> unusable;
  for (const SourceFile& f : discover_files(paths, &unusable)) out.push_back(inspect_file(f));
  for (const UnusableInput& u : unusable) {
    FileInspection fi;
    fi.file.path = u.path;
    fi.error = u.why;
    out.push_back(fi);
  }
  return out;
}

}  // namespace mmu
