// Which HEALPix cells a sharded build reads and which a fit samples. The
// unit is an input file's nside-16 NESTED cell, its healpix=N folder, so
// every file, and each of its objects, falls in exactly one shard.
// Private to mmu_core.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "mmu/types.h"

namespace mmu {

// --shard I/N or --cells LIST, parsed.
struct CellSelection {
  int64_t shard = -1, shards = 0;  // --shard I/N
  std::set<int64_t> cells;         // --cells
  bool active() const { return shards > 0 || !cells.empty(); }
  bool takes(int64_t cell) const;
  std::string describe() const;  // "shard 2/4" or "cells 3, 7-9"
};

// "I/N" (0 <= I < N) and "3,7,9-12" (ranges inclusive); empty text = none.
// Throws InvalidArgument naming the flag.
CellSelection parse_cell_selection(const std::string& shard, const std::string& cells);

// Shard I of N takes the cells c with c mod N == I: fixed by the cell alone,
// whatever the roots hold, and spreads a survey's neighbouring cells over
// all shards.
int64_t shard_of_cell(int64_t cell, int64_t shards);

// The files of the selected cells, discovery order kept. A file outside a
// healpix=N folder has no cell and is refused, named; so is a selection
// that takes no file. A listed cell without files is a warning.
std::vector<SourceFile> select_cells(const std::vector<SourceFile>& files, const CellSelection& sel,
                                     std::vector<std::string>* warnings);

// The fit's sample: the `count` cells with the smallest
// splitmix64(seed + splitmix64(cell)) (a bijection, so no ties), or every
// cell when there are no more than `count`. Returned in ascending cell order.
std::vector<int64_t> sample_cells(const std::set<int64_t>& cells, int64_t count, uint64_t seed);

}  // namespace mmu
