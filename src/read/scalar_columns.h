// The per-object scalar catalog columns of an open MMU file: the work behind
// MmuFileReader::read_scalar_columns. Private to mmu_core.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "read/hdf5_util.h"
#include "mmu/mmu_files.h"

namespace mmu {

// Every numeric, boolean or short-string dataset of `file` (opened from
// `file_path`) that holds one scalar per object, except those named in `roles`,
// in name order. `groups` lists the groups-per-object layout's groups in row
// order (empty for the other layouts); `rows` is the file's object count.
std::vector<ScalarColumn> read_file_scalar_columns(hid_t file, const std::string& file_path, FileLayout layout,
                                                   int64_t rows, const std::vector<std::string>& groups,
                                                   const std::set<std::string>& roles);

}  // namespace mmu
