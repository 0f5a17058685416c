#include "mmu/mmu_files.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>

#include "hdf5_util.h"
#include "mmu/error.h"
#include "mmu/sky.h"

namespace fs = std::filesystem;

namespace mmu {

const char* modality_name(Modality m) {
  switch (m) {
    case Modality::kImage: return "image";
    case Modality::kSpectrum: return "spectrum";
    default: return "none";
  }
}

namespace {

bool is_mmu_file(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".hdf5" || ext == ".h5";
}

// "healpix=0714" -> 714; nullopt for anything else.
std::optional<int64_t> parse_healpix_dir(const std::string& name) {
  const std::string prefix = "healpix=";
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return std::nullopt;
  int64_t v = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || v > kNumCells) return std::nullopt;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

SourceFile describe(const fs::path& file) {
  SourceFile f;
  f.path = file.string();
  struct stat st;
  if (::stat(f.path.c_str(), &st) != 0) throw IoError(f.path, "stat", errno);
  f.size = st.st_size;
  f.mtime = st.st_mtime;
  // Walk up from the file: healpix=N, then subset, then dataset.
  fs::path dir = file.parent_path();
  if (auto hp = parse_healpix_dir(dir.filename().string())) {
    f.healpix = *hp;
    dir = dir.parent_path();
  }
  // Names come from the path itself, so pointing at any level of the tree
  // (the root, a dataset, a subset, one file) gives the same survey names.
  const fs::path abs = fs::absolute(dir).lexically_normal();
  if (f.healpix >= 0) {
    f.subset = abs.filename().string();
    f.dataset = abs.parent_path().filename().string();
    if (f.dataset.empty()) f.dataset = f.subset;
  } else {
    f.dataset = abs.filename().string();
  }
  if (f.dataset.empty()) f.dataset = file.stem().string();
  return f;
}

// Column conventions, in the order of preference of ../shared/mmu-format.md §7.
const std::vector<std::string> kIdKeys = {"object_id", "source_id"};
const std::vector<std::string> kRaKeys = {"ra", "RA", "TARGET_RA", "PLUG_RA", "ifura"};
const std::vector<std::string> kDecKeys = {"dec", "DEC", "TARGET_DEC", "PLUG_DEC", "ifudec"};

}  // namespace

std::vector<SourceFile> discover_files(const std::vector<std::string>& roots) {
  std::vector<SourceFile> out;
  for (const std::string& r : roots) {
    fs::path root(r);
    std::error_code ec;
    if (!fs::exists(root, ec)) throw NotFound("input '" + r + "' does not exist");
    if (fs::is_regular_file(root, ec)) {
      out.push_back(describe(root));
      continue;
    }
    fs::recursive_directory_iterator it(root, fs::directory_options::follow_directory_symlink, ec), end;
    if (ec) throw IoError(r, "list", ec.value());
    for (; it != end; it.increment(ec)) {
      if (ec) throw IoError(it->path().string(), "list", ec.value());
      if (it->is_regular_file(ec) && is_mmu_file(it->path())) out.push_back(describe(it->path()));
    }
  }
  std::sort(out.begin(), out.end(), [](const SourceFile& a, const SourceFile& b) {
    return std::tie(a.dataset, a.subset, a.healpix, a.path) < std::tie(b.dataset, b.subset, b.healpix, b.path);
  });
  out.erase(std::unique(out.begin(), out.end(),
                        [](const SourceFile& a, const SourceFile& b) {
                          return fs::weakly_canonical(a.path) == fs::weakly_canonical(b.path);
                        }),
            out.end());
  return out;
}

struct RowFileReader::Rep {
  SourceFile file;
  h5::Handle h5file;
  Modality modality = Modality::kNone;
  int64_t rows = 0;
  std::optional<h5::Dataset> ids, ra, dec, healpix;
  std::optional<h5::Dataset> image, image_mask;
  std::optional<h5::Dataset> flux, ivar, lambda, spec_mask;

  std::optional<h5::Dataset> open_opt(const std::string& name) const {
    if (!h5::has_dataset(h5file.get(), name)) return std::nullopt;
    return h5::Dataset(h5file.get(), file.path, name);
  }
  std::optional<h5::Dataset> open_first(const std::vector<std::string>& names, const std::string& label,
                                        const std::string& why) const {
    for (const auto& n : names)
      if (h5::has_dataset(h5file.get(), n)) return h5::Dataset(h5file.get(), file.path, n);
    std::string alts;
    for (size_t i = 1; i < names.size(); ++i) alts += (alts.empty() ? " (nor '" : ", '") + names[i] + "'";
    throw FormatError("'" + file.path + "' has no '" + label + "' dataset" + (alts.empty() ? "" : alts + ")") +
                      "; " + why);
  }
  h5::Dataset open_req(const std::string& name, const std::string& why) const {
    if (!h5::has_dataset(h5file.get(), name))
      throw FormatError("'" + file.path + "' has no '" + name + "' dataset (" + why + ")");
    return h5::Dataset(h5file.get(), file.path, name);
  }
  void check_rows(const h5::Dataset& d) const {
    if (d.rows() != rows)
      throw FormatError(d.where() + " has " + std::to_string(d.rows()) + " rows, but 'object_id' has " +
                        std::to_string(rows));
  }
  void check_rank(const h5::Dataset& d, size_t rank, const std::string& shape) const {
    if (d.info().dims.size() != rank) throw FormatError(d.where() + " must have shape " + shape);
  }
  void check_float(const h5::Dataset& d) const {
    if (d.info().type != h5::TypeClass::kFloat && d.info().type != h5::TypeClass::kInteger)
      throw FormatError(d.where() + " has type " + d.info().type_text + ", expected floating point");
  }
};

RowFileReader::RowFileReader(const SourceFile& file) : rep_(std::make_unique<Rep>()) {
  Rep& r = *rep_;
  r.file = file;
  r.h5file = h5::open_file(file.path);
  const std::string required = "MMU row tables need object_id, ra and dec";
  r.ids = r.open_first(kIdKeys, "object_id", required);
  r.rows = r.ids->rows();
  if (r.ids->info().dims.size() > 1) r.check_rank(*r.ids, 1, "(N,)");
  const auto id_type = r.ids->info().type;
  if (id_type != h5::TypeClass::kString && id_type != h5::TypeClass::kInteger &&
      id_type != h5::TypeClass::kUnsignedInteger)
    throw FormatError(r.ids->where() + " has type " + r.ids->info().type_text + ", expected strings or integers");
  // Coordinates come in pairs: never mix ra from one convention with DEC from another.
  for (size_t i = 0; i < kRaKeys.size() && !r.ra; ++i) {
    if (h5::has_dataset(r.h5file.get(), kRaKeys[i]) && h5::has_dataset(r.h5file.get(), kDecKeys[i])) {
      r.ra = r.open_req(kRaKeys[i], required);
      r.dec = r.open_req(kDecKeys[i], required);
    }
  }
  if (!r.ra) {
    const bool has_ra = h5::has_dataset(r.h5file.get(), "ra");
    throw FormatError("'" + file.path + "' has no '" + std::string(has_ra ? "dec" : "ra") +
                      "' dataset (nor RA/DEC, TARGET_RA/TARGET_DEC, PLUG_RA/PLUG_DEC, ifura/ifudec); " + required);
  }
  for (auto* d : {&*r.ra, &*r.dec}) {
    r.check_rows(*d);
    r.check_float(*d);
    if (d->info().dims.size() > 1) r.check_rank(*d, 1, "(N,)");
  }
  r.healpix = r.open_opt("healpix");
  if (r.healpix) r.check_rows(*r.healpix);

  if (auto img = r.open_opt("image_array")) {
    r.image = std::move(img);
    r.check_rank(*r.image, 4, "(N, bands, height, width)");
    r.check_rows(*r.image);
    r.check_float(*r.image);
    r.image_mask = r.open_opt("image_mask");
    if (r.image_mask) {
      const auto& md = r.image_mask->info().dims;
      const auto& id = r.image->info().dims;
      const bool shared = md.size() == 3 && md[1] == id[2] && md[2] == id[3];
      const bool per_band = md.size() == 4 && md[1] == id[1] && md[2] == id[2] && md[3] == id[3];
      if (!shared && !per_band)
        throw FormatError(r.image_mask->where() + " must have shape (N,H,W) or (N,bands,H,W) matching image_array");
      r.check_rows(*r.image_mask);
    }
    r.modality = Modality::kImage;
  } else if (auto flux = r.open_opt("spectrum_flux")) {
    r.flux = std::move(flux);
    r.check_rank(*r.flux, 2, "(N, length)");
    r.check_rows(*r.flux);
    r.check_float(*r.flux);
    r.ivar = r.open_req("spectrum_ivar", "spectra need flux, ivar and lambda");
    r.lambda = r.open_req("spectrum_lambda", "spectra need flux, ivar and lambda");
    r.spec_mask = r.open_opt("spectrum_mask");
    for (auto* d : {&*r.ivar, &*r.lambda}) {
      r.check_float(*d);
      if (d->info().dims != r.flux->info().dims)
        throw FormatError(d->where() + " must have the same shape as 'spectrum_flux'");
    }
    if (r.spec_mask && r.spec_mask->info().dims != r.flux->info().dims)
      throw FormatError(r.spec_mask->where() + " must have the same shape as 'spectrum_flux'");
    r.modality = Modality::kSpectrum;
  }
}

RowFileReader::~RowFileReader() = default;
const SourceFile& RowFileReader::file() const { return rep_->file; }
Modality RowFileReader::modality() const { return rep_->modality; }

RowFileReader::Columns RowFileReader::columns() const {
  const Rep& r = *rep_;
  auto name = [](const std::optional<h5::Dataset>& d) { return d ? d->info().name : std::string(); };
  Columns c{name(r.ids), name(r.ra), name(r.dec), name(r.healpix), "", ""};
  if (r.modality == Modality::kImage) {
    c.data = name(r.image);
    c.mask = name(r.image_mask);
  } else if (r.modality == Modality::kSpectrum) {
    c.data = name(r.flux);
    c.mask = name(r.spec_mask);
  }
  return c;
}
int64_t RowFileReader::rows() const { return rep_->rows; }

FileCatalog RowFileReader::read_catalog() const {
  const Rep& r = *rep_;
  FileCatalog c;
  c.ids = r.ids->read_text(0, r.rows);
  c.ra.resize(r.rows);
  c.dec.resize(r.rows);
  r.ra->read_rows(0, r.rows, c.ra.data());
  r.dec->read_rows(0, r.rows, c.dec.data());
  c.healpix.resize(r.rows);
  if (r.healpix) r.healpix->read_rows(0, r.rows, c.healpix.data());
  for (int64_t i = 0; i < r.rows; ++i) {
    if (c.ids[i].empty())
      throw FormatError("row " + std::to_string(i) + " of " + r.ids->where() + " is an empty object_id");
    if (!valid_sky_position(c.ra[i], c.dec[i]))
      throw FormatError("object '" + c.ids[i] + "' in '" + r.file.path + "' has an invalid position ra=" +
                        std::to_string(c.ra[i]) + " dec=" + std::to_string(c.dec[i]));
    if (!r.healpix) c.healpix[i] = healpix_cell(c.ra[i], c.dec[i]);
  }
  return c;
}

void RowFileReader::read_images(int64_t start, int64_t count, ImageBatch* out) const {
  const Rep& r = *rep_;
  if (r.modality != Modality::kImage) throw InternalError("read_images on a non-image file " + r.file.path);
  const auto& d = r.image->info().dims;
  out->count = count;
  out->bands = d[1];
  out->height = d[2];
  out->width = d[3];
  const int64_t plane = d[2] * d[3];
  const int64_t per_obj = d[1] * plane;
  out->pixels.resize(static_cast<size_t>(count * per_obj));
  out->good.resize(out->pixels.size());
  r.image->read_rows(start, count, out->pixels.data());
  if (!r.image_mask) {
    std::fill(out->good.begin(), out->good.end(), uint8_t{1});
    return;
  }
  if (r.image_mask->info().dims.size() == 4) {
    r.image_mask->read_rows_bool(start, count, out->good.data());  // True = good, as MMU writes images
    return;
  }
  // One (H,W) mask shared by every band (legacysurvey): broadcast it.
  std::vector<uint8_t> shared(static_cast<size_t>(count * plane));
  r.image_mask->read_rows_bool(start, count, shared.data());
  for (int64_t i = 0; i < count; ++i)
    for (int64_t b = 0; b < d[1]; ++b)
      std::copy_n(shared.data() + i * plane, plane, out->good.data() + i * per_obj + b * plane);
}

void RowFileReader::read_spectra(int64_t start, int64_t count, SpectrumBatch* out) const {
  const Rep& r = *rep_;
  if (r.modality != Modality::kSpectrum) throw InternalError("read_spectra on a non-spectrum file " + r.file.path);
  const int64_t len = r.flux->info().dims[1];
  const size_t n = static_cast<size_t>(count * len);
  out->count = count;
  out->length = len;
  out->flux.resize(n);
  out->ivar.resize(n);
  out->lambda.resize(n);
  out->good.assign(n, 1);
  r.flux->read_rows(start, count, out->flux.data());
  r.ivar->read_rows(start, count, out->ivar.data());
  r.lambda->read_rows(start, count, out->lambda.data());
  if (r.spec_mask) {
    r.spec_mask->read_rows_bool(start, count, out->good.data());  // True = bad for spectra
    for (auto& g : out->good) g = !g;
  }
  for (size_t i = 0; i < n; ++i)
    if (!(out->ivar[i] > 0.0f) || !(out->lambda[i] > 0.0f)) out->good[i] = 0;
}

}  // namespace mmu
