// `mmu-search export`: a space's vectors with their catalog rows, out to the
// formats astronomers load elsewhere: a FITS binary table (TOPCAT, astropy),
// HDF5 in MMU's own layout (one file per HEALPix cell, ingestible again by
// mmu-index build), CSV, or a .npy matrix with an ids file.
//
// Exports stream: rows go out in blocks, so a space larger than memory
// exports. Everything is written under a temporary name in the destination's
// folder and renamed at the end; a failure at any point leaves nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmu {

class Store;

enum class ExportFormat { kFits, kHdf5, kCsv, kNpy };

// "fits", "hdf5", "csv" or "npy"; throws InvalidArgument naming --format otherwise.
ExportFormat parse_export_format(const std::string& text);

struct ExportOptions {
  std::string space;  // a space name, or a model name with one version in the store
  ExportFormat format = ExportFormat::kFits;
  // fits/csv/npy: the file to write (npy also writes <stem>.ids.txt next to it);
  // hdf5: a folder that must not exist yet, filled with <space>/healpix=N/001-of-001.hdf5.
  std::string out;
  std::string where;       // --where expression; "" = every object of the space
  std::string probe_path;  // a saved probe (probe.h): adds its prediction per object; "" = none
  bool with_embedding = true;  // csv only: false leaves the e0.. columns out (mmu-search predict)
  int64_t block_rows = 8192;
};

struct ExportSummary {
  std::string space;               // the resolved name
  int64_t rows = 0, dim = 0;
  std::vector<std::string> files;  // what was written, final paths
};

// Throws InvalidArgument for a bad format/space/--where or a selection with no
// object, IoError naming the path when the destination cannot be written.
ExportSummary export_space(const Store& store, const ExportOptions& options);

}  // namespace mmu
