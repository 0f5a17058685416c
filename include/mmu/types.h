// Plain value types that several layers pass to each other (catalog rows,
// spaces, search options and hits, the row filter), kept here so that a lower
// layer (vector search, the store) never includes a higher one's header to
// name them. No behaviour: the functions declared here are defined where noted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mmu {

// What an object carries that an encoder can embed; one embedding space each.
enum class Modality {
  kNone,        // catalog only (e.g. desi_provabgs)
  kImage,       // multi-band cutouts (legacysurvey, hsc)
  kSpectrum,    // 1-D spectra (desi, sdss; manga's integrated cube)
  kLightCurve,  // multi-band time series (plasticc, SN files)
  kXp,          // Gaia XP coefficients
};
// "none", "image", "spectrum", "lightcurve", "xp" (defined in src/read/file_reader.cpp).
const char* modality_name(Modality m);

// One MMU file found under a root (discover_files, mmu_files.h).
struct SourceFile {
  std::string path;      // root joined with the relative path
  std::string dataset;   // folder two levels above healpix=N ("legacysurvey"), or the root's name
  std::string subset;    // folder directly above healpix=N ("dr10_south_21"), may be ""
  int64_t healpix = -1;  // parsed from the healpix=N folder (leading zeros allowed), -1 if none
  int64_t size = 0;      // bytes
  int64_t mtime = 0;     // seconds since the epoch
};

// One object of a store's catalog.
struct CatalogRow {
  int64_t row = -1;        // store row: the id FAISS returns
  std::string object_id;   // canonical text form
  std::string survey;      // MMU dataset name, e.g. "legacysurvey"
  std::string subset;      // e.g. "dr10_south_21"
  double ra = 0, dec = 0;  // degrees
  int64_t healpix = -1;    // nside-16 NESTED cell
  int64_t hpx_fine = -1;   // order-29 NESTED key (rows of a partition are sorted by it)
  std::string file;        // source file path
  int64_t index_in_file = -1;
};

// One embedding space of a store, as its catalog records it.
struct SpaceInfo {
  std::string name;      // "image", "spectrum", ...
  std::string modality;  // modality_name() of the inputs
  std::string model;     // "baseline-pca" or a model card name
  std::string version;
  int64_t dim = 0;
  int64_t count = 0;     // vectors in the space
  std::string created;   // ISO 8601 UTC
  std::string sha256;    // of the model file (or of the baseline fit): what made these vectors
};

// A row of a search result.
struct Hit {
  int64_t id;   // row of the scanned matrix (or catalog row, where a caller says so)
  float score;  // inner product = cosine similarity for L2-normalised vectors
};

// Where exact scans run (names and parsing in device_search.h).
enum class SearchDevice {
  kCpu,       // the own OpenMP + BLAS scan (exact_top_k): the default
  kTorchCpu,  // LibTorch on the CPU: the GPU code path, runnable anywhere
  kCuda,      // LibTorch on the first CUDA device (builds with MMU_ENABLE_CUDA)
};

// How a query may use a space's index (see index_record.h).
struct SearchOptions {
  bool exact = false;     // scan exactly even when the space has an approximate index
  int64_t nprobe = 0;     // IVF lists to scan; 0 = the index's own setting
  int64_t ef_search = 0;  // HNSW candidate list; 0 = the index's own setting
  // Where exact scans run: the own scan (cpu), or LibTorch (torch-cpu, cuda;
  // device_search.h). A LibTorch device always scans exactly: with one, an
  // IVF/HNSW space is scanned in full as if opts.exact were given.
  SearchDevice device = SearchDevice::kCpu;
  // The process asks once and exits (mmu-search --like), not a server: a
  // scan that can copies the file parts it needs with pread rather than
  // mapping them, which costs a page fault per 4 KB of a page cache split
  // into small folios. Same answers.
  bool read_once = false;
};

// A circle on the sky (parse_cone, sky.h, reads one).
struct SkyCone {
  double ra = 0, dec = 0;  // degrees
  double radius_deg = 0;
};

// Which objects a query may return; every given restriction must hold.
// Store::filtered_vector_rows turns it into the vector rows a search may
// return (a filtered search is then exact).
struct RowFilter {
  std::vector<std::string> surveys;  // --in: dataset or dataset/subset names
  std::vector<int64_t> cells;        // --cells: nside-16 NESTED cells
  std::optional<SkyCone> cone;       // --cone
  std::string where;                 // --where: expression over catalog columns (where_filter.h)
  // Only these catalog rows (ascending, unique); not owned, must outlive the filter's use.
  const std::vector<int64_t>* rows = nullptr;
  bool active() const { return !surveys.empty() || !cells.empty() || cone || !where.empty() || rows; }
};

}  // namespace mmu
