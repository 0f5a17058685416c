// Rows of HDF5 datasets read byte for byte, in the dataset's own type (no
// conversion), to be written into a dataset of the same type. Private to
// mmu_core; one thread at a time (serial HDF5).
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

#include "read/hdf5_util.h"

namespace mmu::pairs {

// A per-object dataset of a row table: axis 0 is the object.
struct RowDataset {
  std::string name;
  h5::Handle dataset, type;     // the file's type, used as the memory type too
  std::vector<hsize_t> row_dims;  // dims[1:]
  size_t row_bytes = 0;
};

// Every dataset at the root of `file` whose axis 0 has `rows` entries, in name
// order; variable-length types are left out (named in *skipped).
std::vector<RowDataset> row_datasets(hid_t file, const std::string& path, int64_t rows,
                                     std::vector<std::string>* skipped);

// Rows `rows` (ascending, distinct) of d into out (rows.size() * row_bytes),
// each run of consecutive rows in one read.
void read_rows(const RowDataset& d, const std::string& path, const std::vector<hsize_t>& rows, char* out);

}  // namespace mmu::pairs
