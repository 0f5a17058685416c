#include "ingest/baseline_fit.h"

#include <algorithm>

#include "base/finite.h"
#include "mmu/error.h"

namespace mmu {

void add_features(FeatureSet* set, const Partition& p, const std::vector<int64_t>& rows) {
  set->modality = p.modality;
  if (set->dim == 0) {
    set->dim = p.feature_dim;
    set->first_file = p.file.path;
  } else if (set->dim != p.feature_dim) {
    throw FormatError("'" + p.file.path + "' gives " + std::to_string(p.feature_dim) + " features per object but '" +
                      set->first_file + "' gives " + std::to_string(set->dim) + ": one space needs one input shape");
  }
  set->features.insert(set->features.end(), p.features.begin(), p.features.end());
  set->weights.insert(set->weights.end(), p.weights.begin(), p.weights.end());
  if (p.modality == Modality::kSpectrum)
    for (int64_t i : p.order)
      set->where.push_back("object '" + p.catalog.ids[i] + "' (row " + std::to_string(i) + ") in '" + p.file.path + "'");
  set->rows.insert(set->rows.end(), rows.begin(), rows.end());
}

BaselineVersion baseline_version(Modality m) {
  switch (m) {
    // 3: the masked bins get gappy PCA's posterior mean over more fill components
    // (2: a fixed prior over the projection's components; 1: interpolation).
    case Modality::kSpectrum: return {"3", "spectra's masked bins filled by gappy PCA's posterior mean"};
    case Modality::kImage: return {"2", "image features invariant to rotations and flips, not block means"};
    default: return {"1", "the first version"};
  }
}

PcaModel fit_space_pca(const std::string& name, const FeatureSet& set, int64_t dim) {
  const int64_t n = static_cast<int64_t>(set.rows.size());
  const std::string what = "the baseline PCA of space '" + name + "' (" + std::to_string(n) + " objects x " +
                           std::to_string(set.dim) + " features, first file '" + set.first_file + "')";
  PcaModel pca;
  try {
    pca = set.weights.empty() ? fit_pca(set.features.data(), n, set.dim, dim)
                              : fit_spectrum_pca(set.features.data(), set.weights.data(), n, set.dim, dim);
  } catch (const Error& e) {
    throw Error(e.kind(), "fitting " + what + ": " + e.what());
  }
  // Objects whose features do not vary at all (identical images) leave the
  // fit without a direction: no vector projected with it could be finite.
  if (first_non_finite_row(pca.mean.data(), 1, pca.input_dim) >= 0 ||
      first_non_finite_row(pca.components.data(), pca.output_dim, pca.input_dim) >= 0)
    throw FormatError("fitting " + what + ": the fit is not finite; the objects' features do not vary "
                      "(identical data in every object?)");
  return pca;
}

std::vector<float> project_partition(const PcaModel& pca, const Partition& p) {
  // Fixed chunks, so a BLAS call never sees rows of another file.
  constexpr int64_t kChunk = 1024;
  const int64_t n = static_cast<int64_t>(p.order.size());
  const int64_t d = p.feature_dim, k = pca.output_dim;
  if (d != pca.input_dim)
    throw FormatError("'" + p.file.path + "' gives " + std::to_string(d) + " features per object and the fit of space '" +
                      p.space + "' takes " + std::to_string(pca.input_dim));
  std::vector<float> out(static_cast<size_t>(n * k));
  std::vector<float> filled;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t count = std::min(kChunk, n - start);
    const float* x = p.features.data() + start * d;
    if (!p.weights.empty()) {
      filled.resize(static_cast<size_t>(count * d));
      const int64_t bad = gappy_spectrum_features(pca, x, p.weights.data() + start * d, count, filled.data());
      if (bad >= 0) {
        const int64_t row = p.order[static_cast<size_t>(start + bad)];
        throw FormatError("object '" + p.catalog.ids[static_cast<size_t>(row)] + "' (row " + std::to_string(row) +
                          ") in '" + p.file.path + "': its spectrum's gappy PCA fit over its usable bins failed "
                          "(too few usable bins, or extreme flux/ivar values)");
      }
      x = filled.data();
    }
    project_pca(pca, x, count, out.data() + start * k);
  }
  return out;
}

}  // namespace mmu
