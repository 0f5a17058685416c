#include "mmu/build.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <unordered_map>

#include "mmu/error.h"
#include "mmu/mmu_files.h"
#include "mmu/pca.h"
#include "mmu/progress.h"
#include "mmu/sky.h"
#include "mmu/store.h"

namespace mmu {

namespace {

// One file's objects in store order (sorted by fine HEALPix key).
struct Partition {
  SourceFile file;
  Modality modality = Modality::kNone;
  FileCatalog catalog;
  std::vector<int64_t> order;      // store position -> file row
  std::vector<int64_t> fine;       // by file row
  int64_t first_row = -1;          // catalog row of order[0]
};

// Feature rows of one modality, gathered over all its partitions.
struct FeatureSet {
  int64_t dim = 0;
  std::vector<float> features;  // rows x dim
  std::vector<int64_t> rows;    // catalog row of each feature row
  std::string first_file;       // for dimension-mismatch messages
};

Partition load_partition(const RowFileReader& reader) {
  Partition p;
  p.file = reader.file();
  p.modality = reader.modality();
  p.catalog = reader.read_catalog();
  const int64_t n = reader.rows();
  p.fine.resize(n);
  for (int64_t i = 0; i < n; ++i) p.fine[i] = healpix_fine(p.catalog.ra[i], p.catalog.dec[i]);
  p.order.resize(n);
  std::iota(p.order.begin(), p.order.end(), 0);
  std::stable_sort(p.order.begin(), p.order.end(), [&](int64_t a, int64_t b) { return p.fine[a] < p.fine[b]; });
  return p;
}

// Ids must be unique within a survey: a query by id must name one object.
void check_duplicates(const std::vector<Partition>& parts) {
  std::unordered_map<std::string, std::pair<const Partition*, int64_t>> seen;
  for (const Partition& p : parts) {
    for (int64_t i = 0; i < static_cast<int64_t>(p.catalog.ids.size()); ++i) {
      const std::string key = p.file.dataset + '\n' + p.catalog.ids[i];
      auto [it, fresh] = seen.emplace(key, std::make_pair(&p, i));
      if (!fresh)
        throw FormatError("object_id '" + p.catalog.ids[i] + "' appears twice in survey '" + p.file.dataset +
                          "': row " + std::to_string(it->second.second) + " of '" + it->second.first->file.path +
                          "' and row " + std::to_string(i) + " of '" + p.file.path + "'");
    }
  }
}

void embed_partition(const RowFileReader& reader, const Partition& p, const BuildOptions& opt, FeatureSet* set,
                     Progress* progress) {
  const int64_t n = reader.rows();
  int64_t dim = 0;
  std::vector<float> by_file_row;  // n x dim, in file order
  ImageBatch images;
  SpectrumBatch spectra;
  for (int64_t start = 0; start < n; start += opt.batch_size) {
    const int64_t count = std::min(opt.batch_size, n - start);
    int64_t bad = -1;
    std::string dataset;
    if (p.modality == Modality::kImage) {
      reader.read_images(start, count, &images);
      dim = image_feature_dim(images.bands, opt.image);
      by_file_row.resize(static_cast<size_t>(n * dim));
      bad = image_features(images, opt.image, by_file_row.data() + start * dim);
      dataset = "image_array";
    } else {
      reader.read_spectra(start, count, &spectra);
      dim = spectrum_feature_dim(opt.spectrum);
      by_file_row.resize(static_cast<size_t>(n * dim));
      bad = spectrum_features(spectra, opt.spectrum, by_file_row.data() + start * dim);
      dataset = "spectrum_flux";
    }
    if (bad >= 0)
      throw FormatError("object '" + p.catalog.ids[start + bad] + "' (row " + std::to_string(start + bad) +
                        ") in '" + p.file.path + "': dataset '" + dataset +
                        "' has NaN/Inf values in pixels its mask marks usable, or no usable pixel at all");
    progress->add(count);
  }
  if (set->dim == 0) {
    set->dim = dim;
    set->first_file = p.file.path;
  } else if (set->dim != dim) {
    throw FormatError("'" + p.file.path + "' gives " + std::to_string(dim) + " features per object but '" +
                      set->first_file + "' gives " + std::to_string(set->dim) +
                      " (different band count?): one baseline space needs one input shape");
  }
  for (int64_t pos = 0; pos < n; ++pos) {
    const float* src = by_file_row.data() + p.order[pos] * dim;
    set->features.insert(set->features.end(), src, src + dim);
    set->rows.push_back(p.first_row + pos);
  }
}

}  // namespace

BuildReport build_store(const BuildOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.batch_size <= 0) throw InvalidArgument("--batch-size must be >= 1, got " + std::to_string(opt.batch_size));
  if (opt.dim <= 0) throw InvalidArgument("--dim must be >= 1, got " + std::to_string(opt.dim));
  const std::vector<SourceFile> found = discover_files(opt.roots);
  if (found.empty()) {
    std::string roots;
    for (const auto& r : opt.roots) roots += (roots.empty() ? "'" : ", '") + r + "'";
    throw NotFound("no *.hdf5 or *.h5 files under " + roots);
  }

  // Pass 1: open and validate every file, read ids and positions.
  std::vector<Partition> parts;
  int64_t to_embed = 0;
  for (const SourceFile& f : found) {
    RowFileReader reader(f);
    parts.push_back(load_partition(reader));
    if (parts.back().modality != Modality::kNone) to_embed += reader.rows();
  }
  check_duplicates(parts);

  StoreWriter writer(opt.store);
  BuildReport report;
  report.files = static_cast<int64_t>(parts.size());
  for (Partition& p : parts) {
    const int64_t file_id = writer.add_file(p.file, p.modality, static_cast<int64_t>(p.order.size()));
    std::vector<NewObject> objs;
    objs.reserve(p.order.size());
    for (int64_t i : p.order) {
      objs.push_back(NewObject{p.catalog.ids[i], p.file.dataset, p.file.subset, p.catalog.ra[i], p.catalog.dec[i],
                               p.catalog.healpix[i], p.fine[i], file_id, i, p.modality});
    }
    p.first_row = writer.add_objects(objs);
    report.objects += static_cast<int64_t>(objs.size());
    if (p.modality == Modality::kNone) report.without_modality += static_cast<int64_t>(objs.size());
  }

  // Pass 2: features per modality, in store row order.
  std::map<Modality, FeatureSet> sets;
  {
    Progress progress("encoding", to_embed, opt.progress);
    for (const Partition& p : parts) {
      if (p.modality == Modality::kNone) continue;
      RowFileReader reader(p.file);  // reopened: a tree may hold more files than fit open at once
      embed_partition(reader, p, opt, &sets[p.modality], &progress);
    }
    progress.finish();
  }

  // Fit the baseline per modality and write each space.
  for (auto& [modality, set] : sets) {
    const int64_t n = static_cast<int64_t>(set.rows.size());
    const std::string name = modality_name(modality);
    if (n < 2)
      throw InvalidArgument("space '" + name + "' has " + std::to_string(n) +
                            " object(s); the baseline encoder needs at least 2 to fit its PCA");
    const PcaModel pca = fit_pca(set.features.data(), n, set.dim, opt.dim);
    std::vector<float> vectors(static_cast<size_t>(n * pca.output_dim));
    project_pca(pca, set.features.data(), n, vectors.data());
    SpaceInfo info;
    info.name = name;
    info.modality = name;
    info.model = "baseline-pca";
    info.version = "1";
    info.dim = pca.output_dim;
    writer.add_space(info, set.rows, vectors.data(), serialize_pca(pca));
    report.space_counts[name] = n;
    report.space_dims[name] = pca.output_dim;
  }
  writer.commit();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

void print_build_report(const BuildReport& r, const std::string& store, std::ostream& out) {
  out << "store " << store << ": " << r.objects << " objects from " << r.files << " files in "
      << static_cast<int64_t>(r.seconds * 1000) / 1000.0 << " s\n";
  for (const auto& [name, count] : r.space_counts)
    out << "  space " << name << ": " << count << " vectors, dim " << r.space_dims.at(name) << " (baseline-pca)\n";
  if (r.without_modality > 0)
    out << "  " << r.without_modality
        << " objects have no image or spectrum this version can embed: catalogued, not searchable by similarity\n";
}

}  // namespace mmu
