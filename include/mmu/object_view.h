// An object of a store rendered for display (the gallery of `mmu-search
// serve`): a colour cutout as PNG, a spectrum or a light curve as JSON, read
// from the object's own MMU file through MmuFileReader. The store's catalog
// knows each object's file and row in it; a file that moved or changed since
// the build (its size or mtime differ from the catalog's) is never read: the
// caller gets a placeholder and a note naming the file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mmu/mmu_files.h"
#include "mmu/store.h"

namespace mmu {

// ---- Colour composites (src/view/colour.cpp) ----

// Which bands of an image become blue, green and red, and each band's
// multiplier before the stretch. By band name (the letter after the last '-',
// "des-g" -> g): g,r,z -> B,G,R as the Legacy Survey viewer does; else g,r,i
// (HSC); else the first three bands in file order (taken as blue to red);
// two bands -> B, mean, R; one band -> grey. Scales as the Legacy Survey
// viewer's: g 6.0, r 3.4, i 3.0, z 2.2, other bands 1.0.
struct ColourBands {
  int blue = 0, green = 0, red = 0;
  float blue_scale = 1, green_scale = 1, red_scale = 1;
  bool mean_green = false;  // green = (blue + red) / 2 (two-band images)
  std::string description;  // "g,r,z -> B,G,R", shown beside the cutout
};
ColourBands choose_colour_bands(const std::vector<std::string>& band_names, int64_t bands);

// An 8-bit RGB raster, row-major, 3 bytes per pixel.
struct RgbImage {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

// Lupton et al. (2004) asinh colour, exactly astropy's make_lupton_rgb
// (minimum 0) in float32: I = (R+G+B)/3; each channel times
// asinh(I*Q/stretch) * slope / I with slope = 0.1*255/asinh(0.1*Q) (0 where
// I <= 0), negatives to 0; a pixel whose largest channel reaches 255 is scaled
// down to it (colour kept); truncated to uint8.
inline constexpr float kLuptonQ = 8.0f;
inline constexpr float kLuptonStretch = 0.5f;
// Masked pixels (mask bad in any band used, or a non-finite value): magenta.
inline constexpr uint8_t kMaskedRgb[3] = {255, 0, 255};
RgbImage lupton_rgb(const ImageBatch& batch, int64_t index, const ColourBands& bands);

// Nearest-neighbour resampling to size x size: output pixel i takes input
// floor((i + 0.5) * in / size).
RgbImage resample_square(const RgbImage& in, int64_t size);

// resample_square(lupton_rgb(batch, index, bands), size), size 0 = the
// image's own: equal to it, but a shrunken cutout colours only the pixels the
// resampling takes (64 px of a 160 px image: 4096 pixels, not 25600).
RgbImage lupton_cutout(const ImageBatch& batch, int64_t index, const ColourBands& bands, int64_t size);

// A PNG file (8-bit RGB, no interlace) written with zlib.
std::string encode_png(const RgbImage& image);

// ---- Objects of a store ----

// The object `object_id` of `survey` ("" = any, when the id is unique).
// Throws NotFound naming the id, InvalidArgument when it is ambiguous.
CatalogRow find_object(const Store& store, const std::string& survey, const std::string& object_id);

// A rendered cutout; `note` is non-empty for a placeholder (the file moved or
// changed, or the object has no image) and says why, naming the file.
struct CutoutPng {
  std::string png;
  std::string note;
  std::string bands;  // ColourBands::description
};

// Renders objects for display. Reads are serialised (the HDF5 library is
// serial); rendered cutouts are kept in a bounded cache keyed by store
// generation, row and size. Safe to share between threads.
class ObjectViewer {
 public:
  explicit ObjectViewer(size_t cache_bytes = 64u << 20);
  ~ObjectViewer();
  ObjectViewer(const ObjectViewer&) = delete;
  ObjectViewer& operator=(const ObjectViewer&) = delete;

  // size 0: the image's own size; else 16..1024 (InvalidArgument otherwise).
  CutoutPng cutout(const Store& store, const CatalogRow& row, int64_t size);
  // cutout() of each row, in order (a page's grid at once): the ones not
  // cached are read grouped by file, each run of neighbouring rows of a file
  // by one read (each compressed chunk decompressed once, however many
  // objects it holds), then drawn.
  std::vector<CutoutPng> cutouts(const Store& store, const std::vector<CatalogRow>& rows, int64_t size);
  // {"object_id", "survey", "file", "wavelength", "flux", "mask" (1 = masked),
  // "redshift" (null when the file has no Z/z/REDSHIFT column), "note"};
  // a moved file gives only the ids and "note". NotFound for an object without a spectrum.
  // points > 0: at most that many bins of consecutive pixels (the page's cards are 300 px
  // wide; a whole spectrum is ~250 KB of JSON): each bin's mean wavelength, the mean of its
  // usable fluxes, and masked (1) when it has none.
  std::string spectrum_json(const Store& store, const CatalogRow& row, int64_t points = 0);
  // {"object_id", "survey", "file", "magnitudes", "bands": [{"band", "name",
  // "time", "value", "error"}], "note"}: the usable points of each band
  // (padding dropped); "name" as the file names the band (MmuFileReader::
  // light_curve_band_names), null when it does not; "band_note" when the
  // file's band names cannot be read.
  std::string light_curve_json(const Store& store, const CatalogRow& row);
  // {"object_id", "survey", "subset", "ra", "dec", "modality", "note",
  // "linked": [{"object_id", "survey", "modality"}]}: what the page shows of it.
  std::string object_json(const Store& store, const CatalogRow& row);
  // Cached cutouts' bytes (for tests and the bound).
  size_t cached_bytes() const;

 private:
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

}  // namespace mmu
