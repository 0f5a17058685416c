// The cross-match's sky index: points grouped into declination zones, each
// zone sorted by ra, so that the points within reach of a position lie in a
// few contiguous runs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "base/fresh_buffer.h"
#include "base/slice_sort.h"

namespace mmu::xmatch {

// Degrees to radians, as angular_separation_deg (sky.h) converts them.
inline constexpr double kDeg = M_PI / 180.0;

// Positions in one catalog, and offsets into them: 32 bits halve the memory
// that the bookkeeping arrays read and fault in.
using Index = uint32_t;

// Declination zones of equal height, zone z covering [-90 + z h, -90 + (z+1) h).
struct Zones {
  int64_t count;
  double height;

  explicit Zones(int64_t wanted) : count(std::max<int64_t>(1, wanted)), height(180.0 / static_cast<double>(count)) {}
  int64_t of(double dec) const {
    return std::clamp<int64_t>(static_cast<int64_t>(std::floor((dec + 90.0) / height)), 0, count - 1);
  }
  // The lower edge of zone z.
  double bottom(int64_t z) const { return -90.0 + height * static_cast<double>(z); }
  // The largest |dec| inside zone z.
  double max_abs_dec(int64_t z) const { return std::max(std::fabs(bottom(z)), std::fabs(bottom(z + 1))); }
};

// What a separation test needs of a right point, contiguous so that a zone's
// ra window is one sequential read. Its index in the caller's arrays is kept
// apart (ZoneIndex::index): only a pair reads it.
struct SkyPoint {
  double ra, dec;
  double cos_dec;  // cos(dec * kDeg) as angular_separation_deg computes it, once per point
};

// A point on its way into a zone sorted by ra, or a left point being matched.
struct IndexedPoint {
  double ra, dec;
  Index index;  // in the caller's arrays
};

// The points grouped by zone (in no order within a zone) by a counting sort,
// O(n) where a comparison sort costs O(n log n), ra taken modulo 360. Points
// without a valid position (ra or dec not finite, |dec| > 90) go last, to an
// extra zone zones.count; they are never matched. Returns the zone offsets
// (zones.count + 2).
Buffer<Index> group_by_zone(const std::vector<double>& ra, const std::vector<double>& dec, const Zones& zones,
                            Buffer<IndexedPoint>* grouped);

void sort_by_ra(IndexedPoint* begin, IndexedPoint* end, SortScratch<IndexedPoint>* scratch);

// The right points grouped by zone, each zone sorted by ra.
struct ZoneIndex {
  Buffer<Index> start;      // zones.count + 1 offsets into points
  Buffer<SkyPoint> points;  // the points with a valid position
  Buffer<Index> index;      // index[k]: points[k]'s index in the caller's arrays

  // Points without a valid position are left out.
  ZoneIndex(const std::vector<double>& ra, const std::vector<double>& dec, const Zones& zones);
};

}  // namespace mmu::xmatch
