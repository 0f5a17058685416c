#include "mmu/fit.h"

#include <chrono>
#include <set>

#include "base/sha256.h"
#include "base/utc_time.h"
#include "ingest/baseline_fit.h"
#include "ingest/cells.h"
#include "ingest/fit_dir.h"
#include "ingest/partition.h"
#include "mmu/build.h"
#include "mmu/error.h"
#include "mmu/mmu_files.h"

namespace mmu {

namespace {

// A baseline space's input files (discovery order) and the cells they lie in.
struct SpaceFiles {
  Modality modality = Modality::kNone;
  std::vector<SourceFile> files;
  std::set<int64_t> cells;
};

// Metadata only: which space each file feeds. Catalogue-only and empty files feed none.
std::map<std::string, SpaceFiles> group_by_space(const std::vector<SourceFile>& found, FitReport* report) {
  std::map<std::string, SpaceFiles> spaces;
  for (const SourceFile& f : found) {
    MmuFileReader reader(f);
    if (reader.modality() == Modality::kNone || reader.rows() == 0) continue;
    if (f.healpix < 0)
      throw InvalidArgument("'" + f.path + "' is not in a healpix=N folder: its HEALPix cell, by which the fit samples, "
                            "is unknown");
    const std::string space =
        reader.modality() == Modality::kImage ? reader.image_bands().space : modality_name(reader.modality());
    SpaceFiles& s = spaces[space];
    s.modality = reader.modality();
    s.files.push_back(f);
    s.cells.insert(f.healpix);
    for (const auto& w : reader.warnings()) report->warnings.push_back(w);
  }
  return spaces;
}

}  // namespace

FitReport fit_baseline(const FitOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.dim <= 0) throw InvalidArgument("--dim must be >= 1, got " + std::to_string(opt.dim));
  if (opt.sample_cells < 0)
    throw InvalidArgument("--sample-cells must be >= 1 (or 0 for every cell), got " + std::to_string(opt.sample_cells));
  FitReport report;
  const std::vector<SourceFile> found = discover_files(opt.roots);
  if (found.empty()) throw NotFound("no *.hdf5 or *.h5 files under the roots given to fit");
  const std::map<std::string, SpaceFiles> spaces = group_by_space(found, &report);
  if (spaces.empty())
    throw InvalidArgument("no input file holds images, spectra, light curves or XP coefficients: no baseline space to fit");

  BuildOptions features;  // what load_partition reads: the feature definitions of a build
  features.image = opt.image;
  features.spectrum = opt.spectrum;
  features.light_curve = opt.light_curve;
  FitManifest m;
  m.dir = opt.out;
  m.created = utc_now();
  m.sample_cells = opt.sample_cells;
  m.seed = opt.seed;
  m.dim = opt.dim;
  m.roots = opt.roots;
  std::map<std::string, std::string> blobs;
  for (const auto& [name, sf] : spaces) {
    const std::vector<int64_t> cells = sample_cells(sf.cells, opt.sample_cells == 0 ? -1 : opt.sample_cells, opt.seed);
    const std::set<int64_t> chosen(cells.begin(), cells.end());
    FitSpace fs;
    fs.name = name;
    fs.modality = modality_name(sf.modality);
    fs.version = baseline_version(sf.modality).version;
    fs.cells = cells;
    fs.cells_available = static_cast<int64_t>(sf.cells.size());
    FeatureSet set;
    int64_t to_read = 0;
    for (const SourceFile& f : sf.files)
      if (chosen.count(f.healpix)) to_read += MmuFileReader(f).rows();
    Progress progress("fitting " + name, to_read, opt.progress);
    for (const SourceFile& f : sf.files) {
      if (!chosen.count(f.healpix)) continue;
      MmuFileReader reader(f);
      Partition p = load_partition(reader, features, &progress);
      std::vector<int64_t> rows(p.order.size());
      for (size_t k = 0; k < rows.size(); ++k) rows[k] = static_cast<int64_t>(set.rows.size() + k);
      add_features(&set, p, rows);
      fs.files.push_back(f.path);
    }
    progress.finish();
    fs.objects = static_cast<int64_t>(set.rows.size());
    if (fs.objects < 2)
      throw InvalidArgument("space '" + name + "': the sampled cells hold " + std::to_string(fs.objects) +
                            " object(s), and a PCA needs at least 2 (--sample-cells " +
                            std::to_string(opt.sample_cells) + " of " + std::to_string(fs.cells_available) + " cells)");
    const PcaModel pca = fit_space_pca(name, set, opt.dim);
    fs.input_dim = pca.input_dim;
    fs.dim = pca.output_dim;
    blobs[name] = serialize_pca(pca);
    fs.sha256 = sha256_hex(blobs[name]);
    report.spaces[name] = FitReport::Space{fs.objects, static_cast<int64_t>(fs.files.size()),
                                           static_cast<int64_t>(cells.size()), fs.cells_available, fs.dim, fs.sha256};
    m.spaces.push_back(std::move(fs));
  }
  write_fit_dir(m, blobs);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

void print_fit_report(const FitReport& r, const std::string& out_dir, std::ostream& out) {
  out << "fit " << out_dir << ": " << r.spaces.size() << " baseline space(s) in "
      << static_cast<int64_t>(r.seconds * 1000) / 1000.0 << " s\n";
  for (const auto& [name, s] : r.spaces)
    out << "  space " << name << ": dim " << s.dim << ", fitted on " << s.objects << " objects of " << s.files
        << " files in " << s.cells << " of " << s.cells_available << " cells, sha256 " << s.sha256 << "\n";
}

}  // namespace mmu
