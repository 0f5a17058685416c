// Discovery and batched reading of MMU v1 files
// (<root>/<dataset>/<subset>/healpix=N/*.hdf5|*.h5, one example per row).
// An MmuFileReader is not thread-safe: the serial HDF5 library must be used
// from one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mmu/column.h"
#include "mmu/types.h"  // Modality, SourceFile

namespace mmu {

// How a file arranges its objects.
enum class FileLayout {
  kRowTable,          // axis 0 of every dataset is the object
  kPerObjectScalars,  // one object per file, with a scalar object_id (SN light curves)
  kGroupsPerObject,   // one root group per object (MaNGA)
};
const char* layout_name(FileLayout l);  // "row table", "per-object scalars", "groups per object"

// An input that looks like an MMU file but cannot be one.
struct UnusableInput {
  std::string path;
  std::string why;  // a sentence naming the path
};

// Every *.hdf5 / *.h5 under the roots (a root may also be a single file),
// sorted by (dataset, subset, healpix, path) so builds are deterministic.
// Names that cannot be used are never passed over in silence: a dangling
// link or a folder named *.hdf5, a file under a healpix=N folder whose N is
// not an nside-16 cell (healpix=abc, healpix=5000) go to `unusable`, or, when
// it is null, the first one throws FormatError.
// Throws NotFound when a root does not exist.
std::vector<SourceFile> discover_files(const std::vector<std::string>& roots,
                                       std::vector<UnusableInput>* unusable = nullptr);

// Object ids as their files store them, for catalogs of millions of objects
// (a cross-match side): integer ids stay integers and their text (the decimal
// digits, as FileCatalog::ids has it) is made only for the rows printed;
// string ids are held as text. A million std::strings cost more to make and
// page in than reading the file.
class ObjectIds {
 public:
  enum class Kind { kSigned, kUnsigned, kText };
  // Longest text of an integer id: 20 digits, or a sign and 19.
  static constexpr size_t kMaxIntegerText = 20;

  Kind kind() const { return kind_; }
  size_t size() const { return kind_ == Kind::kText ? texts_.size() : numbers_.size(); }
  std::string text(size_t i) const;
  // Id i's integer (int64_t or uint64_t bits). REQUIRES: kind() is not kText.
  uint64_t number(size_t i) const { return numbers_[i]; }
  // Writes id i's text at `to`, which has room for it (longest()); returns its end.
  char* write(size_t i, char* to) const;
  // Bytes of the longest text; kMaxIntegerText for integer ids.
  size_t longest() const;
  // Asks for id i to be fetched into the cache (ids read at random).
  void prefetch(size_t i) const {
    if (kind_ == Kind::kText)
      __builtin_prefetch(&texts_[i]);
    else
      __builtin_prefetch(&numbers_[i]);
  }

  // Appends ids of `kind` (the integers as int64_t or uint64_t bits); ids of
  // another kind than those held turn both into text. The column is taken
  // over when it is the first; a std::vector's numbers are copied.
  void append_integer_column(Kind kind, Column<uint64_t>&& numbers);
  void append_integers(Kind kind, std::vector<uint64_t>&& numbers);
  void append_texts(std::vector<std::string>&& texts);

 private:
  void to_text();
  Kind kind_ = Kind::kSigned;
  Column<uint64_t> numbers_;
  std::vector<std::string> texts_;
};

// One file's ids and positions for a cross-match, checked as read_catalog
// checks them (FormatError naming the file and row: an empty or non-UTF-8
// id, an invalid position), and its warnings, each naming the file.
struct SkyColumns {
  ObjectIds ids;
  Column<double> ra, dec;  // degrees
  std::vector<std::string> warnings;
};

// Per-object identity and position of one file, in file row order.
struct FileCatalog {
  std::vector<std::string> ids;  // canonical text: trimmed strings, decimal integers
  std::vector<double> ra, dec;   // degrees
  std::vector<int64_t> healpix;  // nside-16 NESTED cell (computed from ra/dec); empty if not asked for
  // What the reader assumed about the file, each naming it: stored healpix
  // values that disagree with ra/dec (recomputed), objects outside the file's
  // healpix=N folder, root groups that are not objects.
  std::vector<std::string> warnings;
};

// One per-object scalar catalog column of a file ("Z", "SPECTYPE", "FLUX_G"),
// one entry per file row. Exactly one of the value vectors is filled.
struct ScalarColumn {
  enum class Type { kInteger, kReal, kText };
  std::string name;                // dataset name as in the file (case-sensitive)
  Type type = Type::kReal;
  std::vector<int64_t> integers;   // kInteger: signed/unsigned up to 63 bits, booleans as 0/1
  std::vector<double> reals;       // kReal: floats, and unsigned 64-bit integers
  std::vector<std::string> texts;  // kText: trimmed byte/UTF-8 strings
  std::vector<uint8_t> present;    // 1 = the object has a value (not NaN, not absent from its group)
};

// A batch of images, row-major count x bands x height x width.
struct ImageBatch {
  int64_t count = 0, bands = 0, height = 0, width = 0;
  std::vector<float> pixels;
  std::vector<uint8_t> good;  // same shape as pixels; 1 = usable (mask polarity applied)
  std::vector<std::string> band_names;  // per band, lower-cased ("des-g", "hsc-y"); see ImageBands
  double pixel_scale = 0;               // arcsec per pixel (ImageBands::pixel_scale); 0 = not known
  // Bands the baseline space takes, in its order (ImageBands::used); empty = all, in file order.
  std::vector<int64_t> space_bands;
};

// How an image file's bands and pixel scale were settled (mmu/image_bands.h
// holds the table and the space rule).
struct ImageBands {
  std::vector<std::string> names;  // per band, lower-cased: image_band, or the survey builder's order
  bool names_from_survey = false;  // the file has no image_band (a warning says so)
  std::string space;               // the baseline space ("image", "image-rgb", ...)
  std::vector<int64_t> used;       // bands that space takes, in its order
  double pixel_scale = 0;          // arcsec per pixel
  std::string scale_source;        // "file: image_scale", "file: attribute pxscale", "table", "assumed"
};

// A batch of spectra, row-major count x length.
struct SpectrumBatch {
  int64_t count = 0, length = 0;
  std::vector<float> flux, ivar, lambda;
  std::vector<uint8_t> good;  // 1 = usable: mask says good, ivar > 0, lambda > 0 (SDSS pads with -1)
};

// What read_light_curves took for padding, in points. MMU's builders pad each
// band row at its end, up to the longest band (per object) or the longest
// object (per file): time -99 with value and error 0 (the SNANA template:
// swift_sne_ia, foundation, ps1_sne_ia, snls, des_y3_sne_ia), or all three 0
// (cfa, csp, plasticc, tess). Only the counts other than the two trailing
// runs are assumptions; padding_warnings turns them into messages.
struct LightCurvePadding {
  int64_t trailing_minus99 = 0;  // trailing (time -99, 0, 0) points: padding
  int64_t trailing_zero = 0;     // trailing (0, 0, 0) points: padding
  int64_t inner_padding = 0;     // (-99 or 0, 0, 0) points with real points after them: taken as missing
  int64_t sentinel_kept = 0;     // time -99 or 0 with a non-zero value or error: kept as observations
  int64_t non_finite = 0;        // real time, NaN/Inf value or error (tess keeps such cadences): taken as missing
  LightCurvePadding& operator+=(const LightCurvePadding& o);
};

// A batch of light curves, row-major count x bands x length. Padding and
// points without a finite value are marked unusable (see LightCurvePadding).
struct LightCurveBatch {
  int64_t count = 0, bands = 0, length = 0;
  std::vector<float> time, value, error;
  std::vector<uint8_t> good;
  bool magnitudes = false;  // value is a magnitude (cfa, csp) rather than a flux (SNANA template, plasticc, tess)
  LightCurvePadding padding;
};

// Sets good and padding from time/value/error (read_light_curves calls it).
void mark_light_curve_padding(LightCurveBatch* batch);

// One warning per assumption in a file's padding counts, naming the file;
// empty when the file follows one builder convention exactly.
std::vector<std::string> padding_warnings(const std::string& path, const LightCurvePadding& padding);

// A batch of fixed-length coefficient vectors (Gaia XP), count x dim.
struct CoeffBatch {
  int64_t count = 0, dim = 0;
  std::vector<float> values;
};

// Reads one MMU file in batches, whatever its layout: a row table (axis 0 is
// the object), a per-object file of scalars (SN light curves), or one group per
// object (MaNGA). Never loads a whole image or spectrum array at once. Every
// error names the file and the dataset.
class MmuFileReader {
 public:
  // Opens and validates the layout (required datasets, shapes, dtypes).
  explicit MmuFileReader(const SourceFile& file);
  ~MmuFileReader();
  MmuFileReader(const MmuFileReader&) = delete;
  MmuFileReader& operator=(const MmuFileReader&) = delete;

  // The datasets the reader took for each role ("" when absent).
  struct Columns {
    std::string id, ra, dec, healpix, data, mask;
  };

  const SourceFile& file() const;
  Modality modality() const;
  Columns columns() const;
  int64_t rows() const;

  // with_healpix = false leaves healpix empty (a cross-match needs no cells).
  FileCatalog read_catalog(bool with_healpix = true) const;
  // Appends this file's ids and positions to `out` (its vectors grown in
  // place: reserve them for every file first); what a cross-match reads.
  void read_sky_columns(SkyColumns* out) const;
  // Every numeric, boolean or short-string dataset holding one scalar per
  // object (root (N,) datasets of row tables, scalars of per-object files and
  // of MaNGA groups), except the id/ra/dec/healpix role columns, in name order.
  std::vector<ScalarColumn> read_scalar_columns() const;
  // Rows [start, start+count). REQUIRES: modality() matches.
  void read_images(int64_t start, int64_t count, ImageBatch* out) const;
  void read_spectra(int64_t start, int64_t count, SpectrumBatch* out) const;
  void read_light_curves(int64_t start, int64_t count, LightCurveBatch* out) const;
  // The names of object `index`'s light-curve bands, from where the builders
  // store them (cfa/csp: 'bands', one name per band of 'time'); empty when the
  // file has none (plasticc, the SNANA template). FormatError naming the
  // dataset when it does not hold one text name per band.
  std::vector<std::string> light_curve_band_names(int64_t index) const;
  void read_coefficients(int64_t start, int64_t count, CoeffBatch* out) const;

  FileLayout layout() const;
  // Image files: their bands, space and pixel scale (settled when opened).
  const ImageBands& image_bands() const;
  // The datasets the reader uses besides Columns', with their role
  // (image_band, spectrum_lambda, light-curve time, ...), for inspect.
  std::vector<std::pair<std::string, std::string>> other_roles() const;
  // Assumptions about the file made when it was opened (bands named from
  // the survey, an assumed pixel scale), each naming the file.
  const std::vector<std::string>& warnings() const;
  // Pixels per spectrum (the MaNGA cube's wavelength count for groups); 0 when not spectra.
  int64_t spectrum_length() const;

 private:
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

}  // namespace mmu
