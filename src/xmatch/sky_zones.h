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
#include "mmu/column.h"

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
  // Truncation is floor for x >= 1, and below that both give zone 0: no libm
  // call (floor is not inlined for baseline x86-64), twice per point grouped.
  int64_t of(double dec) const {
    const double x = (dec + 90.0) / height;
    return x < 1.0 ? 0 : std::min<int64_t>(static_cast<int64_t>(x), count - 1);
  }
  // The lower edge of zone z.
  double bottom(int64_t z) const { return -90.0 + height * static_cast<double>(z); }
  // The largest |dec| inside zone z.
  double max_abs_dec(int64_t z) const { return std::max(std::fabs(bottom(z)), std::fabs(bottom(z + 1))); }
};

// A point of a zone: its position and, in the same 24 bytes, either its index
// in the caller's arrays and its zone (while the points are grouped and
// sorted, and a left point being matched) or cos(dec) (a right point once
// indexed). So the right side is grouped and sorted in the array it is
// searched in: no second array of 24 bytes a point to fault in. A right
// point's index is kept apart (ZoneIndex::index), so that a zone's ra window
// is one sequential read and only a pair reads the index.
struct SkyPoint {
  double ra, dec;
  union {
    struct {
      Index index;
      Index zone;  // set by group_by_zone's first placement, read by its second
    };
    double cos_dec;  // cos(dec * kDeg) as angular_separation_deg computes it, once per point
  };
};

// The points grouped by zone by counting sorts, O(n) where a comparison sort
// costs O(n log n), each zone sorted by ra, ra taken modulo 360, each point
// with its index. Points without a valid position (ra or dec not finite,
// |dec| > 90) go last, to an extra zone zones.count, unsorted; they are never
// matched. Returns the zone offsets (zones.count + 2); where slot_of is given,
// (*slot_of)[i] is where point i went. Where index_of is given (an index's
// right side), each valid point's index goes to (*index_of)[k] and its
// cos_dec is set in its place, while its zone is still in the cache: no
// second pass over the points.
Buffer<Index> group_by_zone(ColumnView<double> ra, ColumnView<double> dec, const Zones& zones,
                            Buffer<SkyPoint>* grouped, Buffer<Index>* slot_of = nullptr,
                            Buffer<Index>* index_of = nullptr);

// The right points grouped by zone, each zone sorted by ra.
struct ZoneIndex {
  Buffer<Index> start;      // zones.count + 1 offsets into points
  Buffer<SkyPoint> points;  // the points with a valid position, cos_dec set (then those without)
  Buffer<Index> index;      // index[k]: points[k]'s index in the caller's arrays

  // Points without a valid position are left out.
  ZoneIndex(ColumnView<double> ra, ColumnView<double> dec, const Zones& zones);
};

}  // namespace mmu::xmatch
