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

void sort_by_ra(SkyPoint* begin, SkyPoint* end, SortScratch<SkyPoint>* scratch) {
  double lo = 360.0, hi = 0.0;
  if (end - begin > 4)
    for (const SkyPoint* p = begin; p < end; ++p) {
      lo = std::min(lo, p->ra);
      hi = std::max(hi, p->ra);
    }
  slice_sort(begin, end, begin, lo, hi, [](const SkyPoint& p) { return p.ra; },
             [](const SkyPoint& a, const SkyPoint& b) { return a.ra < b.ra; }, scratch);
}

}  // namespace

// Two counting sorts, each writing to few places at once: the points by bucket
// of 2^shift zones (about a thousand buckets), then each bucket's points by
// zone, through a copy of the bucket that stays in the cache. One counting sort
// straight into the zones (650,000 at 1 arcsec) missed the cache twice a point,
// on its zone's counter and on its slot (measured: a quarter of the nearest
// command's CPU). Each zone is then sorted by ra while the bucket is in the
// cache, from its points in index order (as a stable counting sort leaves
// them). A point's zone is computed in the first two passes and kept in the
// point for the rest (its 4 spare bytes: no array of zones to fault in).
Buffer<Index> group_by_zone(ColumnView<double> ra, ColumnView<double> dec, const Zones& zones,
                            Buffer<SkyPoint>* grouped, Buffer<Index>* slot_of, Buffer<Index>* index_of) {
  const int64_t n = static_cast<int64_t>(dec.size()), keys = zones.count + 1;
  int shift = 0;
  while ((keys - 1) >> shift >= 1024) ++shift;
  const int64_t buckets = ((keys - 1) >> shift) + 1, bucket_zones = int64_t{1} << shift;
  // ra is normalised as the points are placed: finite stays finite, and
  // infinite or NaN becomes NaN, so the grouped point is valid as the input was.
  auto zone_of = [&](double r, double d) { return valid_position(r, d) ? zones.of(d) : zones.count; };
  *grouped = Buffer<SkyPoint>(n);
  if (slot_of != nullptr) *slot_of = Buffer<Index>(n);
  if (index_of != nullptr) *index_of = Buffer<Index>(n);  // room for all; the invalid points' is not written
  Buffer<Index> start(keys + 1);
  // next[t * buckets + b]: how many points of bucket b thread t has, then where it places the next one.
  std::vector<Index> next(static_cast<size_t>(omp_get_max_threads() * buckets));
  std::vector<Index> bucket_start(static_cast<size_t>(buckets + 1));
  // The buckets, largest first: a dense field's bucket (a fifth of the bench's
  // points in one) taken last kept one thread busy alone for ~10 ms at the end.
  std::vector<int64_t> by_size(static_cast<size_t>(buckets));
#pragma omp parallel
  {
    // The team may be smaller than asked for (OMP_DYNAMIC, OMP_THREAD_LIMIT):
    // every share below is of the team this region got.
    const int64_t t = omp_get_thread_num(), threads = omp_get_num_threads();
    const int64_t i0 = n * t / threads, i1 = n * (t + 1) / threads;
    populate_share(grouped->data(), n);
    if (slot_of != nullptr) populate_share(slot_of->data(), n);
    if (index_of != nullptr) populate_share(index_of->data(), n);
    Index* const mine = next.data() + t * buckets;
    std::fill_n(mine, buckets, 0);
    for (int64_t i = i0; i < i1; ++i) ++mine[zone_of(ra[i], dec[i]) >> shift];
#pragma omp barrier
#pragma omp single
    {
      int64_t at = 0;
      for (int64_t b = 0; b < buckets; ++b) {
        bucket_start[b] = static_cast<Index>(at);
        for (int64_t u = 0; u < threads; ++u) {
          const int64_t count = next[u * buckets + b];
          next[u * buckets + b] = static_cast<Index>(at);
          at += count;
        }
      }
      bucket_start[buckets] = static_cast<Index>(n);
      for (int64_t b = 0; b < buckets; ++b) by_size[b] = b;
      std::stable_sort(by_size.begin(), by_size.end(), [&](int64_t a, int64_t b) {
        return bucket_start[a + 1] - bucket_start[a] > bucket_start[b + 1] - bucket_start[b];
      });
    }
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t z = zone_of(ra[i], dec[i]);
      SkyPoint& p = (*grouped)[mine[z >> shift]++];
      p.ra = normal_ra(ra[i]);
      p.dec = dec[i];
      p.index = static_cast<Index>(i);
      p.zone = static_cast<Index>(z);
    }
#pragma omp barrier
    std::vector<Index> zone_next(static_cast<size_t>(bucket_zones));
    // Room for the largest bucket this thread meets (a dense field's:
    // megabytes), on huge pages and mapped in one call: a growing vector
    // page-faulted each time it moved. Sized by this thread's buckets, not
    // the largest of all, so that many threads do not each hold a copy of a
    // field that fills one bucket.
    Buffer<SkyPoint> bucket;
    int64_t room = 0;
    SortScratch<SkyPoint> scratch;
#pragma omp for schedule(dynamic, 1)
    for (int64_t j = 0; j < buckets; ++j) {
      const int64_t b = by_size[j];
      const int64_t z0 = b << shift, z1 = std::min(keys, z0 + bucket_zones);
      if (const int64_t size = bucket_start[b + 1] - bucket_start[b]; size > room) {
        room = std::max(size, 2 * room);  // doubling: a few sizes, not one per bucket
        bucket = Buffer<SkyPoint>(room);
        populate(bucket.data(), static_cast<size_t>(room) * sizeof(SkyPoint));
      }
      const SkyPoint* const end = std::copy(grouped->data() + bucket_start[b], grouped->data() + bucket_start[b + 1],
                                            bucket.data());
      std::fill_n(zone_next.data(), z1 - z0, 0);
      for (const SkyPoint* p = bucket.data(); p != end; ++p) ++zone_next[p->zone - z0];
      int64_t at = bucket_start[b];
      for (int64_t z = z0; z < z1; ++z) {
        start[z] = static_cast<Index>(at);
        const int64_t count = zone_next[z - z0];
        zone_next[z - z0] = static_cast<Index>(at);
        at += count;
      }
      for (const SkyPoint* p = bucket.data(); p != end; ++p) (*grouped)[zone_next[p->zone - z0]++] = *p;
      for (int64_t z = z0; z < z1; ++z) {
        SkyPoint* const first = grouped->data() + start[z];
        SkyPoint* const last = grouped->data() + zone_next[z - z0];
        if (z < zones.count) sort_by_ra(first, last, &scratch);  // not the invalid points' zone
        if (slot_of != nullptr)
          for (SkyPoint* p = first; p != last; ++p) (*slot_of)[p->index] = static_cast<Index>(p - grouped->data());
        if (index_of != nullptr && z < zones.count)
          for (SkyPoint* p = first; p != last; ++p) {
            (*index_of)[p - grouped->data()] = p->index;
            p->cos_dec = std::cos(p->dec * kDeg);  // the index and zone are not read again
          }
      }
    }
  }
  start[keys] = static_cast<Index>(n);
  return start;
}

ZoneIndex::ZoneIndex(ColumnView<double> ra, ColumnView<double> dec, const Zones& zones) {
  start = group_by_zone(ra, dec, zones, &points, nullptr, &index);
}

}  // namespace mmu::xmatch
