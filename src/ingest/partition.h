// One input file read whole for a build or a fit: its catalog, its store order
// and its baseline features. Private to mmu_core.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mmu/build.h"
#include "mmu/mmu_files.h"
#include "mmu/progress.h"

namespace mmu {

// One file's objects in store order (sorted by fine HEALPix key), with their
// features in the same order.
struct Partition {
  SourceFile file;
  Modality modality = Modality::kNone;
  std::string space;            // the baseline space its features go to ("image", "image-rgb", "spectrum", ...)
  FileCatalog catalog;
  std::vector<ScalarColumn> values;  // catalog columns for --where, by file row
  std::vector<int64_t> order;   // store position -> file row
  std::vector<int64_t> fine;    // by file row
  int64_t feature_dim = 0;
  std::vector<float> features;  // order.size() x feature_dim; spectra: raw bin means (spectrum_bins)
  std::vector<float> weights;   // spectra only: bin weights, like features
  LightCurvePadding padding;    // summed over the file's batches, for its warnings
  // Builds with a given fit (--fit): the file's baseline vectors, store order,
  // projected as soon as it is read (its features are then dropped).
  std::vector<float> vectors;
};

// The dataset a modality's features come from, for error messages.
const char* data_dataset(Modality m);

// A query by id must name one object: a file repeating an id is bad as a whole.
void check_unique_ids(const Partition& p);

// Reads one file whole: catalog, store order, features. Throws mmu::Error
// naming the file, dataset and object at fault.
Partition load_partition(const MmuFileReader& reader, const BuildOptions& opt, Progress* progress);

}  // namespace mmu
