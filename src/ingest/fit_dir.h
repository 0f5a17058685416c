// The folder `mmu-index fit` writes and sharded builds read:
//   FITDIR/fit.json          the manifest: sample rule, seed, and per space
//                            its version, dimensions, cells and fit SHA-256
//   FITDIR/<space>/fit.bin   the space's PCA, byte for byte what a store keeps
// Private to mmu_core.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mmu {

inline constexpr const char* kFitManifestFile = "fit.json";
inline constexpr const char* kFitFormat = "mmu-fit 1";

struct FitSpace {
  std::string name;      // "image", "spectrum", ...
  std::string modality;  // modality_name()
  std::string version;   // baseline_version() of the modality when fitted
  int64_t input_dim = 0, dim = 0;
  int64_t objects = 0;   // objects the fit saw
  std::vector<int64_t> cells;       // the sampled cells holding the space's files
  int64_t cells_available = 0;      // cells holding files of the space
  std::vector<std::string> files;   // files read, discovery order
  std::string sha256;    // of fit.bin
};

struct FitManifest {
  std::string dir;
  std::string created;  // ISO 8601 UTC
  int64_t sample_cells = 0;
  uint64_t seed = 0;
  int64_t dim = 0;
  std::vector<std::string> roots;
  std::vector<FitSpace> spaces;
  const FitSpace* find(const std::string& space) const;
  std::string space_names() const;  // "image, spectrum" for messages
};

std::string fit_blob_path(const std::string& dir, const std::string& space);

// Writes the whole folder beside `dir` and renames it into place, so a failed
// fit leaves the previous one; an existing `dir` is replaced only if it is a
// fit folder (has fit.json) or empty.
void write_fit_dir(const FitManifest& m, const std::map<std::string, std::string>& blobs);

// Reads and checks the manifest; throws mmu::Error naming the file.
FitManifest read_fit_manifest(const std::string& dir);

// The space's fit.bin, checked against the manifest's SHA-256.
std::string read_fit_blob(const FitManifest& m, const FitSpace& s);

}  // namespace mmu
