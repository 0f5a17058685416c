#include "mmu/mmu_files.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>
#include <set>
#include <utility>

#include "mmu/image_bands.h"
#include "mmu/text.h"
#include "read/hdf5_util.h"
#include "read/scalar_columns.h"
#include "mmu/error.h"
#include "mmu/sky.h"
#include "base/fresh_buffer.h"
#include "base/utf8.h"

namespace mmu {

const char* modality_name(Modality m) {
  switch (m) {
    case Modality::kImage: return "image";
    case Modality::kSpectrum: return "spectrum";
    case Modality::kLightCurve: return "lightcurve";
    case Modality::kXp: return "xp";
    default: return "none";
  }
}

const char* layout_name(FileLayout l) {
  switch (l) {
    case FileLayout::kRowTable: return "row table";
    case FileLayout::kPerObjectScalars: return "per-object scalars";
    case FileLayout::kGroupsPerObject: return "groups per object";
  }
  return "unknown";
}

namespace {

// Column conventions, in the order of preference of docs/MMU-FORMAT.md §7.
const std::vector<std::string> kIdKeys = {"object_id", "source_id"};
const std::vector<std::string> kRaKeys = {"ra", "RA", "TARGET_RA", "PLUG_RA", "ifura"};
const std::vector<std::string> kDecKeys = {"dec", "DEC", "TARGET_DEC", "PLUG_DEC", "ifudec"};

// Bytes of a non-UTF-8 id shown as \xNN beyond ASCII, for messages.
std::string escaped_bytes(const std::string& s) {
  static const char* const kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char ch : s.substr(0, 64)) {
    if (ch >= 0x20 && ch < 0x7f) {
      out += static_cast<char>(ch);
    } else {
      out += "\\x";
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
  }
  return "bytes '" + out + (s.size() > 64 ? "...'" : "'");
}

}  // namespace

struct MmuFileReader::Rep {
  SourceFile file;
  h5::Handle h5file;
  Modality modality = Modality::kNone;
  FileLayout layout = FileLayout::kRowTable;
  int64_t rows = 0;
  std::vector<std::string> groups;  // groups-per-object layout: one object each
  std::vector<std::string> other_groups;  // root groups with no id and no position: not objects
  std::optional<h5::Dataset> ids, ra, dec, healpix;
  std::optional<h5::Dataset> image, image_mask;
  bool channels_last = false;  // gz10's `images`: (N, H, W, 3)
  ImageBands img;
  std::vector<std::string> warnings;  // assumptions made while opening, each naming the file
  std::optional<h5::Dataset> flux, ivar, lambda, spec_mask;
  std::optional<h5::Dataset> lightcurve;           // plasticc (N,bands,3,L)
  std::optional<h5::Dataset> lc_time, lc_value, lc_err;  // SN files (bands,L) or (N,bands,L); tess (N,L)
  bool lc_magnitudes = false;                             // lc_value is 'mag' rather than 'flux'
  std::optional<h5::Dataset> coeff;                // gaia (N,110)

  std::optional<h5::Dataset> open_opt(const std::string& name) const {
    if (!h5::has_dataset(h5file.get(), name)) return std::nullopt;
    h5::Dataset d(h5file.get(), file.path, name);
    if (layout == FileLayout::kPerObjectScalars) d.treat_as_one_row();
    return d;
  }
  std::optional<h5::Dataset> open_first(const std::vector<std::string>& names, const std::string& label,
                                        const std::string& why) const {
    for (const auto& n : names)
      if (auto d = open_opt(n)) return d;
    std::string alts;
    for (size_t i = 1; i < names.size(); ++i) alts += (alts.empty() ? " (nor '" : ", '") + names[i] + "'";
    throw FormatError("'" + file.path + "' has no '" + label + "' dataset" + (alts.empty() ? "" : alts + ")") +
                      "; " + why);
  }
  h5::Dataset open_req(const std::string& name, const std::string& why) const {
    if (auto d = open_opt(name)) return std::move(*d);
    throw FormatError("'" + file.path + "' has no '" + name + "' dataset (" + why + ")");
  }
  void check_rows(const h5::Dataset& d) const {
    if (d.rows() != rows)
      throw FormatError(d.where() + " has " + std::to_string(d.rows()) + " rows, but '" + ids->info().name +
                        "' has " + std::to_string(rows));
  }
  void check_shape(const h5::Dataset& d, size_t rank, const std::string& shape) const {
    if (d.row_shape().size() != rank) throw FormatError(d.where() + " must have shape " + shape);
    check_rows(d);
  }
  void check_float(const h5::Dataset& d) const {
    if (d.info().type != h5::TypeClass::kFloat && d.info().type != h5::TypeClass::kInteger)
      throw FormatError(d.where() + " has type " + d.info().type_text + ", expected floating point");
  }

  // cfa/csp write time/mag/mag_err; the SNANA template and tess time/flux/flux_err.
  std::optional<std::pair<std::string, std::string>> light_curve_names() const {
    if (!h5::has_dataset(h5file.get(), "time")) return std::nullopt;
    for (const char* v : {"mag", "flux"})
      if (h5::has_dataset(h5file.get(), v) && h5::has_dataset(h5file.get(), std::string(v) + "_err"))
        return std::make_pair(std::string(v), std::string(v) + "_err");
    return std::nullopt;
  }
  void open_row_table();
  void open_groups();
  void detect_modality();
  // image_array, or gz10's Galaxy10 `images` (N, H, W, 3) RGB as its builder copies them.
  bool open_image() {
    if ((image = open_opt("image_array"))) return true;
    auto im = open_opt("images");
    if (!im || im->row_shape().size() != 3 || im->row_shape()[2] != 3 || h5::has_dataset(h5file.get(), "image_band"))
      return false;
    image = std::move(im);
    channels_last = true;
    return true;
  }
  // bands, height, width of one image, whatever the axis order on disk.
  std::vector<int64_t> image_dims() const {
    const auto s = image->row_shape();
    return channels_last ? std::vector<int64_t>{s[2], s[0], s[1]} : s;
  }
  void read_image_meta();
  void read_pixel_scale();
  std::string group_path(int64_t i, const std::string& name) const { return groups[i] + "/" + name; }
};

void MmuFileReader::Rep::open_row_table() {
  const std::string required = "MMU row tables need object_id, ra and dec";
  // A scalar object_id marks a per-object file (SN light curves): one row.
  if (h5::has_dataset(h5file.get(), "object_id") &&
      h5::Dataset(h5file.get(), file.path, "object_id").info().dims.empty())
    layout = FileLayout::kPerObjectScalars;
  ids = open_first(kIdKeys, "object_id", required);
  rows = ids->rows();
  if (ids->row_shape().size() > 0 && layout == FileLayout::kRowTable) check_shape(*ids, 0, "(N,)");
  const auto id_type = ids->info().type;
  if (id_type != h5::TypeClass::kString && id_type != h5::TypeClass::kInteger &&
      id_type != h5::TypeClass::kUnsignedInteger)
    throw FormatError(ids->where() + " has type " + ids->info().type_text + ", expected strings or integers");
  // Coordinates come in pairs: never mix ra from one convention with DEC from another.
  for (size_t i = 0; i < kRaKeys.size() && !ra; ++i) {
    if (h5::has_dataset(h5file.get(), kRaKeys[i]) && h5::has_dataset(h5file.get(), kDecKeys[i])) {
      ra = open_req(kRaKeys[i], required);
      dec = open_req(kDecKeys[i], required);
    }
  }
  if (!ra) {
    const bool has_ra = h5::has_dataset(h5file.get(), "ra");
    throw FormatError("'" + file.path + "' has no '" + std::string(has_ra ? "dec" : "ra") +
                      "' dataset (nor RA/DEC, TARGET_RA/TARGET_DEC, PLUG_RA/PLUG_DEC, ifura/ifudec); " + required);
  }
  for (auto* d : {&*ra, &*dec}) {
    check_float(*d);
    check_shape(*d, 0, "(N,)");
  }
  healpix = open_opt("healpix");  // lower case only: DESI's own HEALPIX is another scheme
  if (healpix) check_shape(*healpix, 0, "(N,)");
  detect_modality();
}

void MmuFileReader::Rep::detect_modality() {
  if (open_image()) {
    check_shape(*image, 3, "(N, bands, height, width)");
    if (!(channels_last && image->info().type == h5::TypeClass::kUnsignedInteger)) check_float(*image);  // gz10: uint8 RGB
    image_mask = open_opt("image_mask");
    if (image_mask) {
      const auto md = image_mask->row_shape(), id = image_dims();
      const bool shared = md.size() == 2 && md[0] == id[1] && md[1] == id[2];
      const bool per_band = md == id;
      if (!shared && !per_band)
        throw FormatError(image_mask->where() + " must have shape (N,H,W) or (N,bands,H,W) matching image_array");
      check_rows(*image_mask);
    }
    read_image_meta();
    modality = Modality::kImage;
  } else if ((flux = open_opt("spectrum_flux"))) {
    check_shape(*flux, 1, "(N, length)");
    check_float(*flux);
    ivar = open_req("spectrum_ivar", "spectra need flux, ivar and lambda");
    lambda = open_req("spectrum_lambda", "spectra need flux, ivar and lambda");
    spec_mask = open_opt("spectrum_mask");
    for (auto* d : {&*ivar, &*lambda}) {
      check_float(*d);
      if (d->info().dims != flux->info().dims)
        throw FormatError(d->where() + " must have the same shape as 'spectrum_flux'");
    }
    if (spec_mask && spec_mask->info().dims != flux->info().dims)
      throw FormatError(spec_mask->where() + " must have the same shape as 'spectrum_flux'");
    modality = Modality::kSpectrum;
  } else if ((lightcurve = open_opt("lightcurve"))) {
    check_shape(*lightcurve, 3, "(N, bands, 3, length)");
    check_float(*lightcurve);
    if (lightcurve->row_shape()[1] != 3)
      throw FormatError(lightcurve->where() + " must have shape (N, bands, 3, length): axis 2 is [time, flux, flux_err]");
    modality = Modality::kLightCurve;
  } else if (auto lc_names = light_curve_names(); lc_names && !open_req("time", "").row_shape().empty()) {
    lc_time = open_req("time", "");
    lc_value = open_req(lc_names->first, "");
    lc_err = open_req(lc_names->second, "");
    lc_magnitudes = lc_names->first == "mag";
    if (lc_time->row_shape().size() > 2)
      throw FormatError(lc_time->where() + " must have shape (bands, length) or (length) per object");
    check_rows(*lc_time);
    for (auto* d : {&*lc_time, &*lc_value, &*lc_err}) {
      check_float(*d);
      if (d->row_shape() != lc_time->row_shape()) throw FormatError(d->where() + " must have the same shape as 'time'");
    }
    modality = Modality::kLightCurve;
  } else if ((coeff = open_opt("coeff"))) {
    check_shape(*coeff, 1, "(N, coefficients)");
    check_float(*coeff);
    modality = Modality::kXp;
  } else if (h5::has_dataset(h5file.get(), "image_triplet")) {
    // MMU's btsbot builder (scripts/btsbot/build_parent_sample.py) stores (N, 63, 63, 3)
    // science/reference/difference stamps of one band per row: not an image of
    // named bands, so its objects are catalogued without a vector, said aloud.
    warnings.push_back("'" + file.path + "': 'image_triplet' (science, reference and difference stamps, "
                       "the MMU btsbot layout) is not read: its objects are catalogued without an image vector");
  }
}

void MmuFileReader::Rep::read_image_meta() {
  const int64_t bands = image_dims()[0];
  if (channels_last) {
    img.names = survey_band_names("gz10", bands);  // RGB by the builder: certain, not assumed
    img.names_from_survey = true;
  } else if (auto b = open_opt("image_band")) {
    // (N, bands) as the builders write it, or one (bands,) list for the file.
    const bool one_list = b->info().dims.size() == 1 && b->info().dims[0] == bands;
    if (b->info().type != h5::TypeClass::kString || (!one_list && (b->row_size() != bands || b->rows() < 1)))
      throw FormatError(b->where() + " must hold " + std::to_string(bands) +
                        " band names per object, one per band of 'image_array'");
    // Every row must name the same bands: one file, one space.
    const std::vector<std::string> all = one_list ? b->read_text(0, bands) : b->read_text(0, b->rows());
    img.names.assign(all.begin(), all.begin() + bands);
    for (size_t k = 0; k < all.size(); ++k)
      if (all[k] != img.names[k % bands])
        throw FormatError(b->where() + ": object " + std::to_string(k / bands) + " has band '" + all[k] + "' where object 0 has '" +
                          img.names[k % bands] + "'; the image baseline needs one band order per file");
    for (auto& n : img.names)
      for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  } else {
    img.names = survey_band_names(file.dataset, bands);
    if (img.names.empty())
      throw FormatError("'" + file.path + "': the " + std::to_string(bands) + " bands of dataset 'image_array' cannot be " +
                        "named: the file has no 'image_band' dataset and survey '" + file.dataset +
                        "' is not one whose band order the MMU builders fix (legacysurvey 4, hsc 5, ssl_legacysurvey 3, gz10 3)");
    img.names_from_survey = true;
    std::string list;
    for (const auto& n : img.names) list += (list.empty() ? "" : ", ") + n;
    warnings.push_back("'" + file.path + "' has no 'image_band' dataset: took its " + std::to_string(bands) +
                       " bands to be " + list + ", the order the MMU " + file.dataset + " builder writes");
  }
  const BandPlan plan = plan_bands(img.names);
  if (!plan.error.empty())
    throw FormatError("'" + file.path + "': the bands of dataset 'image_array' cannot be named: " + plan.error);
  img.space = plan.space;
  img.used = plan.used;
  read_pixel_scale();
}

// From the file (image_scale per band, gz10's pxscale per object, or such an
// attribute), else the table's, else assumed with a warning.
void MmuFileReader::Rep::read_pixel_scale() {
  for (const char* name : {"image_scale", "pxscale"}) {
    auto d = open_opt(name);
    if (!d || (d->info().type != h5::TypeClass::kFloat && d->info().type != h5::TypeClass::kInteger)) continue;
    const int64_t per_row = d->row_size();
    const bool per_band = per_row == image_dims()[0];
    if (d->rows() != rows || (per_row != 1 && !per_band)) {
      warnings.push_back("'" + file.path + "': " + d->where() + " is not one scale per object or per band; ignored");
      continue;
    }
    std::vector<double> v(static_cast<size_t>(rows * per_row));
    d->read_rows(0, rows, v.data());
    double lo = 0, hi = 0;
    bool valid = true;
    for (int64_t i = 0; i < rows && valid; ++i)
      for (int64_t k : img.used) {
        const double x = v[i * per_row + (per_band ? k : 0)];
        valid = std::isfinite(x) && x > 0;
        lo = (lo == 0 || x < lo) ? x : lo;
        hi = std::max(hi, x);
      }
    if (!valid) {
      warnings.push_back(d->where() + " holds a pixel scale that is not a positive number; ignored");
      continue;
    }
    // The crop is one field for the whole file: a scale that varies is a loss to say.
    if (hi > lo * 1.001)
      warnings.push_back(d->where() + " varies from " + text::format_double("%.4g", lo) + " to " + text::format_double("%.4g", hi) +
                         " arcsec/pixel; the image baseline crops every object at the first object's scale");
    img.pixel_scale = v[per_band ? img.used[0] : 0];
    img.scale_source = std::string("file: ") + name;
    return;
  }
  for (const std::string& object : std::vector<std::string>{".", image->info().name})
    for (const char* attr : {"image_scale", "pxscale", "pixel_scale"})
      if (auto x = h5::read_number_attr(h5file.get(), object, attr); x && std::isfinite(*x) && *x > 0) {
        img.pixel_scale = *x;
        img.scale_source = std::string("file: attribute ") + attr + (object == "." ? "" : " of " + object);
        return;
      }
  std::vector<std::string> used;
  for (int64_t k : img.used) used.push_back(img.names[k]);
  if ((img.pixel_scale = table_pixel_scale(used)) > 0) {
    img.scale_source = "table";
    return;
  }
  img.pixel_scale = kAssumedPixelScale;
  img.scale_source = "assumed";
  warnings.push_back("'" + file.path + "' gives no pixel scale (no image_scale or pxscale) and its bands have none in " +
                     "the MMU table: assumed " + text::format_double("%.3f", kAssumedPixelScale) + " arcsec/pixel");
}

// MaNGA: every root group is one object with scalar object_id/ra/dec and a
// compound `spaxels` table; the baseline takes its integrated spectrum.
void MmuFileReader::Rep::open_groups() {
  layout = FileLayout::kGroupsPerObject;
  // MMU's MaNGA files name each object by its group; an object_id dataset, when
  // there is one, is the id. A group with neither an id nor a position is not an object.
  for (const std::string& g : h5::list_root_groups(h5file.get())) {
    if (h5::has_dataset(h5file.get(), g + "/object_id") ||
        (h5::has_dataset(h5file.get(), g + "/ra") && h5::has_dataset(h5file.get(), g + "/dec")))
      groups.push_back(g);
    else
      other_groups.push_back(g);
  }
  if (groups.empty())
    throw FormatError("'" + file.path + "' has no 'object_id' dataset at its root nor in any group; "
                      "MMU files need object_id, ra and dec");
  rows = static_cast<int64_t>(groups.size());
  for (const std::string& g : groups)
    for (const char* k : {"ra", "dec"})
      if (!h5::has_dataset(h5file.get(), g + "/" + k))
        throw FormatError("group '" + g + "' in '" + file.path + "' has no '" + k + "' dataset");
  bool all_spaxels = true;
  for (const std::string& g : groups) all_spaxels = all_spaxels && h5::has_dataset(h5file.get(), g + "/spaxels");
  if (all_spaxels) modality = Modality::kSpectrum;
}

MmuFileReader::MmuFileReader(const SourceFile& file) : rep_(std::make_unique<Rep>()) {
  Rep& r = *rep_;
  r.file = file;
  r.h5file = h5::open_file(file.path);
  const bool root_ids = h5::has_dataset(r.h5file.get(), "object_id") || h5::has_dataset(r.h5file.get(), "source_id");
  if (!root_ids && !h5::list_root_groups(r.h5file.get()).empty())
    r.open_groups();
  else
    r.open_row_table();
}

MmuFileReader::~MmuFileReader() = default;
const SourceFile& MmuFileReader::file() const { return rep_->file; }
Modality MmuFileReader::modality() const { return rep_->modality; }
int64_t MmuFileReader::rows() const { return rep_->rows; }
FileLayout MmuFileReader::layout() const { return rep_->layout; }
const std::vector<std::string>& MmuFileReader::warnings() const { return rep_->warnings; }

const ImageBands& MmuFileReader::image_bands() const {
  if (rep_->modality != Modality::kImage) throw InternalError("image_bands on a non-image file " + rep_->file.path);
  return rep_->img;
}

std::vector<std::pair<std::string, std::string>> MmuFileReader::other_roles() const {
  const Rep& r = *rep_;
  std::vector<std::pair<std::string, std::string>> out;
  auto add = [&](const std::optional<h5::Dataset>& d, const std::string& role) {
    if (d) out.emplace_back(d->info().name, role);
  };
  if (r.modality == Modality::kImage) {
    std::string names;
    for (int64_t k : r.img.used) names += (names.empty() ? "" : ", ") + r.img.names[k];
    if (h5::has_dataset(r.h5file.get(), "image_band")) out.emplace_back("image_band", "image bands (" + names + " -> space " + r.img.space + ")");
    if (r.img.scale_source.rfind("file: ", 0) == 0 && r.img.scale_source.find("attribute") == std::string::npos)
      out.emplace_back(r.img.scale_source.substr(6), "pixel scale");
  }
  add(r.lambda, "spectrum wavelength");
  add(r.ivar, "spectrum inverse variance");
  if (r.lc_time) {
    add(r.lc_time, "light-curve time");
    add(r.lc_err, std::string("light-curve ") + (r.lc_magnitudes ? "magnitude" : "flux") + " error");
  }
  return out;
}

int64_t MmuFileReader::spectrum_length() const {
  const Rep& r = *rep_;
  if (r.modality != Modality::kSpectrum) return 0;
  if (r.flux) return r.flux->row_shape()[0];
  return h5::Dataset(r.h5file.get(), r.file.path, r.group_path(0, "spaxels")).field_width("flux");
}

MmuFileReader::Columns MmuFileReader::columns() const {
  const Rep& r = *rep_;
  auto name = [](const std::optional<h5::Dataset>& d) { return d ? d->info().name : std::string(); };
  if (!r.groups.empty())
    return Columns{"<group>/object_id", "<group>/ra", "<group>/dec", "", r.modality == Modality::kSpectrum ? "<group>/spaxels" : "", ""};
  Columns c{name(r.ids), name(r.ra), name(r.dec), name(r.healpix), "", ""};
  switch (r.modality) {
    case Modality::kImage: c.data = name(r.image); c.mask = name(r.image_mask); break;
    case Modality::kSpectrum: c.data = name(r.flux); c.mask = name(r.spec_mask); break;
    case Modality::kLightCurve: c.data = r.lightcurve ? name(r.lightcurve) : name(r.lc_value); break;
    case Modality::kXp: c.data = name(r.coeff); break;
    default: break;
  }
  return c;
}

FileCatalog MmuFileReader::read_catalog(bool with_healpix) const {
  const Rep& r = *rep_;
  FileCatalog c;
  c.ra.resize(r.rows);
  c.dec.resize(r.rows);
  if (with_healpix) c.healpix.assign(r.rows, -1);
  if (!r.groups.empty()) {
    for (int64_t i = 0; i < r.rows; ++i) {
      auto scalar = [&](const std::string& k) { return h5::Dataset(r.h5file.get(), r.file.path, r.group_path(i, k)); };
      c.ids.push_back(h5::has_dataset(r.h5file.get(), r.group_path(i, "object_id"))
                          ? scalar("object_id").read_text(0, 1).at(0)
                          : r.groups[i]);
      scalar("ra").read_rows(0, 1, &c.ra[i]);
      scalar("dec").read_rows(0, 1, &c.dec[i]);
      if (with_healpix && h5::has_dataset(r.h5file.get(), r.group_path(i, "healpix")))
        scalar("healpix").read_rows(0, 1, &c.healpix[i]);
    }
  } else {
    c.ids = r.ids->read_text(0, r.rows);
    r.ra->read_rows(0, r.rows, c.ra.data());
    r.dec->read_rows(0, r.rows, c.dec.data());
    if (with_healpix && r.healpix) r.healpix->read_rows(0, r.rows, c.healpix.data());
  }
  for (const std::string& g : r.other_groups)
    c.warnings.push_back("group '" + g + "' in '" + r.file.path + "' has no object_id, ra or dec: not an object, ignored");
  for (int64_t i = 0; i < r.rows; ++i) {
    if (c.ids[i].empty())
      throw FormatError("row " + std::to_string(i) + " of '" + r.file.path + "' has an empty object_id");
    // Stored as is, a broken id would make every JSON answer naming it invalid.
    if (!text::valid_utf8(c.ids[i]))
      throw FormatError("object_id of row " + std::to_string(i) + " in '" + r.file.path + "' is not valid UTF-8 (" +
                        escaped_bytes(c.ids[i]) + ")");
    if (!valid_sky_position(c.ra[i], c.dec[i]))
      throw FormatError("object '" + c.ids[i] + "' in '" + r.file.path + "' has an invalid position ra=" +
                        std::to_string(c.ra[i]) + " dec=" + std::to_string(c.dec[i]));
  }
  if (!with_healpix) return c;
  // The position decides the cell: a stored healpix that disagrees with it
  // would make --cells find the object in the wrong place. Positions checked
  // above, so cells computed in parallel (a million rows: ~0.1 s on one core).
  std::vector<int64_t> stored = std::move(c.healpix);
  c.healpix.resize(static_cast<size_t>(r.rows));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < r.rows; ++i) c.healpix[i] = healpix_cell(c.ra[i], c.dec[i]);
  int64_t disagree = 0, first = -1, outside = 0, first_outside = -1;
  for (int64_t i = 0; i < r.rows; ++i) {
    if (stored[i] != -1 && stored[i] != c.healpix[i] && disagree++ == 0) first = i;
    if (r.file.healpix >= 0 && c.healpix[i] != r.file.healpix && outside++ == 0) first_outside = i;
  }
  if (disagree > 0)
    c.warnings.push_back("'" + r.file.path + "': " + std::to_string(disagree) + " of " + std::to_string(r.rows) +
                         " stored healpix values disagree with ra/dec (object '" + c.ids[first] + "': stored " +
                         std::to_string(stored[first]) + ", position in cell " + std::to_string(c.healpix[first]) +
                         "); recomputed from ra/dec");
  if (outside > 0)
    c.warnings.push_back("'" + r.file.path + "' is in folder healpix=" + std::to_string(r.file.healpix) + " but " +
                         std::to_string(outside) + " of its " + std::to_string(r.rows) +
                         " objects lie in other cells (object '" + c.ids[first_outside] + "' in cell " +
                         std::to_string(c.healpix[first_outside]) + "); each is stored under its own cell");
  return c;
}

void MmuFileReader::read_sky_columns(SkyColumns* out) const {
  const Rep& r = *rep_;
  const size_t first = out->ra.size(), n = static_cast<size_t>(r.rows);
  if (!r.groups.empty()) {  // MaNGA: one object per group, a few thousand at most
    FileCatalog c = read_catalog(/*with_healpix=*/false);
    out->ra.insert(out->ra.end(), c.ra.begin(), c.ra.end());
    out->dec.insert(out->dec.end(), c.dec.begin(), c.dec.end());
    out->ids.append_texts(std::move(c.ids));
    out->warnings.insert(out->warnings.end(), c.warnings.begin(), c.warnings.end());
    return;
  }
  out->ra.resize(first + n);  // unset: read below
  out->dec.resize(first + n);
  const auto id_type = r.ids->info().type;
  std::vector<std::string> texts;
  Column<uint64_t> numbers;
  if (id_type != h5::TypeClass::kString) numbers.resize(n);
  // Columns stored as they are held in memory (h5py's default for float64
  // and int64 arrays) are read straight from the file by all threads, each
  // mapping the pages it writes (fresh pages are cleared by the kernel on
  // first touch: slow in some VMs, so not on one thread); the others by HDF5
  // here, converted, their pages mapped in one call first.
  std::vector<h5::RawRead> direct;
  auto read = [&](const h5::Dataset& d, hid_t mem_type, auto* to) {
    if (const auto raw = d.raw_rows(0, r.rows, mem_type)) {
      direct.push_back({*raw, to, d.where()});
    } else {
      populate(to, n * sizeof(*to));
      d.read_rows(0, r.rows, to);
    }
  };
  read(*r.ra, H5T_NATIVE_DOUBLE, out->ra.data() + first);
  read(*r.dec, H5T_NATIVE_DOUBLE, out->dec.data() + first);
  if (id_type == h5::TypeClass::kString)
    texts = r.ids->read_text(0, r.rows);
  else if (id_type == h5::TypeClass::kUnsignedInteger)
    read(*r.ids, H5T_NATIVE_UINT64, numbers.data());
  else
    read(*r.ids, H5T_NATIVE_INT64, reinterpret_cast<int64_t*>(numbers.data()));
  h5::read_raw_in_parallel(direct);
  const double* ra = out->ra.data() + first;
  const double* dec = out->dec.data() + first;
  // The checks of read_catalog, on all cores; the first failing row is
  // reported, as there.
  auto id_ok = [&](size_t i) { return texts.empty() || (!texts[i].empty() && text::valid_utf8(texts[i])); };
  int64_t bad = r.rows;
#pragma omp parallel for schedule(static) reduction(min : bad)
  for (int64_t i = 0; i < r.rows; ++i)
    if (!id_ok(static_cast<size_t>(i)) || !valid_sky_position(ra[i], dec[i])) bad = std::min(bad, i);
  if (bad < r.rows) {
    const size_t i = static_cast<size_t>(bad);
    if (!texts.empty() && texts[i].empty())
      throw FormatError("row " + std::to_string(i) + " of '" + r.file.path + "' has an empty object_id");
    if (!texts.empty() && !text::valid_utf8(texts[i]))
      throw FormatError("object_id of row " + std::to_string(i) + " in '" + r.file.path +
                        "' is not valid UTF-8 (" + escaped_bytes(texts[i]) + ")");
    const std::string id = !texts.empty() ? texts[i]
                           : id_type == h5::TypeClass::kUnsignedInteger
                               ? std::to_string(numbers[i])
                               : std::to_string(static_cast<int64_t>(numbers[i]));
    throw FormatError("object '" + id + "' in '" + r.file.path + "' has an invalid position ra=" +
                      std::to_string(ra[i]) + " dec=" + std::to_string(dec[i]));
  }
  if (texts.empty())
    out->ids.append_integer_column(
        id_type == h5::TypeClass::kUnsignedInteger ? ObjectIds::Kind::kUnsigned : ObjectIds::Kind::kSigned,
        std::move(numbers));
  else
    out->ids.append_texts(std::move(texts));
}

std::vector<ScalarColumn> MmuFileReader::read_scalar_columns() const {
  const Rep& r = *rep_;
  std::set<std::string> roles = {"object_id", "ra", "dec", "healpix"};
  for (const auto* d : {&r.ids, &r.ra, &r.dec, &r.healpix})
    if (*d) roles.insert((*d)->info().name);
  return read_file_scalar_columns(r.h5file.get(), r.file.path, r.layout, r.rows, r.groups, roles);
}

void MmuFileReader::read_images(int64_t start, int64_t count, ImageBatch* out) const {
  const Rep& r = *rep_;
  if (r.modality != Modality::kImage) throw InternalError("read_images on a non-image file " + r.file.path);
  const auto d = r.image_dims();
  out->count = count;
  out->bands = d[0];
  out->height = d[1];
  out->width = d[2];
  out->band_names = r.img.names;
  out->pixel_scale = r.img.pixel_scale;
  out->space_bands = r.img.used;
  const int64_t plane = d[1] * d[2];
  const int64_t per_obj = d[0] * plane;
  out->pixels.resize(static_cast<size_t>(count * per_obj));
  out->good.resize(out->pixels.size());
  if (r.channels_last) {  // (H, W, bands) on disk -> (bands, H, W)
    std::vector<float> raw(out->pixels.size());
    r.image->read_rows(start, count, raw.data());
    for (int64_t i = 0; i < count; ++i)
      for (int64_t p = 0; p < plane; ++p)
        for (int64_t b = 0; b < d[0]; ++b) out->pixels[i * per_obj + b * plane + p] = raw[(i * plane + p) * d[0] + b];
  } else {
    r.image->read_rows(start, count, out->pixels.data());
  }
  if (!r.image_mask) {
    std::fill(out->good.begin(), out->good.end(), uint8_t{1});
    return;
  }
  if (r.image_mask->row_shape().size() == 3) {
    r.image_mask->read_rows_bool(start, count, out->good.data());  // True = good, as MMU writes images
    return;
  }
  // One (H,W) mask shared by every band (legacysurvey): broadcast it.
  std::vector<uint8_t> shared(static_cast<size_t>(count * plane));
  r.image_mask->read_rows_bool(start, count, shared.data());
  for (int64_t i = 0; i < count; ++i)
    for (int64_t b = 0; b < d[0]; ++b)
      std::copy_n(shared.data() + i * plane, plane, out->good.data() + i * per_obj + b * plane);
}

namespace {

// MaNGA's integrated spectrum: inverse-variance-free sum of usable spaxels
// (mask == 0, ivar > 0), read in blocks of spaxels to bound memory.
void integrate_cube(const h5::Dataset& spaxels, int64_t* length, std::vector<float>* flux, std::vector<float>* ivar,
                    std::vector<float>* lambda) {
  const int64_t n = spaxels.rows();
  const int64_t width = spaxels.field_width("flux");
  if (width <= 1) throw FormatError(spaxels.where() + " has no array field 'flux' (MaNGA spaxels table)");
  for (const char* f : {"ivar", "mask", "lambda"})
    if (spaxels.field_width(f) != width)
      throw FormatError(spaxels.where() + ": field '" + f + "' must have as many values as 'flux'");
  lambda->resize(width);
  spaxels.read_field("lambda", width, 0, 1, lambda->data());
  *length = width;
  std::vector<double> sum(width, 0.0), var(width, 0.0);
  std::vector<int64_t> used(width, 0);
  const int64_t block = 64;
  std::vector<float> f(block * width), iv(block * width), m(block * width);
  for (int64_t s = 0; s < n; s += block) {
    const int64_t c = std::min(block, n - s);
    spaxels.read_field("flux", width, s, c, f.data());
    spaxels.read_field("ivar", width, s, c, iv.data());
    spaxels.read_field("mask", width, s, c, m.data());
    for (int64_t i = 0; i < c * width; ++i) {
      if (m[i] != 0.0f || !(iv[i] > 0.0f) || !std::isfinite(f[i])) continue;
      sum[i % width] += f[i];
      var[i % width] += 1.0 / iv[i];
      ++used[i % width];
    }
  }
  flux->resize(width);
  ivar->resize(width);
  for (int64_t k = 0; k < width; ++k) {
    (*flux)[k] = static_cast<float>(sum[k]);
    (*ivar)[k] = used[k] ? static_cast<float>(1.0 / var[k]) : 0.0f;
  }
}

}  // namespace

void MmuFileReader::read_spectra(int64_t start, int64_t count, SpectrumBatch* out) const {
  const Rep& r = *rep_;
  if (r.modality != Modality::kSpectrum) throw InternalError("read_spectra on a non-spectrum file " + r.file.path);
  if (!r.groups.empty()) {
    out->count = count;
    out->flux.clear();
    out->ivar.clear();
    out->lambda.clear();
    for (int64_t i = start; i < start + count; ++i) {
      h5::Dataset sp(r.h5file.get(), r.file.path, r.group_path(i, "spaxels"));
      std::vector<float> f, iv, lam;
      int64_t len = 0;
      integrate_cube(sp, &len, &f, &iv, &lam);
      if (i > start && len != out->length) throw FormatError(sp.where() + ": spectra of different lengths in one file");
      out->length = len;
      out->flux.insert(out->flux.end(), f.begin(), f.end());
      out->ivar.insert(out->ivar.end(), iv.begin(), iv.end());
      out->lambda.insert(out->lambda.end(), lam.begin(), lam.end());
    }
    out->good.assign(out->flux.size(), 1);
  } else {
    const int64_t len = r.flux->row_shape()[0];
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
  }
  for (size_t i = 0; i < out->good.size(); ++i)
    if (!(out->ivar[i] > 0.0f) || !(out->lambda[i] > 0.0f)) out->good[i] = 0;
}

void MmuFileReader::read_light_curves(int64_t start, int64_t count, LightCurveBatch* out) const {
  const Rep& r = *rep_;
  if (r.modality != Modality::kLightCurve) throw InternalError("read_light_curves on " + r.file.path);
  out->count = count;
  if (r.lightcurve) {  // plasticc: (N, bands, [mjd, flux, flux_err], L), float64 on disk
    const auto s = r.lightcurve->row_shape();
    out->bands = s[0];
    out->length = s[2];
    out->magnitudes = false;
    std::vector<float> raw(static_cast<size_t>(count * s[0] * 3 * s[2]));
    r.lightcurve->read_rows(start, count, raw.data());
    const size_t n = static_cast<size_t>(count * s[0] * s[2]);
    out->time.resize(n);
    out->value.resize(n);
    out->error.resize(n);
    for (int64_t ob = 0; ob < count * s[0]; ++ob)
      for (int64_t k = 0; k < s[2]; ++k) {
        const size_t dst = ob * s[2] + k;
        out->time[dst] = raw[(ob * 3 + 0) * s[2] + k];
        out->value[dst] = raw[(ob * 3 + 1) * s[2] + k];
        out->error[dst] = raw[(ob * 3 + 2) * s[2] + k];
      }
  } else {  // SN files: time, mag|flux, *_err of shape (bands, L) per object; tess: (L) per row
    const auto s = r.lc_time->row_shape();
    out->bands = s.size() == 2 ? s[0] : 1;
    out->length = s.back();
    out->magnitudes = r.lc_magnitudes;
    const size_t n = static_cast<size_t>(count * out->bands * out->length);
    out->time.resize(n);
    out->value.resize(n);
    out->error.resize(n);
    r.lc_time->read_rows(start, count, out->time.data());
    r.lc_value->read_rows(start, count, out->value.data());
    r.lc_err->read_rows(start, count, out->error.data());
  }
  mark_light_curve_padding(out);
}

std::vector<std::string> MmuFileReader::light_curve_band_names(int64_t index) const {
  const Rep& r = *rep_;
  if (r.modality != Modality::kLightCurve) throw InternalError("light_curve_band_names on " + r.file.path);
  if (r.lightcurve) return {};  // plasticc files name no bands
  auto b = r.open_opt("bands");
  if (!b) return {};
  const auto shape = r.lc_time->row_shape();
  const int64_t bands = shape.size() == 2 ? shape[0] : 1;
  // One (bands,) list for the file, or (N, bands): a list per object.
  const bool one_list = b->info().dims.size() == 1 && b->info().dims[0] == bands && b->rows() != 1;
  if (b->info().type != h5::TypeClass::kString || (!one_list && (b->row_size() != bands || b->rows() != r.rows)))
    throw FormatError(b->where() + " must hold " + std::to_string(bands) +
                      " band names per object, one per band of 'time'");
  return one_list ? b->read_text(0, bands) : b->read_text(index, 1);
}

void MmuFileReader::read_coefficients(int64_t start, int64_t count, CoeffBatch* out) const {
  const Rep& r = *rep_;
  if (r.modality != Modality::kXp) throw InternalError("read_coefficients on " + r.file.path);
  out->count = count;
  out->dim = r.coeff->row_shape()[0];
  out->values.resize(static_cast<size_t>(count * out->dim));
  r.coeff->read_rows(start, count, out->values.data());
}

}  // namespace mmu
