// `mmu-index fit`: the baseline PCA of every baseline space, fitted once on a
// bounded, seeded sample of HEALPix cells, for the shards of a sharded build
// (`mmu-index build --fit DIR --shard I/N`) to project with.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "mmu/preprocess.h"

namespace mmu {

struct FitOptions {
  std::vector<std::string> roots;
  std::string out;            // the fit folder
  int64_t sample_cells = 32;  // cells per space; 0 = every cell
  uint64_t seed = 0;
  int64_t dim = 64;           // PCA output dimension per space
  bool progress = true;
  ImageFeatureOptions image;
  SpectrumFeatureOptions spectrum;
  LightCurveFeatureOptions light_curve;
};

struct FitReport {
  struct Space {
    int64_t objects = 0, files = 0, cells = 0, cells_available = 0, dim = 0;
    std::string sha256;
  };
  std::map<std::string, Space> spaces;
  std::vector<std::string> warnings;  // each naming its file
  double seconds = 0;
};

// Per baseline space: its files' cells, the sample of them (see
// sample_cells in src/ingest/cells.h), their files read whole, the PCA.
// Throws mmu::Error naming the file/space at fault; a failed fit leaves the
// previous fit folder as it was.
FitReport fit_baseline(const FitOptions& opt);

void print_fit_report(const FitReport& r, const std::string& out_dir, std::ostream& out);

}  // namespace mmu
