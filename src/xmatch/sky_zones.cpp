#include "xmatch/sky_zones.h"

#include <omp.h>

#include <algorithm>

namespace mmu::xmatch {

namespace {

// A position the match can use: finite, |dec| <= 90.
bool valid_position(double ra, double dec) { return std::isfinite(ra) && std::isfinite(dec) && std::fabs(dec) <= 90.0; }

// ra in [0, 360), where the ra windows look for it (the separation does not care).
double normal_ra(double ra) {
  if (ra >= 0.0 && ra < 360.0) return ra;
  const double r = ra - 360.0 * std::floor(ra / 360.0);
  return r >= 360.0 ? 0.0 : r;
}

}  // namespace

// Each thread counts a slice of the points, the offsets are summed over blocks
// of zones in parallel, each thread places its slice.
Buffer<Index> group_by_zone(const std::vector<double>& ra, const std::vector<double>& dec, const Zones& zones,
                            Buffer<IndexedPoint>* grouped) {
  const int64_t n = static_cast<int64_t>(dec.size()), keys = zones.count + 1;
  Buffer<int32_t> zone(n);
  *grouped = Buffer<IndexedPoint>(n);
  // next[t][z]: how many points of zone z thread t has, then where it places the next one.
  std::vector<Buffer<Index>> next(omp_get_max_threads());
  Buffer<Index> start(keys + 1);
  std::vector<int64_t> block_start(next.size() + 1, 0);
#pragma omp parallel
  {
    // The team may be smaller than asked for (OMP_DYNAMIC, OMP_THREAD_LIMIT):
    // every share below is of the team this region got.
    const int64_t t = omp_get_thread_num(), threads = omp_get_num_threads();
    next[t] = Buffer<Index>(keys);
    populate(next[t].data(), keys * sizeof(Index));
    std::fill_n(next[t].data(), keys, 0);
    populate_share(zone.data(), n);
    populate_share(grouped->data(), n);  // written at random below
    for (int64_t i = n * t / threads; i < n * (t + 1) / threads; ++i) {
      zone[i] = static_cast<int32_t>(valid_position(ra[i], dec[i]) ? zones.of(dec[i]) : zones.count);
      ++next[t][zone[i]];
    }
#pragma omp barrier
    // Thread t sums the counts of zones [z0, z1), then places its offsets.
    const int64_t z0 = keys * t / threads, z1 = keys * (t + 1) / threads;
    int64_t total = 0;
    for (int64_t z = z0; z < z1; ++z)
      for (int64_t u = 0; u < threads; ++u) total += next[u][z];
    block_start[t + 1] = total;
#pragma omp barrier
#pragma omp single
    for (int64_t u = 0; u < threads; ++u) block_start[u + 1] += block_start[u];
    int64_t at = block_start[t];
    for (int64_t z = z0; z < z1; ++z) {
      start[z] = static_cast<Index>(at);
      for (int64_t u = 0; u < threads; ++u) {
        const int64_t count = next[u][z];
        next[u][z] = static_cast<Index>(at);
        at += count;
      }
    }
#pragma omp barrier
    for (int64_t i = n * t / threads; i < n * (t + 1) / threads; ++i)
      (*grouped)[next[t][zone[i]]++] = {normal_ra(ra[i]), dec[i], static_cast<Index>(i)};
  }
  start[keys] = static_cast<Index>(n);
  return start;
}

void sort_by_ra(IndexedPoint* begin, IndexedPoint* end, SortScratch<IndexedPoint>* scratch) {
  double lo = 360.0, hi = 0.0;
  if (end - begin > 4)
    for (const IndexedPoint* p = begin; p < end; ++p) {
      lo = std::min(lo, p->ra);
      hi = std::max(hi, p->ra);
    }
  slice_sort(begin, end, begin, lo, hi, [](const IndexedPoint& p) { return p.ra; },
             [](const IndexedPoint& a, const IndexedPoint& b) { return a.ra < b.ra; }, scratch);
}

ZoneIndex::ZoneIndex(const std::vector<double>& ra, const std::vector<double>& dec, const Zones& zones) {
  Buffer<IndexedPoint> grouped;
  start = group_by_zone(ra, dec, zones, &grouped);
  const int64_t n = start[zones.count];
  points = Buffer<SkyPoint>(n);
  index = Buffer<Index>(n);
#pragma omp parallel
  {
    populate_share(points.data(), n);
    populate_share(index.data(), n);
#pragma omp barrier
    SortScratch<IndexedPoint> scratch;
#pragma omp for schedule(dynamic, 4096)
    for (int64_t z = 0; z < zones.count; ++z) {
      sort_by_ra(grouped.data() + start[z], grouped.data() + start[z + 1], &scratch);
      for (int64_t k = start[z]; k < start[z + 1]; ++k) {
        points[k] = {grouped[k].ra, grouped[k].dec, std::cos(grouped[k].dec * kDeg)};
        index[k] = grouped[k].index;
      }
    }
  }
}

}  // namespace mmu::xmatch
