#include "ingest/cells.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "mmu/error.h"
#include "mmu/sky.h"

namespace mmu {

namespace {

// A whole decimal integer, or nullopt-like -1 on anything else.
int64_t parse_count(const std::string& s) {
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::strtoll(s.c_str(), nullptr, 10);
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

bool CellSelection::takes(int64_t cell) const {
  if (shards > 0) return shard_of_cell(cell, shards) == shard;
  return cells.count(cell) > 0;
}

std::string CellSelection::describe() const {
  if (shards > 0) return "shard " + std::to_string(shard) + "/" + std::to_string(shards);
  std::string out = "cells ";
  for (auto it = cells.begin(); it != cells.end();) {
    auto end = it;
    while (std::next(end) != cells.end() && *std::next(end) == *end + 1) ++end;
    out += (it == cells.begin() ? "" : ",") + std::to_string(*it);
    if (end != it) out += "-" + std::to_string(*end);
    it = std::next(end);
  }
  return out;
}

CellSelection parse_cell_selection(const std::string& shard, const std::string& cells) {
  CellSelection sel;
  if (!shard.empty() && !cells.empty()) throw InvalidArgument("--shard and --cells both given: choose one");
  if (!shard.empty()) {
    const size_t slash = shard.find('/');
    const int64_t i = slash == std::string::npos ? -1 : parse_count(shard.substr(0, slash));
    const int64_t n = slash == std::string::npos ? -1 : parse_count(shard.substr(slash + 1));
    if (i < 0 || n < 1 || i >= n)
      throw InvalidArgument("--shard '" + shard + "': expected I/N with 0 <= I < N (e.g. 0/4 for the first of 4; a Slurm "
                            "array task passes $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)");
    sel.shard = i;
    sel.shards = n;
  }
  if (!cells.empty()) {
    size_t at = 0;
    while (at <= cells.size()) {
      const size_t comma = std::min(cells.find(',', at), cells.size());
      const std::string item = cells.substr(at, comma - at);
      const size_t dash = item.find('-');
      const int64_t lo = parse_count(item.substr(0, dash));
      const int64_t hi = dash == std::string::npos ? lo : parse_count(item.substr(dash + 1));
      if (lo < 0 || hi < lo || hi >= kNumCells)
        throw InvalidArgument("--cells '" + cells + "': '" + item + "' is not a cell or a range A-B of nside-16 cells (0.." +
                              std::to_string(kNumCells - 1) + ")");
      for (int64_t c = lo; c <= hi; ++c) sel.cells.insert(c);
      at = comma + 1;
    }
  }
  return sel;
}

int64_t shard_of_cell(int64_t cell, int64_t shards) { return cell % shards; }

std::vector<SourceFile> select_cells(const std::vector<SourceFile>& files, const CellSelection& sel,
                                     std::vector<std::string>* warnings) {
  std::vector<SourceFile> out;
  std::set<int64_t> present, taken;
  for (const SourceFile& f : files) {
    if (f.healpix < 0)
      throw InvalidArgument("'" + f.path + "' is not in a healpix=N folder: its HEALPix cell, by which " + sel.describe() +
                            " is chosen, is unknown");
    present.insert(f.healpix);
    if (!sel.takes(f.healpix)) continue;
    taken.insert(f.healpix);
    out.push_back(f);
  }
  for (int64_t c : sel.cells)
    if (!present.count(c)) warnings->push_back("--cells: cell " + std::to_string(c) + " has no file under the roots");
  if (out.empty())
    throw InvalidArgument(sel.describe() + " takes none of the " + std::to_string(present.size()) +
                          " cells that hold input files" +
                          (sel.shards > static_cast<int64_t>(present.size())
                               ? " (more shards than cells: use at most " + std::to_string(present.size()) + ")"
                               : std::string()) +
                          "; nothing to build");
  return out;
}

std::vector<int64_t> sample_cells(const std::set<int64_t>& cells, int64_t count, uint64_t seed) {
  std::vector<std::pair<uint64_t, int64_t>> keyed;
  for (int64_t c : cells) keyed.emplace_back(splitmix64(seed + splitmix64(static_cast<uint64_t>(c))), c);
  std::sort(keyed.begin(), keyed.end());
  if (count >= 0 && static_cast<int64_t>(keyed.size()) > count) keyed.resize(static_cast<size_t>(count));
  std::vector<int64_t> out;
  for (const auto& kc : keyed) out.push_back(kc.second);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace mmu
