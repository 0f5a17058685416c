// `mmu-index inspect` reads through this: MMU files described as the reader
// sees them, including files it cannot ingest (unknown layouts are described,
// errors are reported). Writing the description is the command's business.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mmu/mmu_files.h"

namespace mmu {

struct DatasetSummary {
  std::string name;            // path inside the file
  std::string dtype;           // "float32", "bytes16", "bool", ...
  std::vector<int64_t> shape;  // empty = scalar
  std::string compression;     // "lzf", "gzip", "" = none
  std::string role;            // what the reader takes it as ("object_id", "image", "mask (True = good)", ...)
};

struct FileInspection {
  SourceFile file;
  std::optional<FileLayout> layout;     // guessed from the dataset names; nullopt = unknown
  Modality modality = Modality::kNone;  // what would be embedded
  int64_t objects = 0;
  std::vector<int64_t> cells;  // distinct healpix values of the objects
  std::string error;     // why `build` would refuse this file ("" when it can ingest it)
  std::vector<DatasetSummary> datasets;
};

// Inspects every MMU file under the paths (files or folders). Never throws for
// a bad file: its problem goes into FileInspection::error.
std::vector<FileInspection> inspect_paths(const std::vector<std::string>& paths);

}  // namespace mmu
