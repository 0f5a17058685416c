#include "ingest/partition.h"

#include <algorithm>
#include <numeric>
#include <unordered_map>

#include "base/finite.h"
#include "mmu/error.h"
#include "mmu/preprocess.h"
#include "mmu/sky.h"

namespace mmu {

const char* data_dataset(Modality m) {
  switch (m) {
    case Modality::kImage: return "image_array";
    case Modality::kSpectrum: return "spectrum_flux";
    case Modality::kLightCurve: return "lightcurve / time, mag|flux";
    case Modality::kXp: return "coeff";
    default: return "";
  }
}

namespace {

// Features of rows [start, start+count) into out (spectra: raw bin means, their
// weights into weights); returns -1 or the first bad row's offset.
int64_t batch_features(const MmuFileReader& reader, const BuildOptions& opt, int64_t start, int64_t count,
                       std::vector<float>* out, std::vector<float>* weights, int64_t* dim, LightCurvePadding* padding) {
  switch (reader.modality()) {
    case Modality::kImage: {
      ImageBatch b;
      reader.read_images(start, count, &b);
      *dim = image_feature_dim(opt.image, static_cast<int64_t>(image_feature_bands(b).size()));
      out->resize(static_cast<size_t>(count * *dim));
      return image_features(b, opt.image, out->data());
    }
    case Modality::kSpectrum: {
      SpectrumBatch b;
      reader.read_spectra(start, count, &b);
      *dim = spectrum_feature_dim(opt.spectrum);
      out->resize(static_cast<size_t>(count * *dim));
      weights->resize(out->size());
      return spectrum_bins(b, opt.spectrum, out->data(), weights->data());
    }
    case Modality::kLightCurve: {
      LightCurveBatch b;
      reader.read_light_curves(start, count, &b);
      *padding += b.padding;
      *dim = light_curve_feature_dim(opt.light_curve);
      out->resize(static_cast<size_t>(count * *dim));
      return light_curve_features(b, opt.light_curve, out->data());
    }
    case Modality::kXp: {
      CoeffBatch b;
      reader.read_coefficients(start, count, &b);
      *dim = b.dim;
      out->resize(static_cast<size_t>(count * *dim));
      return xp_features(b, out->data());
    }
    default:
      *dim = 0;
      return -1;
  }
}

}  // namespace

void check_unique_ids(const Partition& p) {
  std::unordered_map<std::string, int64_t> first_row;
  first_row.reserve(p.catalog.ids.size());
  for (int64_t i = 0; i < static_cast<int64_t>(p.catalog.ids.size()); ++i) {
    auto [it, fresh] = first_row.emplace(p.catalog.ids[i], i);
    if (!fresh)
      throw FormatError("object_id '" + p.catalog.ids[i] + "' appears twice in '" + p.file.path + "': rows " +
                        std::to_string(it->second) + " and " + std::to_string(i));
  }
}

Partition load_partition(const MmuFileReader& reader, const BuildOptions& opt, Progress* progress) {
  Partition p;
  p.file = reader.file();
  p.modality = reader.modality();
  p.space = p.modality == Modality::kImage ? reader.image_bands().space : modality_name(p.modality);
  p.catalog = reader.read_catalog();
  check_unique_ids(p);
  p.values = reader.read_scalar_columns();
  const int64_t n = reader.rows();
  p.fine.resize(n);
  for (int64_t i = 0; i < n; ++i) p.fine[i] = healpix_fine(p.catalog.ra[i], p.catalog.dec[i]);
  p.order.resize(n);
  std::iota(p.order.begin(), p.order.end(), 0);
  std::stable_sort(p.order.begin(), p.order.end(), [&](int64_t a, int64_t b) { return p.fine[a] < p.fine[b]; });
  if (p.modality == Modality::kNone) return p;

  std::vector<float> by_file_row, batch, weights_by_file_row, batch_weights;
  const int64_t batch_size = opt.batch_size > 0 ? opt.batch_size : 64;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t count = std::min(batch_size, n - start);
    int64_t dim = 0;
    const int64_t bad = batch_features(reader, opt, start, count, &batch, &batch_weights, &dim, &p.padding);
    if (bad >= 0)
      throw FormatError("object '" + p.catalog.ids[start + bad] + "' (row " + std::to_string(start + bad) +
                        ") in '" + p.file.path + "': dataset '" + data_dataset(p.modality) +
                        "' has NaN/Inf values where its mask says usable, or no usable value at all");
    // Finite input can still overflow a feature (values near FLT_MAX): no such vector enters the store.
    const int64_t overflow = first_non_finite_row(batch.data(), count, dim);
    if (overflow >= 0)
      throw FormatError("object '" + p.catalog.ids[start + overflow] + "' (row " + std::to_string(start + overflow) +
                        ") in '" + p.file.path + "': dataset '" + data_dataset(p.modality) +
                        "' has values too large for a finite feature vector");
    p.feature_dim = dim;
    by_file_row.insert(by_file_row.end(), batch.begin(), batch.end());
    if (p.modality == Modality::kSpectrum)
      weights_by_file_row.insert(weights_by_file_row.end(), batch_weights.begin(), batch_weights.end());
    progress->add(count);
  }
  p.features.resize(by_file_row.size());
  p.weights.resize(weights_by_file_row.size());
  for (int64_t pos = 0; pos < n; ++pos) {
    std::copy_n(by_file_row.data() + p.order[pos] * p.feature_dim, p.feature_dim,
                p.features.data() + pos * p.feature_dim);
    if (!p.weights.empty())
      std::copy_n(weights_by_file_row.data() + p.order[pos] * p.feature_dim, p.feature_dim,
                  p.weights.data() + pos * p.feature_dim);
  }
  return p;
}

}  // namespace mmu
