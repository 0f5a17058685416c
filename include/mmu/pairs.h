// Cross-matched training pairs: the objects of two MMU surveys matched by
// position (as `xmatch` matches them, across cell borders), written as an
// MMU-layout dataset, one HDF5 file per HEALPix cell of the left object:
//   <out>/<name>/healpix=N/001-of-001.hdf5
// Each file holds one row per pair: every per-object dataset of both sides'
// source rows, copied byte for byte in their own types (the left side's under
// its names, the right side's identity and position as right_object_id,
// right_ra, right_dec and any other name already taken prefixed "right_"),
// left_object_id, separation_arcsec, healpix, and object_id = "LEFT_ID:RIGHT_ID"
// (unique in both modes, so `mmu-index build <out>` takes the files); left
// images without image_band per object get it written (their bands were named
// from the survey's name, which the pairs do not carry).
#pragma once

#include <cstdint>
#include <string>

namespace mmu {

struct PairsOptions {
  std::string left, right;  // MMU folders or files (row tables)
  double radius_deg = 1.0 / 3600.0;
  bool all_pairs = false;   // false: each left object's nearest right object
  std::string out;
  std::string name;         // "" = "<left dataset>_x_<right dataset>"
  int64_t batch_bytes = int64_t{16} << 20;  // source rows read at once (four more batches wait to be written)
  bool progress = true;     // a progress line when stderr is a terminal
};

struct PairsSummary {
  std::string dataset_dir;  // <out>/<name>
  int64_t pairs = 0, left_objects = 0, right_objects = 0;
  int64_t cells_written = 0, cells_kept = 0;  // kept: already complete from an earlier run
  int64_t pairs_written = 0;
};

// Streaming: memory holds both sides' positions and ids plus one batch of
// source rows per side, whatever the survey's size. Resumable: each cell is
// written to <file>.partial and renamed when complete, so a killed run leaves
// whole cells only, and a rerun with the same inputs and flags keeps them and
// writes the rest. A rerun with other inputs or flags into the same folder is
// refused (<out>/<name>/pairs_run.txt records them). Throws mmu::Error naming
// the file, dataset or flag at fault.
PairsSummary write_pairs(const PairsOptions& options);

}  // namespace mmu
