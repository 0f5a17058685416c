#include "mmu/build.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <unordered_map>

#include <filesystem>
#include <set>

#include "file_util.h"
#include "mmu/error.h"
#include "mmu/model_package.h"
#include "model_stage.h"
#include "mmu/mmu_files.h"
#include "mmu/pca.h"
#include "mmu/progress.h"
#include "mmu/sky.h"
#include "mmu/store.h"

namespace mmu {

namespace {

// One file's objects in store order (sorted by fine HEALPix key), with their
// features in the same order.
struct Partition {
  SourceFile file;
  Modality modality = Modality::kNone;
  FileCatalog catalog;
  std::vector<ScalarColumn> values;  // catalog columns for --where, by file row
  std::vector<int64_t> order;   // store position -> file row
  std::vector<int64_t> fine;    // by file row
  int64_t feature_dim = 0;
  std::vector<float> features;  // order.size() x feature_dim
};

struct FeatureSet {
  int64_t dim = 0;
  std::vector<float> features;  // rows x dim
  std::vector<int64_t> rows;    // catalog row of each feature row
  std::string first_file;       // for dimension-mismatch messages
};

const char* data_dataset(Modality m) {
  switch (m) {
    case Modality::kImage: return "image_array";
    case Modality::kSpectrum: return "spectrum_flux";
    case Modality::kLightCurve: return "lightcurve / mag";
    case Modality::kXp: return "coeff";
    default: return "";
  }
}

// Features of rows [start, start+count) into out; returns -1 or the first bad row's offset.
int64_t batch_features(const RowFileReader& reader, const BuildOptions& opt, int64_t start, int64_t count,
                       std::vector<float>* out, int64_t* dim) {
  switch (reader.modality()) {
    case Modality::kImage: {
      ImageBatch b;
      reader.read_images(start, count, &b);
      *dim = image_feature_dim(opt.image);
      out->resize(static_cast<size_t>(count * *dim));
      return image_features(b, opt.image, out->data());
    }
    case Modality::kSpectrum: {
      SpectrumBatch b;
      reader.read_spectra(start, count, &b);
      *dim = spectrum_feature_dim(opt.spectrum);
      out->resize(static_cast<size_t>(count * *dim));
      return spectrum_features(b, opt.spectrum, out->data());
    }
    case Modality::kLightCurve: {
      LightCurveBatch b;
      reader.read_light_curves(start, count, &b);
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

// Reads one file whole: catalog, store order, features. Throws mmu::Error
// naming the file, dataset and object at fault.
Partition load_partition(const RowFileReader& reader, const BuildOptions& opt, Progress* progress) {
  Partition p;
  p.file = reader.file();
  p.modality = reader.modality();
  p.catalog = reader.read_catalog();
  p.values = reader.read_scalar_columns();
  const int64_t n = reader.rows();
  p.fine.resize(n);
  for (int64_t i = 0; i < n; ++i) p.fine[i] = healpix_fine(p.catalog.ra[i], p.catalog.dec[i]);
  p.order.resize(n);
  std::iota(p.order.begin(), p.order.end(), 0);
  std::stable_sort(p.order.begin(), p.order.end(), [&](int64_t a, int64_t b) { return p.fine[a] < p.fine[b]; });
  if (p.modality == Modality::kNone) return p;

  std::vector<float> by_file_row, batch;
  const int64_t batch_size = opt.batch_size > 0 ? opt.batch_size : 64;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t count = std::min(batch_size, n - start);
    int64_t dim = 0;
    const int64_t bad = batch_features(reader, opt, start, count, &batch, &dim);
    if (bad >= 0)
      throw FormatError("object '" + p.catalog.ids[start + bad] + "' (row " + std::to_string(start + bad) +
                        ") in '" + p.file.path + "': dataset '" + data_dataset(p.modality) +
                        "' has NaN/Inf values where its mask says usable, or no usable value at all");
    p.feature_dim = dim;
    by_file_row.insert(by_file_row.end(), batch.begin(), batch.end());
    progress->add(count);
  }
  p.features.resize(by_file_row.size());
  for (int64_t pos = 0; pos < n; ++pos)
    std::copy_n(by_file_row.data() + p.order[pos] * p.feature_dim, p.feature_dim,
                p.features.data() + pos * p.feature_dim);
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

}  // namespace

BuildReport build_store(const BuildOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.batch_size < 0) throw InvalidArgument("--batch-size must be >= 1 (or 0 for automatic), got " + std::to_string(opt.batch_size));
  if (opt.dim <= 0) throw InvalidArgument("--dim must be >= 1, got " + std::to_string(opt.dim));
  const std::vector<SourceFile> found = discover_files(opt.roots);
  if (found.empty()) {
    std::string roots;
    for (const auto& r : opt.roots) roots += (roots.empty() ? "'" : ", '") + r + "'";
    throw NotFound("no *.hdf5 or *.h5 files under " + roots);
  }
  BuildReport report;

  // Model packages are checked (card, hash, a probe batch) before any work,
  // so a bad package fails the build with nothing written.
  std::vector<ModelCard> cards;
  std::vector<std::unique_ptr<ModelEncoder>> encoders;
  std::set<std::string> model_spaces;
  for (const std::string& dir : opt.models) {
    cards.push_back(load_model_card(dir));
    if (!model_spaces.insert(cards.back().space_name()).second)
      throw InvalidArgument("--model given twice for " + cards.back().space_name() + " ('" + dir + "')");
    encoders.push_back(ModelEncoder::load(cards.back(), opt.threads, opt.device));
  }

  // Validate every file first (cheap: metadata only) so a bad file fails the
  // build before any slow work, and to size the progress line.
  std::vector<SourceFile> good;
  int64_t total = 0;
  std::vector<int64_t> model_files(cards.size(), 0);
  std::vector<std::string> model_misfit(cards.size());
  std::map<std::string, int64_t> spectrum_lengths;
  for (const SourceFile& f : found) {
    try {
      RowFileReader reader(f);
      total += reader.modality() == Modality::kNone ? 0 : reader.rows();
      for (size_t c = 0; c < cards.size(); ++c) {
        const ModelCard& card = cards[c];
        if (modality_name(reader.modality()) != card.modality) continue;
        const int64_t len = reader.spectrum_length();
        spectrum_lengths[f.path] = len;
        if (model_accepts(card, len)) {
          ++model_files[c];
        } else if (model_misfit[c].empty()) {
          model_misfit[c] = "'" + f.path + "' has spectra of length " + std::to_string(len) + ", which give " +
                            std::to_string(specformer_tokens(len, card.specformer)) + " tokens, not " +
                            std::to_string(card.input_shape[0]);
        }
      }
      good.push_back(f);
    } catch (const Error& e) {
      if (!opt.skip_bad) throw;
      report.skipped.push_back(e.what());
    }
  }

  for (size_t c = 0; c < cards.size(); ++c)
    if (model_files[c] == 0)
      throw InvalidArgument("model '" + cards[c].space_name() + "' takes " + cards[c].modality + "s, and no input file " +
                            (model_misfit[c].empty() ? std::string("has any") : "fits it: " + model_misfit[c]));

  // Read catalogs and features, file by file (one open file at a time).
  std::vector<Partition> parts;
  {
    Progress progress("encoding", total, opt.progress);
    for (const SourceFile& f : good) {
      try {
        RowFileReader reader(f);
        parts.push_back(load_partition(reader, opt, &progress));
      } catch (const Error& e) {
        if (!opt.skip_bad) throw;
        report.skipped.push_back(e.what());
      }
    }
    progress.finish();
  }
  if (parts.empty()) throw FormatError("every input file was bad; nothing to build");
  check_duplicates(parts);

  std::unique_ptr<Store> previous;
  {
    std::error_code ec;
    if (std::filesystem::exists(std::filesystem::path(opt.store) / "CURRENT", ec)) previous = Store::open(opt.store);
  }
  StoreWriter writer(opt.store);
  const std::string resume_dir = (std::filesystem::path(opt.store) / "resume").string();
  if (!opt.resume) {
    std::error_code ec;
    std::filesystem::remove_all(resume_dir, ec);
  }
  report.files = static_cast<int64_t>(parts.size());
  std::map<Modality, FeatureSet> sets;
  std::vector<int64_t> first_rows;
  std::vector<std::string> signature;
  for (Partition& p : parts) {
    const int64_t file_id = writer.add_file(p.file, p.modality, static_cast<int64_t>(p.order.size()));
    std::vector<NewObject> objs;
    objs.reserve(p.order.size());
    for (int64_t i : p.order)
      objs.push_back(NewObject{p.catalog.ids[i], p.file.dataset, p.file.subset, p.catalog.ra[i], p.catalog.dec[i],
                               p.catalog.healpix[i], p.fine[i], file_id, i, p.modality});
    const int64_t first_row = writer.add_objects(objs);
    first_rows.push_back(first_row);
    std::vector<int64_t> row_of_file_row(p.order.size());
    for (size_t k = 0; k < p.order.size(); ++k) row_of_file_row[p.order[k]] = first_row + static_cast<int64_t>(k);
    for (const ScalarColumn& column : p.values) writer.add_values(row_of_file_row, column);
    p.values = {};
    signature.push_back(std::filesystem::absolute(p.file.path).lexically_normal().string() + " " +
                        std::to_string(p.file.size) + " " + std::to_string(p.file.mtime) + " " +
                        std::to_string(objs.size()));
    report.objects += static_cast<int64_t>(objs.size());
    if (p.modality == Modality::kNone) {
      report.without_modality += static_cast<int64_t>(objs.size());
      continue;
    }
    FeatureSet& set = sets[p.modality];
    if (set.dim == 0) {
      set.dim = p.feature_dim;
      set.first_file = p.file.path;
    } else if (set.dim != p.feature_dim) {
      throw FormatError("'" + p.file.path + "' gives " + std::to_string(p.feature_dim) + " features per object but '" +
                        set.first_file + "' gives " + std::to_string(set.dim) + ": one space needs one input shape");
    }
    set.features.insert(set.features.end(), p.features.begin(), p.features.end());
    for (size_t k = 0; k < objs.size(); ++k) set.rows.push_back(first_row + static_cast<int64_t>(k));
    p.features = {};  // free as we go
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

  // Model spaces: one per package, embeddings in the same store row order.
  std::vector<ModelPartition> mparts;
  for (const Partition& p : parts) mparts.push_back({p.file, p.modality, p.order, p.catalog.ids, spectrum_lengths[p.file.path]});
  for (size_t c = 0; c < cards.size(); ++c) {
    const ModelCard& card = cards[c];
    ModelStageOptions mopt;
    mopt.batch_size = opt.batch_size;
    mopt.threads = opt.threads;
    mopt.resume_dir = resume_dir;
    mopt.progress = opt.progress;
    std::vector<size_t> used;
    int64_t resumed = 0;
    int64_t batch_used = 0;
    const auto t_model = std::chrono::steady_clock::now();
    const std::vector<float> vectors = run_model_stage(card, *encoders[c], mparts, mopt, &used, &resumed, &batch_used);
    report.model_seconds[card.space_name()] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_model).count();
    report.model_batch[card.space_name()] = batch_used;
    for (const ModelPartition& mp : mparts)
      if (modality_name(mp.modality) == card.modality && !model_accepts(card, mp.spectrum_length))
        report.model_skips.push_back(card.space_name() + ": '" + mp.file.path + "' (spectra of length " +
                                     std::to_string(mp.spectrum_length) + " do not fit its input)");
    report.resumed_objects += resumed;
    std::vector<int64_t> rows;
    for (size_t i : used)
      for (size_t k = 0; k < parts[i].order.size(); ++k) rows.push_back(first_rows[i] + static_cast<int64_t>(k));
    if (rows.empty()) throw InvalidArgument("model '" + card.space_name() + "' takes " + card.modality + "s, and no input file has any");
    SpaceInfo info;
    info.name = card.space_name();
    info.modality = card.modality;
    info.model = card.name;
    info.version = card.version;
    info.dim = card.output_dim;
    info.sha256 = card.sha256;
    writer.add_space(info, rows, vectors.data(), files::read_all((std::filesystem::path(card.dir) / "model.json").string()));
    report.space_counts[info.name] = static_cast<int64_t>(rows.size());
    report.space_dims[info.name] = card.output_dim;
  }

  // Spaces of earlier builds (other models) survive a rebuild of the same
  // files: the catalog is then identical, so their vectors still line up.
  if (previous && previous->files_signature() == signature) {
    for (const SpaceInfo& s : previous->spaces()) {
      if (report.space_counts.count(s.name)) continue;
      writer.copy_space(*previous, s.name);
      report.kept_spaces.push_back(s.name);
    }
  }
  previous.reset();
  writer.commit();
  {
    std::error_code ec;
    std::filesystem::remove_all(resume_dir, ec);
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

void print_build_report(const BuildReport& r, const std::string& store, std::ostream& out) {
  out << "store " << store << ": " << r.objects << " objects from " << r.files << " files in "
      << static_cast<int64_t>(r.seconds * 1000) / 1000.0 << " s\n";
  for (const auto& [name, count] : r.space_counts) {
    out << "  space " << name << ": " << count << " vectors, dim " << r.space_dims.at(name);
    if (r.model_seconds.count(name))
      out << ", encoded in " << static_cast<int64_t>(r.model_seconds.at(name) * 1000) / 1000.0 << " s (batch "
          << r.model_batch.at(name) << ")\n";
    else
      out << " (baseline-pca)\n";
  }
  for (const auto& name : r.kept_spaces) out << "  space " << name << ": kept from the previous build (same files)\n";
  if (r.resumed_objects > 0) out << "  resumed: " << r.resumed_objects << " model embeddings taken from the interrupted build\n";
  for (const auto& why : r.skipped) out << "  skipped (--skip-bad): " << why << "\n";
  for (const auto& why : r.model_skips) out << "  not in model space " << why << "\n";
  if (r.without_modality > 0)
    out << "  " << r.without_modality
        << " objects have no modality this version can embed (image, spectrum, light curve, XP): catalogued, not searchable by similarity\n";
}

}  // namespace mmu
