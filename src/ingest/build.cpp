#include "mmu/build.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <unordered_map>

#include <filesystem>
#include <set>

#include "base/file_util.h"
#include "base/finite.h"
#include "mmu/error.h"
#include "mmu/model_package.h"
#include "ingest/baseline_fit.h"
#include "ingest/cells.h"
#include "ingest/fit_dir.h"
#include "ingest/model_stage.h"
#include "ingest/partition.h"
#include "mmu/mmu_files.h"
#include "mmu/pca.h"
#include "mmu/progress.h"
#include "mmu/sky.h"
#include "mmu/space_index.h"
#include "mmu/store.h"
#include "mmu/text.h"
#include "store/layout.h"

namespace mmu {

namespace {


// Which files of the previous store a build reuses as they are: same path,
// size, modification time, dataset and subset.
struct Incremental {
  struct Entry {
    SourceFile file;
    bool reused = false;
    StoredFile old;  // when reused
  };
  std::vector<Entry> entries;  // discovery order
  std::vector<StoredFile> reused;
  std::vector<std::string> removed;  // files of the previous store not found now
};

Incremental plan_incremental(const Store* previous, const std::vector<SourceFile>& found, bool refit) {
  Incremental inc;
  std::map<std::string, StoredFile> old;
  if (previous)
    for (const StoredFile& f : previous->files()) old[f.file.path] = f;
  std::set<std::string> seen;
  for (const SourceFile& f : found) {
    Incremental::Entry e;
    e.file = f;
    const std::string path = std::filesystem::absolute(f.path).lexically_normal().string();
    seen.insert(path);
    auto it = old.find(path);
    if (!refit && it != old.end() && it->second.file.size == f.size && it->second.file.mtime == f.mtime &&
        it->second.file.dataset == f.dataset && it->second.file.subset == f.subset) {
      e.reused = true;
      e.old = it->second;
      inc.reused.push_back(it->second);
    }
    inc.entries.push_back(e);
  }
  for (const auto& [path, f] : old)
    if (!seen.count(path)) inc.removed.push_back(path);
  return inc;
}

// Old catalog row -> new row, for the objects of reused files.
class RowMap {
 public:
  void add(int64_t old_first, int64_t new_first, int64_t n) {
    spans_.push_back({old_first, new_first, n});
    std::sort(spans_.begin(), spans_.end(), [](const Span& a, const Span& b) { return a.old_first < b.old_first; });
  }
  int64_t map(int64_t old_row) const {  // -1 when the row's file is gone or changed
    auto it = std::upper_bound(spans_.begin(), spans_.end(), old_row,
                               [](int64_t r, const Span& s) { return r < s.old_first; });
    if (it == spans_.begin()) return -1;
    --it;
    return old_row < it->old_first + it->n ? it->new_first + (old_row - it->old_first) : -1;
  }
  bool identity() const {
    return std::all_of(spans_.begin(), spans_.end(), [](const Span& s) { return s.old_first == s.new_first; });
  }

 private:
  struct Span {
    int64_t old_first, new_first, n;
  };
  std::vector<Span> spans_;
};

// One space's vectors for the new catalog: rows and their vectors, in any order.
struct SpaceVectors {
  int64_t dim = 0;
  std::vector<int64_t> rows;
  std::vector<float> vectors;
  int64_t carried = 0;  // how many came unchanged from the previous store
};

bool has_space(const Store& store, const std::string& name) {
  const auto spaces = store.spaces();
  return std::any_of(spaces.begin(), spaces.end(), [&](const SpaceInfo& s) { return s.name == name; });
}

// The previous vectors of space `name` whose objects are kept, at their new rows.
SpaceVectors carried_vectors(const Store& old, const std::string& name, const RowMap& map) {
  old.verify_space_files(name);  // a damaged file must not be carried into the new generation
  SpaceVectors out;
  out.dim = old.space(name).dim;
  std::vector<int64_t> vrows;
  for (const auto& [vrow, row] : old.space_rows(name)) {
    const int64_t r = map.map(row);
    if (r < 0) continue;
    vrows.push_back(vrow);
    out.rows.push_back(r);
  }
  out.vectors = old.vectors_at(name, vrows);
  out.carried = static_cast<int64_t>(out.rows.size());
  return out;
}

// Spectra's empty bins are filled by gappy PCA before the projection; a fit
// that fails names the object and its file.
void append_projection(const PcaModel& pca, const FeatureSet& set, SpaceVectors* out) {
  const int64_t n = static_cast<int64_t>(set.rows.size());
  out->dim = pca.output_dim;
  const size_t at = out->vectors.size();
  out->vectors.resize(at + static_cast<size_t>(n * pca.output_dim));
  if (set.weights.empty()) {
    project_pca(pca, set.features.data(), n, out->vectors.data() + at);
  } else {
    std::vector<float> features(set.features.size());
    const int64_t bad = gappy_spectrum_features(pca, set.features.data(), set.weights.data(), n, features.data());
    if (bad >= 0)
      throw FormatError(set.where.at(static_cast<size_t>(bad)) + ": its spectrum's gappy PCA fit over its usable bins failed "
                        "(too few usable bins, or extreme flux/ivar values)");
    project_pca(pca, features.data(), n, out->vectors.data() + at);
  }
  out->rows.insert(out->rows.end(), set.rows.begin(), set.rows.end());
}

// Writes a space in row order; one that is exactly the previous store's
// (same rows, nothing new) is hard-linked instead, index included.
void write_space(StoreWriter& writer, const Store* previous, const SpaceInfo& info, const SpaceVectors& v,
                 const std::string& fit_blob, const RowMap& map, BuildReport* report) {
  const int64_t n = static_cast<int64_t>(v.rows.size());
  report->space_counts[info.name] = n;
  report->space_dims[info.name] = v.dim;
  if (previous && v.carried == n && map.identity() && has_space(*previous, info.name) &&
      previous->space(info.name).count == n) {
    writer.copy_space(*previous, info.name);
    report->kept_spaces.push_back(info.name);
    return;
  }
  SpaceInfo row = info;
  row.dim = v.dim;
  if (v.carried > 0 && previous) row.created = previous->space(info.name).created;
  // Rows already in order (every new build's) are written as they are: no second copy of the vectors.
  if (std::is_sorted(v.rows.begin(), v.rows.end())) return writer.add_space(row, v.rows, v.vectors.data(), fit_blob);
  std::vector<size_t> order(v.rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v.rows[a] < v.rows[b]; });
  std::vector<int64_t> rows(order.size());
  std::vector<float> vectors(v.vectors.size());
  for (size_t i = 0; i < order.size(); ++i) {
    rows[i] = v.rows[order[i]];
    std::copy_n(v.vectors.begin() + order[i] * v.dim, v.dim, vectors.begin() + i * v.dim);
  }
  writer.add_space(row, rows, vectors.data(), fit_blob);
}

// What the model stage needs of a reused file, from the previous catalog.
ModelPartition partition_from_catalog(const Store& old, const StoredFile& f, int64_t spectrum_length) {
  std::vector<int64_t> rows(static_cast<size_t>(f.n_objects));
  std::iota(rows.begin(), rows.end(), f.first_row);
  ModelPartition mp;
  mp.file = f.file;
  mp.modality = Modality::kNone;
  for (Modality m : {Modality::kImage, Modality::kSpectrum, Modality::kLightCurve, Modality::kXp})
    if (f.modality == modality_name(m)) mp.modality = m;
  mp.ids.resize(rows.size());
  for (const CatalogRow& r : old.rows(rows)) {
    mp.order.push_back(r.index_in_file);
    mp.ids.at(static_cast<size_t>(r.index_in_file)) = r.object_id;
  }
  mp.spectrum_length = spectrum_length;
  return mp;
}

// Ids must be unique within a survey: a query by id must name one object.
// Files are taken in discovery order, after the reused files' objects; a file
// repeating an id already taken is reported in `clashes` (path -> why) and its
// objects are not taken.
std::map<std::string, std::string> find_duplicate_ids(const std::vector<Partition*>& parts, const Store* previous,
                                                      const std::vector<StoredFile>& reused) {
  std::unordered_map<std::string, std::string> seen;  // survey + id -> where
  if (!parts.empty() && previous)
    for (const StoredFile& f : reused) {
      std::vector<int64_t> rows(static_cast<size_t>(f.n_objects));
      std::iota(rows.begin(), rows.end(), f.first_row);
      for (const CatalogRow& r : previous->rows(rows))
        seen.emplace(r.survey + '\n' + r.object_id, "row " + std::to_string(r.index_in_file) + " of '" + f.file.path + "'");
    }
  std::map<std::string, std::string> clashes;
  for (const Partition* p : parts) {
    std::string clash;
    for (int64_t i = 0; i < static_cast<int64_t>(p->catalog.ids.size()) && clash.empty(); ++i) {
      auto it = seen.find(p->file.dataset + '\n' + p->catalog.ids[i]);
      if (it != seen.end())
        clash = "object_id '" + p->catalog.ids[i] + "' appears twice in survey '" + p->file.dataset + "': " +
                it->second + " and row " + std::to_string(i) + " of '" + p->file.path + "'";
    }
    if (!clash.empty()) {
      clashes.emplace(p->file.path, clash);
      continue;
    }
    for (int64_t i = 0; i < static_cast<int64_t>(p->catalog.ids.size()); ++i)
      seen.emplace(p->file.dataset + '\n' + p->catalog.ids[i], "row " + std::to_string(i) + " of '" + p->file.path + "'");
  }
  return clashes;
}

// What a build carries from one step to the next, in the order the steps fill it.
struct BuildState {
  explicit BuildState(const BuildOptions& o) : opt(o) {}
  const BuildOptions& opt;  // the caller's, alive for the whole build
  BuildReport report;
  std::vector<SourceFile> found;  // discovery order
  std::vector<ModelCard> cards;   // one per --model, with its loaded encoder
  std::vector<std::unique_ptr<ModelEncoder>> encoders;
  std::unique_ptr<Store> previous;  // the store being rebuilt, if there is one
  Incremental inc;
  std::vector<SourceFile> good;  // new or changed files that passed validation
  int64_t to_encode = 0;         // their objects with a modality, for the progress line
  std::map<std::string, int64_t> spectrum_lengths;  // by path, for files a model takes
  std::map<std::string, Partition> loaded;          // by path
  std::unique_ptr<StoreLock> lock;  // taken first, handed to the writer
  std::unique_ptr<StoreWriter> writer;
  std::string resume_dir;
  // Filled by the catalog step, read by the space steps.
  std::map<std::string, FeatureSet> sets;  // by baseline space
  // With --fit: the fit folder, its PCA and fit.bin bytes per space, and the
  // vectors projected as files were read (no features kept).
  std::unique_ptr<FitManifest> fit;
  std::map<std::string, PcaModel> fits;
  std::map<std::string, std::string> fit_blobs;
  std::map<std::string, SpaceVectors> projected;
  CellSelection cells;  // --shard / --cells
  RowMap row_map;
  std::vector<ModelPartition> mparts;  // every file with its first row, for the model stage
  std::vector<int64_t> mpart_first_row;
  std::vector<bool> mpart_fresh;
  std::set<std::string> written;  // spaces written so far
};

// Between steps and files: an interrupted build unwinds from here, so the
// writer's destructor removes the unfinished generation.
void stop_if_cancelled(const BuildState& b) {
  if (b.opt.cancel && b.opt.cancel->load())
    throw InvalidArgument("build of store '" + b.opt.store + "' interrupted; the store is as it was before");
}

void check_options(const BuildOptions& opt) {
  if (opt.batch_size < 0) throw InvalidArgument("--batch-size must be >= 1 (or 0 for automatic), got " + std::to_string(opt.batch_size));
  if (opt.dim <= 0) throw InvalidArgument("--dim must be >= 1, got " + std::to_string(opt.dim));
}

void find_input_files(BuildState& b) {
  std::vector<UnusableInput> unusable;
  b.found = discover_files(b.opt.roots, &unusable);
  for (const UnusableInput& u : unusable) {
    if (!b.opt.skip_bad) throw FormatError(u.why + " (--skip-bad leaves it out)");
    b.report.skipped.push_back(u.why);
  }
  if (b.found.empty()) {
    std::string roots;
    for (const auto& r : b.opt.roots) roots += (roots.empty() ? "'" : ", '") + r + "'";
    throw NotFound("no *.hdf5 or *.h5 files under " + roots);
  }
  b.cells = parse_cell_selection(b.opt.shard, b.opt.cells);
  if (b.cells.active()) b.found = select_cells(b.found, b.cells, &b.report.warnings);
}

// --fit: every baseline space is projected with the fit folder's PCA, checked
// against the manifest's SHA-256, instead of one fitted on this build's files.
void load_fit(BuildState& b) {
  if (b.opt.fit_dir.empty()) return;
  b.fit = std::make_unique<FitManifest>(read_fit_manifest(b.opt.fit_dir));
  for (const FitSpace& s : b.fit->spaces) {
    const std::string blob = read_fit_blob(*b.fit, s);
    b.fits[s.name] = parse_pca(blob, fit_blob_path(b.fit->dir, s.name));
    b.fit_blobs[s.name] = blob;
  }
}

// Model packages are checked (card, hash, a probe batch) before any work,
// so a bad package fails the build with nothing written.
void load_models(BuildState& b) {
  std::set<std::string> model_spaces;
  for (const std::string& dir : b.opt.models) {
    b.cards.push_back(load_model_card(dir));
    if (!model_spaces.insert(b.cards.back().space_name()).second)
      throw InvalidArgument("--model given twice for " + b.cards.back().space_name() + " ('" + dir + "')");
    b.encoders.push_back(ModelEncoder::load(b.cards.back(), b.opt.threads, b.opt.device));
  }
}

void plan_against_previous(BuildState& b) {
  {
    std::error_code ec;
    if (std::filesystem::exists(layout::current_file(b.opt.store), ec)) b.previous = Store::open(b.opt.store);
  }
  b.inc = plan_incremental(b.previous.get(), b.found, b.opt.refit);
  b.report.reused_files = static_cast<int64_t>(b.inc.reused.size());
  b.report.removed_files = b.inc.removed;
}

// Validate every new or changed file first (cheap: metadata only) so a bad
// file fails the build before any slow work, and to size the progress line.
void validate_files(BuildState& b) {
  std::vector<int64_t> model_files(b.cards.size(), 0);
  std::vector<std::string> model_misfit(b.cards.size());
  for (const Incremental::Entry& e : b.inc.entries) {
    try {
      MmuFileReader reader(e.file);
      if (!e.reused && reader.rows() == 0) {
        // Nothing in it can be wrong, and nothing of it can be stored: said, not fatal.
        b.report.warnings.push_back("'" + e.file.path + "' holds no objects (0 rows in '" + reader.columns().id +
                                    "'); left out");
        continue;
      }
      if (!e.reused) b.to_encode += reader.modality() == Modality::kNone ? 0 : reader.rows();
      // A shard fitting its own PCA would make vectors no other shard's can be compared with.
      if (b.cells.active() && !b.fit && reader.modality() != Modality::kNone)
        throw InvalidArgument("--" + std::string(b.cells.shards > 0 ? "shard" : "cells") + " needs --fit FITDIR (made by "
                              "`mmu-index fit`): '" + e.file.path + "' has " + modality_name(reader.modality()) +
                              "s, whose baseline space each shard would otherwise fit on its own files, so the shards' "
                              "spaces would differ");
      for (size_t c = 0; c < b.cards.size(); ++c) {
        const ModelCard& card = b.cards[c];
        if (modality_name(reader.modality()) != card.modality) continue;
        const int64_t len = reader.spectrum_length();
        b.spectrum_lengths[e.file.path] = len;
        if (model_accepts(card, len)) {
          ++model_files[c];
        } else if (model_misfit[c].empty()) {
          model_misfit[c] = "'" + e.file.path + "' has spectra of length " + std::to_string(len) + ", which give " +
                            std::to_string(specformer_tokens(len, card.specformer)) + " tokens, not " +
                            std::to_string(card.input_shape[0]);
        }
      }
      if (!e.reused) b.good.push_back(e.file);
    } catch (const Error& e2) {
      if (!b.opt.skip_bad || e.reused) throw;
      b.report.skipped.push_back(e2.what());
    }
  }

  for (size_t c = 0; c < b.cards.size(); ++c)
    if (model_files[c] == 0)
      throw InvalidArgument("model '" + b.cards[c].space_name() + "' takes " + b.cards[c].modality +
                            "s, and no input file " +
                            (model_misfit[c].empty() ? std::string("has any") : "fits it: " + model_misfit[c]));
}

// One line per survey and band set: the bands used, those left out, the pixel scale and its source.
void note_image_bands(const MmuFileReader& reader, BuildReport* report) {
  const ImageBands& ib = reader.image_bands();
  std::string used, unused;
  for (int64_t k : ib.used) used += (used.empty() ? "" : ", ") + ib.names[k];
  for (size_t k = 0; k < ib.names.size(); ++k)
    if (std::find(ib.used.begin(), ib.used.end(), static_cast<int64_t>(k)) == ib.used.end())
      unused += (unused.empty() ? "" : ", ") + ib.names[k];
  std::string line = reader.file().dataset + ": bands " + used + " -> space " + ib.space;
  if (!unused.empty()) line += " (not used: " + unused + ")";
  if (ib.names_from_survey) line += " (no image_band: the builder's order)";
  line += "; pixel scale " + text::format_double("%.4g", ib.pixel_scale) + "\"/px (" + ib.scale_source + ")";
  if (std::find(report->image_bands.begin(), report->image_bands.end(), line) == report->image_bands.end())
    report->image_bands.push_back(line);
}

// Read catalogs and features of the new or changed files (one open file at a time).
void read_new_files(BuildState& b) {
  {
    Progress progress("encoding", b.to_encode, b.opt.progress);
    for (const SourceFile& f : b.good) {
      stop_if_cancelled(b);
      try {
        MmuFileReader reader(f);
        Partition p = load_partition(reader, b.opt, &progress);
        if (b.fit && p.modality != Modality::kNone) {
          if (!b.fits.count(p.space))
            throw InvalidArgument("'" + f.path + "' feeds baseline space '" + p.space + "', which fit folder '" +
                                  b.fit->dir + "' has no fit for (it has: " + b.fit->space_names() +
                                  "); refit over roots that hold this file");
          const FitSpace& fs = *b.fit->find(p.space);
          if (fs.version != baseline_version(p.modality).version)
            throw InvalidArgument("space '" + p.space + "' of fit folder '" + b.fit->dir + "' was made by baseline-pca version " +
                                  fs.version + " and this mmu-index makes version " + baseline_version(p.modality).version +
                                  ": rerun `mmu-index fit`");
          p.vectors = project_partition(b.fits.at(p.space), p);
          release(p.features);  // the vectors are all a build with a fit keeps
          release(p.weights);
        }
        for (auto& w : padding_warnings(f.path, p.padding)) b.report.warnings.push_back(std::move(w));
        for (const auto& w : reader.warnings()) b.report.warnings.push_back(w);
        if (p.modality == Modality::kImage) note_image_bands(reader, &b.report);
        for (auto& w : p.catalog.warnings) b.report.warnings.push_back(std::move(w));
        b.loaded.emplace(f.path, std::move(p));
      } catch (const Error& e) {
        if (!b.opt.skip_bad) throw;
        b.report.skipped.push_back(e.what());
      }
    }
    progress.finish();
  }
  std::vector<Partition*> fresh;
  for (const Incremental::Entry& e : b.inc.entries)
    if (!e.reused && b.loaded.count(e.file.path)) fresh.push_back(&b.loaded.at(e.file.path));
  // --skip-bad leaves out the later of two files sharing an id, naming both.
  for (const auto& [path, why] : find_duplicate_ids(fresh, b.previous.get(), b.inc.reused)) {
    if (!b.opt.skip_bad) throw FormatError(why);
    b.report.skipped.push_back("'" + path + "' left out: " + why);
    b.loaded.erase(path);
  }
  if (b.loaded.empty() && b.inc.reused.empty()) {
    // The report is lost with the build: its warnings go into the message.
    std::string why;
    for (const std::string& w : b.report.warnings) why += "; " + w;
    throw FormatError((b.report.skipped.empty() ? "no input file holds any object" : "every input file was bad") +
                      why + "; nothing to build");
  }
}

// Before anything is read: a second build of the store fails at once (or
// waits), instead of after all its work.
void lock_store(BuildState& b) { b.lock = std::make_unique<StoreLock>(b.opt.store, b.opt.wait_for_lock); }

void open_writer(BuildState& b) {
  b.writer = std::make_unique<StoreWriter>(b.opt.store, std::move(b.lock));
  b.resume_dir = layout::resume_dir(b.opt.store);
  if (!b.opt.resume) {
    std::error_code ec;
    std::filesystem::remove_all(b.resume_dir, ec);
  }
}

// A reused file's objects copied from the previous catalog.
void copy_reused_file(BuildState& b, const Incremental::Entry& e) {
  const int64_t first = b.writer->copy_file(*b.previous, e.old);
  b.row_map.add(e.old.first_row, first, e.old.n_objects);
  b.report.objects += e.old.n_objects;
  b.report.reused_objects += e.old.n_objects;
  if (e.old.modality == modality_name(Modality::kNone)) b.report.without_modality += e.old.n_objects;
  b.mparts.push_back(partition_from_catalog(*b.previous, e.old, b.spectrum_lengths[e.file.path]));
  b.mpart_first_row.push_back(first);
  b.mpart_fresh.push_back(false);
}

// A new file's objects and catalog values added; its features join its modality's set.
void add_new_file(BuildState& b, Partition& p) {
  ++b.report.files_read;
  const int64_t file_id = b.writer->add_file(p.file, p.modality, static_cast<int64_t>(p.order.size()));
  std::vector<NewObject> objs;
  objs.reserve(p.order.size());
  for (int64_t i : p.order)
    objs.push_back(NewObject{p.catalog.ids[i], p.file.dataset, p.file.subset, p.catalog.ra[i], p.catalog.dec[i],
                             p.catalog.healpix[i], p.fine[i], file_id, i, p.modality});
  const int64_t first_row = b.writer->add_objects(objs);
  std::vector<int64_t> row_of_file_row(p.order.size());
  for (size_t k = 0; k < p.order.size(); ++k) row_of_file_row[p.order[k]] = first_row + static_cast<int64_t>(k);
  for (const ScalarColumn& column : p.values) b.writer->add_values(row_of_file_row, column);
  release(p.values);
  b.mparts.push_back({p.file, p.modality, p.order, p.catalog.ids, b.spectrum_lengths[p.file.path]});
  b.mpart_first_row.push_back(first_row);
  b.mpart_fresh.push_back(true);
  b.report.objects += static_cast<int64_t>(objs.size());
  if (p.modality == Modality::kNone) {
    b.report.without_modality += static_cast<int64_t>(objs.size());
    return;
  }
  std::vector<int64_t> rows(objs.size());
  for (size_t k = 0; k < objs.size(); ++k) rows[k] = first_row + static_cast<int64_t>(k);
  if (b.fit) {
    SpaceVectors& out = b.projected[p.space];
    out.dim = b.fits.at(p.space).output_dim;
    out.vectors.insert(out.vectors.end(), p.vectors.begin(), p.vectors.end());
    out.rows.insert(out.rows.end(), rows.begin(), rows.end());
    release(p.vectors);
    return;
  }
  add_features(&b.sets[p.space], p, rows);
  release(p.features);  // free as we go
  release(p.weights);
}

// The catalog, in discovery order: reused files copied, new ones added.
void write_catalog(BuildState& b) {
  for (const Incremental::Entry& e : b.inc.entries) {
    stop_if_cancelled(b);
    if (e.reused) {
      copy_reused_file(b, e);
      continue;
    }
    auto it = b.loaded.find(e.file.path);
    if (it == b.loaded.end()) continue;  // skipped (--skip-bad)
    add_new_file(b, it->second);
  }
  b.report.files = b.report.files_read + b.report.reused_files;
}

// --fit: each space's vectors were projected as its files were read; old
// vectors are kept only if the same fit (SHA-256) made them.
void write_fitted_spaces(BuildState& b) {
  for (auto& [name, projected] : b.projected) {
    stop_if_cancelled(b);
    const FitSpace& fs = *b.fit->find(name);
    SpaceInfo info;
    info.name = name;
    info.modality = fs.modality;
    info.model = "baseline-pca";
    info.version = fs.version;
    info.sha256 = fs.sha256;
    SpaceVectors out;
    if (b.previous && has_space(*b.previous, name)) out = carried_vectors(*b.previous, name, b.row_map);
    if (!out.rows.empty() && b.previous->space(name).sha256 != fs.sha256)
      throw InvalidArgument("space '" + name + "' of store '" + b.previous->path() + "' was made by another fit (SHA-256 " +
                            b.previous->space(name).sha256 + ", fit folder '" + b.fit->dir + "' has " + fs.sha256 +
                            "): rebuild it with --refit");
    if (out.rows.empty()) {
      out = std::move(projected);  // no second copy of the space's vectors
    } else {
      out.dim = projected.dim;
      out.vectors.insert(out.vectors.end(), projected.vectors.begin(), projected.vectors.end());
      out.rows.insert(out.rows.end(), projected.rows.begin(), projected.rows.end());
    }
    projected = SpaceVectors{};
    info.dim = out.dim;
    write_space(*b.writer, b.previous.get(), info, out, b.fit_blobs.at(name), b.row_map, &b.report);
    b.written.insert(name);
  }
}

// Baseline spaces: a space that existed keeps its fit (its old vectors stay
// valid and new objects are projected with the same PCA); a new one is fitted.
void write_baseline_spaces(BuildState& b) {
  if (b.fit) return write_fitted_spaces(b);
  for (auto& [name, set] : b.sets) {
    stop_if_cancelled(b);
    const Modality modality = set.modality;
    const int64_t n = static_cast<int64_t>(set.rows.size());
    SpaceInfo info;
    info.name = name;
    info.modality = modality_name(modality);
    info.model = "baseline-pca";
    const BaselineVersion current = baseline_version(modality);
    info.version = current.version;
    SpaceVectors out;
    std::string fit_blob;
    if (b.previous && has_space(*b.previous, name)) out = carried_vectors(*b.previous, name, b.row_map);
    if (!out.rows.empty()) {
      const std::string old_version = b.previous->space(name).version;
      if (old_version != info.version)
        throw FormatError("space '" + name + "' of store '" + b.previous->path() + "' was made by baseline-pca version " +
                          old_version + " and this mmu-index makes version " + info.version + " (" +
                          current.change + "): rebuild it with --refit");
      const std::string fit_path = layout::fit_file(b.previous->space_dir(name));
      fit_blob = b.previous->read_fit(name);
      const PcaModel pca = parse_pca(fit_blob, fit_path);
      if (pca.input_dim != set.dim)
        throw FormatError("space '" + name + "' of the store was fitted on " + std::to_string(pca.input_dim) +
                          " features per object, the new files give " + std::to_string(set.dim) +
                          ": rebuild it with --refit");
      append_projection(pca, set, &out);
    } else {
      if (n < 2) {
        // One object is a valid catalogue entry but no basis for a PCA: it stays
        // searchable by id, position and --where, not by similarity.
        b.report.warnings.push_back("space '" + name + "' left out: its only object ('" + set.first_file +
                                    "') cannot fit a PCA, which needs at least 2; the object is catalogued");
        continue;
      }
      const PcaModel pca = fit_space_pca(name, set, b.opt.dim);
      fit_blob = serialize_pca(pca);
      out.dim = pca.output_dim;
      append_projection(pca, set, &out);
    }
    info.dim = out.dim;
    write_space(*b.writer, b.previous.get(), info, out, fit_blob, b.row_map, &b.report);
    b.written.insert(name);
  }
}

// One package's space. Objects of reused files keep their vectors when the
// space existed; everything else goes through the model.
void write_model_space(BuildState& b, size_t c) {
  const ModelCard& card = b.cards[c];
  SpaceVectors out;
  out.dim = card.output_dim;
  // Old vectors are reused only if the same model file made them: a package
  // rebuilt under the same name and version has another hash.
  if (b.previous && has_space(*b.previous, card.space_name()) &&
      b.previous->space(card.space_name()).sha256 == card.sha256)
    out = carried_vectors(*b.previous, card.space_name(), b.row_map);
  const bool extend = !out.rows.empty();
  std::vector<ModelPartition> todo;
  std::vector<int64_t> todo_first;
  for (size_t i = 0; i < b.mparts.size(); ++i)
    if (!extend || b.mpart_fresh[i]) {
      todo.push_back(b.mparts[i]);
      todo_first.push_back(b.mpart_first_row[i]);
    }
  ModelStageOptions mopt;
  mopt.batch_size = b.opt.batch_size;
  mopt.threads = b.opt.threads;
  mopt.resume_dir = b.resume_dir;
  mopt.progress = b.opt.progress;
  std::vector<size_t> used;
  int64_t resumed = 0, batch_used = 0;
  const auto t_model = std::chrono::steady_clock::now();
  const bool any = std::any_of(todo.begin(), todo.end(), [&](const ModelPartition& mp) {
    return modality_name(mp.modality) == card.modality && model_accepts(card, mp.spectrum_length);
  });
  if (any) {
    const std::vector<float> vectors = run_model_stage(card, *b.encoders[c], todo, mopt, &used, &resumed, &batch_used);
    size_t at = 0;
    for (size_t i : used)
      for (size_t k = 0; k < todo[i].order.size(); ++k, ++at) {
        out.rows.push_back(todo_first[i] + static_cast<int64_t>(k));
        out.vectors.insert(out.vectors.end(), vectors.begin() + at * card.output_dim,
                           vectors.begin() + (at + 1) * card.output_dim);
      }
  }
  b.report.model_seconds[card.space_name()] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_model).count();
  b.report.model_batch[card.space_name()] = batch_used;
  for (const ModelPartition& mp : b.mparts)
    if (modality_name(mp.modality) == card.modality && !model_accepts(card, mp.spectrum_length))
      b.report.model_skips.push_back(card.space_name() + ": '" + mp.file.path + "' (spectra of length " +
                                     std::to_string(mp.spectrum_length) + " do not fit its input)");
  b.report.resumed_objects += resumed;
  if (out.rows.empty()) throw InvalidArgument("model '" + card.space_name() + "' takes " + card.modality + "s, and no input file has any");
  SpaceInfo info;
  info.name = card.space_name();
  info.modality = card.modality;
  info.model = card.name;
  info.version = card.version;
  info.dim = card.output_dim;
  info.sha256 = card.sha256;
  write_space(*b.writer, b.previous.get(), info, out,
              files::read_all((std::filesystem::path(card.dir) / "model.json").string()), b.row_map, &b.report);
  b.written.insert(info.name);
}

// Every other space of the previous store (a model not given this time, or
// a baseline modality with no new files) keeps the vectors of its kept
// objects; so do the cross-match links.
void carry_over_previous(BuildState& b) {
  if (!b.previous) return;
  for (const SpaceInfo& s : b.previous->spaces()) {
    if (b.written.count(s.name)) continue;
    SpaceVectors out = carried_vectors(*b.previous, s.name, b.row_map);
    if (out.rows.empty()) continue;  // none of its objects is left
    const std::string fit_blob = b.previous->read_fit(s.name);
    write_space(*b.writer, b.previous.get(), s, out, fit_blob, b.row_map, &b.report);
  }
  b.writer->copy_links(*b.previous, [&](int64_t old_row) { return b.row_map.map(old_row); });
}

// A default space the user chose (mmu-index default-space) stays the default
// while the space exists; the other modalities get the rule's at commit, so a
// newly added model space becomes its modality's default.
void keep_chosen_default_spaces(BuildState& b) {
  if (!b.previous) return;
  std::set<std::string> modalities;
  for (const SpaceInfo& s : b.previous->spaces()) modalities.insert(s.modality);
  for (const std::string& m : modalities) {
    const std::string name = b.previous->default_space(m);
    if (b.previous->default_space_chosen(m) && b.writer->has_space(name)) b.writer->set_default_space(m, name, true);
  }
}

// Spaces whose vectors changed get the index they had rebuilt (kept
// spaces carry theirs, hard-linked); a new or flat space of at least
// opt.sq8_from_rows vectors gets the sq8 copy, which answers as the flat scan.
std::vector<std::pair<std::string, IndexSpec>> indexes_to_rebuild(const BuildState& b) {
  std::vector<std::pair<std::string, IndexSpec>> reindex;
  for (const auto& [name, count] : b.report.space_counts) {
    const bool kept = std::count(b.report.kept_spaces.begin(), b.report.kept_spaces.end(), name) > 0;
    if (kept) continue;
    IndexSpec spec;
    if (b.previous && has_space(*b.previous, name)) spec = read_index_record(b.previous->space_dir(name)).spec;
    if (spec.kind == IndexKind::kFlat && gets_sq8_copy(count, b.opt.sq8_from_rows))
      spec.kind = IndexKind::kSq8;
    if (spec.kind != IndexKind::kFlat) reindex.emplace_back(name, spec);
  }
  return reindex;
}

void commit_build(BuildState& b) {
  b.previous.reset();
  b.writer->commit();
  b.writer.reset();  // releases the store's lock for the reindexing that follows
  std::error_code ec;
  std::filesystem::remove_all(b.resume_dir, ec);
}

// The index each space had is rebuilt over its new vectors.
void rebuild_indexes(BuildState& b, const std::vector<std::pair<std::string, IndexSpec>>& reindex) {
  const ReindexOutcome done = reindex_committed(b.opt.store, reindex);
  b.report.reindexed.insert(b.report.reindexed.end(), done.built.begin(), done.built.end());
  for (const auto& [name, error] : done.failed)
    b.report.reindexed.push_back(name + ": NOT rebuilt, searched exactly until `mmu-index reindex` (" + error + ")");
}

}  // namespace

BuildReport build_store(const BuildOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  check_options(opt);
  BuildState b(opt);
  const auto step = [&b](void (*run)(BuildState&)) {
    stop_if_cancelled(b);
    run(b);
  };
  step(lock_store);
  step(find_input_files);
  step(load_fit);
  step(load_models);
  step(plan_against_previous);
  step(validate_files);
  step(read_new_files);
  step(open_writer);
  step(write_catalog);
  step(write_baseline_spaces);
  for (size_t c = 0; c < b.cards.size(); ++c) {
    stop_if_cancelled(b);
    write_model_space(b, c);
  }
  step(carry_over_previous);
  step(keep_chosen_default_spaces);
  const auto reindex = indexes_to_rebuild(b);
  step(commit_build);
  rebuild_indexes(b, reindex);
  b.report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return std::move(b.report);
}

void print_build_report(const BuildReport& r, const std::string& store, std::ostream& out) {
  out << "store " << store << ": " << r.objects << " objects from " << r.files << " files in "
      << static_cast<int64_t>(r.seconds * 1000) / 1000.0 << " s\n";
  if (r.reused_files > 0)
    out << "  " << r.files_read << " new or changed files read; " << r.reused_files << " unchanged files ("
        << r.reused_objects << " objects) carried over from the previous build (--refit reads everything)\n";
  for (const auto& path : r.removed_files) out << "  removed: '" << path << "' is gone, its objects were dropped\n";
  for (const auto& line : r.image_bands) out << "  images of " << line << "\n";
  for (const auto& [name, count] : r.space_counts) {
    out << "  space " << name << ": " << count << " vectors, dim " << r.space_dims.at(name);
    if (r.model_seconds.count(name))
      out << ", encoded in " << static_cast<int64_t>(r.model_seconds.at(name) * 1000) / 1000.0 << " s (batch "
          << r.model_batch.at(name) << ")\n";
    else
      out << " (baseline-pca)\n";
  }
  for (const auto& name : r.kept_spaces) out << "  space " << name << ": unchanged from the previous build\n";
  for (const auto& what : r.reindexed) out << "  index rebuilt for space " << what << "\n";
  if (r.resumed_objects > 0) out << "  resumed: " << r.resumed_objects << " model embeddings taken from the interrupted build\n";
  for (const auto& why : r.skipped) out << "  skipped (--skip-bad): " << why << "\n";
  for (const auto& why : r.model_skips) out << "  not in model space " << why << "\n";
  if (r.without_modality > 0)
    out << "  " << r.without_modality
        << " objects have no modality this version can embed (image, spectrum, light curve, XP): catalogued, not searchable by similarity\n";
}

}  // namespace mmu
