// The baseline space's learned part: its PCA fitted on a set of objects'
// features, and the projection of one file's features with a given fit.
// Private to mmu_core.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ingest/partition.h"
#include "mmu/pca.h"

namespace mmu {

// Features of many files for one baseline space, in the order they were added.
struct FeatureSet {
  Modality modality = Modality::kNone;
  int64_t dim = 0;
  std::vector<float> features;  // rows x dim
  std::vector<float> weights;   // spectra only: bin weights, rows x dim
  std::vector<std::string> where;  // spectra only: "object 'ID' (row R) in 'PATH'" per row, for errors
  std::vector<int64_t> rows;    // catalog row of each feature row
  std::string first_file;       // for dimension-mismatch messages
};

// Appends a file's features (dimension checked against the set's first file).
void add_features(FeatureSet* set, const Partition& p, const std::vector<int64_t>& rows);

// The baseline's feature definition per modality, and what its latest version
// changed: vectors of another version are not comparable, so such a space is
// refitted, never extended.
struct BaselineVersion {
  const char* version;
  const char* change;
};
BaselineVersion baseline_version(Modality m);

// The PCA of one baseline space (spectra: fitted on well-covered spectra, see
// fit_spectrum_pca); a failure names the space and its size, and a fit that is
// not finite is refused.
PcaModel fit_space_pca(const std::string& name, const FeatureSet& set, int64_t dim);

// One file's vectors (store order) with a given fit, projected in fixed
// chunks from the file's first object: the same file gives the same bits
// whichever other files share the build (a shard's or the whole survey's).
// Spectra's empty bins are filled by gappy PCA first; a failure names the
// object and its file.
std::vector<float> project_partition(const PcaModel& pca, const Partition& p);

}  // namespace mmu
