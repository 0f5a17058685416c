#include "mmu/crossmatch.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "mmu/error.h"

namespace mmu {

namespace {

constexpr double kDeg = M_PI / 180.0;

// An array left uninitialised, to be filled by parallel loops: a vector would
// have one thread zero (and page-fault) all of it first, tens of MB per match
// (measured: a third of the index build's wall time on 2 threads).
template <typename T>
class Buffer {
 public:
  explicit Buffer(int64_t n = 0) : data_(new T[static_cast<size_t>(n)]) {}
  T& operator[](int64_t i) { return data_[i]; }
  const T& operator[](int64_t i) const { return data_[i]; }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }

 private:
  std::unique_ptr<T[]> data_;
};

// Declination zones of equal height, zone z covering [-90 + z h, -90 + (z+1) h).
struct Zones {
  int64_t count;
  double height;

  explicit Zones(int64_t wanted) : count(std::max<int64_t>(1, wanted)), height(180.0 / static_cast<double>(count)) {}
  int64_t of(double dec) const {
    return std::clamp<int64_t>(static_cast<int64_t>(std::floor((dec + 90.0) / height)), 0, count - 1);
  }
  // The largest |dec| inside zone z.
  double max_abs_dec(int64_t z) const {
    return std::max(std::fabs(-90.0 + height * static_cast<double>(z)),
                    std::fabs(-90.0 + height * static_cast<double>(z + 1)));
  }
};

// What a separation test needs of a point, contiguous so that a zone's ra
// window is one sequential read.
struct SkyPoint {
  double ra, dec;
  double cos_dec;  // cos(dec * kDeg) as angular_separation_deg computes it, once per point
  int64_t index;   // in the caller's arrays
};

// Bounds on the haversine h = sin^2(ddec/2) + cos dec1 cos dec2 sin^2(dra/2)
// without its sines, from x - x^3/6 <= sin x <= x (0 <= x <= pi/2): a
// prefilter that needs no trigonometry per pair.
struct HaversineBounds {
  double lower, upper;
};

HaversineBounds haversine_bounds(double ra1, double dec1, double cos_dec1, const SkyPoint& b) {
  double dra = std::fabs(b.ra - ra1);
  if (dra > 180.0) dra = 360.0 - dra;  // across the ra = 0/360 seam
  const double x = std::fabs(b.dec - dec1) * (kDeg / 2.0), y = dra * (kDeg / 2.0);
  constexpr double kSixth = 1.0 / 6.0;  // rounded, but the bound has room
  const double x_low = std::max(0.0, x - x * x * x * kSixth), y_low = std::max(0.0, y - y * y * y * kSixth);
  const double cc = cos_dec1 * b.cos_dec;
  return {x_low * x_low + cc * y_low * y_low, x * x + cc * y * y};
}

// How far ahead a loop over points in zone order prefetches their coordinates:
// read in that order, the caller's arrays are read at random.
constexpr int64_t kAhead = 8;

void prefetch_point(const std::vector<double>& ra, const std::vector<double>& dec, int64_t i) {
  __builtin_prefetch(&ra[i]);
  __builtin_prefetch(&dec[i]);
}

// A position the match can use: finite, |dec| <= 90. Others are never matched.
bool valid_position(double ra, double dec) { return std::isfinite(ra) && std::isfinite(dec) && std::fabs(dec) <= 90.0; }

// ra in [0, 360), where the ra windows look for it (the separation does not care).
double normal_ra(double ra) {
  if (ra >= 0.0 && ra < 360.0) return ra;
  const double r = ra - 360.0 * std::floor(ra / 360.0);
  return r >= 360.0 ? 0.0 : r;
}

// A stable counting sort of the points by zone, O(n) where a comparison sort
// costs O(n log n): each thread counts a slice of the points, the offsets are
// summed over blocks of zones in parallel, each thread places its slice.
// Points without a valid position go last, to an extra zone zones.count.
// Fills order[k] (the index of the k-th point in zone order) and returns the
// zone offsets (zones.count + 2).
Buffer<int64_t> zone_order(const std::vector<double>& ra, const std::vector<double>& dec, const Zones& zones,
                           Buffer<int64_t>* order) {
  const int64_t n = static_cast<int64_t>(dec.size()), keys = zones.count + 1;
  const int64_t threads = omp_get_max_threads();
  Buffer<int32_t> zone(n);
  *order = Buffer<int64_t>(n);
  // next[t][z]: how many points of zone z thread t has, then where it places the next one.
  std::vector<Buffer<int64_t>> next(threads);
  Buffer<int64_t> start(keys + 1);
  std::vector<int64_t> block_start(threads + 1, 0);
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num();
    next[t] = Buffer<int64_t>(keys);
    std::fill_n(next[t].data(), keys, 0);
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
      start[z] = at;
      for (int64_t u = 0; u < threads; ++u) {
        const int64_t count = next[u][z];
        next[u][z] = at;
        at += count;
      }
    }
#pragma omp barrier
    for (int64_t i = n * t / threads; i < n * (t + 1) / threads; ++i) (*order)[next[t][zone[i]]++] = i;
  }
  start[keys] = n;
  return start;
}

// Points grouped by zone, each zone sorted by ra.
struct ZoneIndex {
  Buffer<int64_t> start;  // zones.count + 1 offsets into points
  Buffer<SkyPoint> points;  // the points with a valid position

  // with_cos = false leaves cos_dec at -1, for the caller to compute when it
  // needs it (a left point with no right point in reach never does).
  ZoneIndex(const std::vector<double>& ra, const std::vector<double>& dec, const Zones& zones, bool with_cos) {
    Buffer<int64_t> order;
    start = zone_order(ra, dec, zones, &order);
    const int64_t n = start[zones.count];
    points = Buffer<SkyPoint>(n);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < n; ++k) {
      if (k + kAhead < n) prefetch_point(ra, dec, order[k + kAhead]);
      const double d = dec[order[k]];
      points[k] = {normal_ra(ra[order[k]]), d, with_cos ? std::cos(d * kDeg) : -1.0, order[k]};
    }
#pragma omp parallel for schedule(dynamic, 4096)
    for (int64_t z = 0; z < zones.count; ++z)
      if (start[z + 1] - start[z] > 1)
        std::sort(points.data() + start[z], points.data() + start[z + 1],
                  [](const SkyPoint& a, const SkyPoint& b) { return a.ra < b.ra; });
  }
};

// Largest |delta ra| of any point within radius of a point at |dec| <= abs_dec
// (degrees); 180 (everything) when the circle reaches a pole.
double ra_half_width(double abs_dec, double radius) {
  if (abs_dec + radius >= 89.999999) return 180.0;
  const double s = std::sin(radius * kDeg) / std::cos(abs_dec * kDeg);
  if (s >= 1.0) return 180.0;
  return std::asin(s) / kDeg * (1.0 + 1e-9) + 1e-12;  // widened: never lose a boundary pair to rounding
}

// angular_separation_deg (sky.h) given both cos(dec): the same operations in
// the same order, so bit-identical, with half the trigonometry per pair.
double separation_deg(double ra1, double dec1, double cos_dec1, const SkyPoint& b) {
  const double s_dec = std::sin((b.dec - dec1) * kDeg / 2.0);
  const double s_ra = std::sin((b.ra - ra1) * kDeg / 2.0);
  const double h = s_dec * s_dec + cos_dec1 * b.cos_dec * s_ra * s_ra;
  return 2.0 * std::asin(std::sqrt(std::min(1.0, h))) / kDeg;
}

// sin x for the small half-angles of a cross-match: the Taylor series to x^7
// is exact to far below half an ulp for |x| < 1e-2, so this is the correctly
// rounded sine but for values within ~1e-20 of a rounding midpoint, at a tenth
// of std::sin's cost; larger x go to std::sin.
inline double sin_small(double x) {
  if (std::fabs(x) >= 1e-2) return std::sin(x);
  const double x2 = x * x;
  return x + x * x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 - x2 * (1.0 / 5040.0)));
}

// asin y likewise, y in [0, 1e-3): the series to y^7 (next term 35/1152 y^9).
inline double asin_small(double y) {
  if (y >= 1e-3) return std::asin(y);
  const double y2 = y * y;
  return y + y * y2 * (1.0 / 6.0 + y2 * (3.0 / 40.0 + y2 * (15.0 / 336.0)));
}

// separation_deg with the small-angle sine and arcsine: equal to it but for
// the last bit in rare cases, so it decides nothing within a few ulps of the radius.
double separation_fast_deg(double ra1, double dec1, double cos_dec1, const SkyPoint& b) {
  const double s_dec = sin_small((b.dec - dec1) * kDeg / 2.0);
  const double s_ra = sin_small((b.ra - ra1) * kDeg / 2.0);
  const double h = s_dec * s_dec + cos_dec1 * b.cos_dec * s_ra * s_ra;
  return 2.0 * asin_small(std::sqrt(std::min(1.0, h))) / kDeg;
}

bool closer(const MatchPair& a, const MatchPair& b) {
  return a.sep_arcsec != b.sep_arcsec ? a.sep_arcsec < b.sep_arcsec : a.right < b.right;
}

// Sorts one left point's pairs by (separation, right). Most groups are a
// few pairs, dense fields give tens, and a comparison sort of random
// separations mispredicts half its branches. Separations lie in [0, radius],
// so a counting sort by 2n equal slices of that range comes first; the
// insertion sort after it then finds the pairs nearly in order (predictable
// branches) and settles pairs that share a slice.
void sort_by_separation(MatchPair* begin, MatchPair* end, double radius_arcsec, std::vector<MatchPair>* scratch) {
  const int64_t n = end - begin;
  if (n < 2) return;
  if (n > 1024) {
    std::sort(begin, end, [](const MatchPair& a, const MatchPair& b) { return closer(a, b); });
    return;
  }
  int32_t count[2049];
  const int64_t slices = 2 * n;
  const double scale = static_cast<double>(slices) / radius_arcsec;
  auto slice = [&](const MatchPair& p) {
    return std::min<int64_t>(slices - 1, static_cast<int64_t>(p.sep_arcsec * scale));
  };
  std::fill_n(count, slices + 1, 0);
  for (const MatchPair* p = begin; p < end; ++p) ++count[slice(*p) + 1];
  for (int64_t s = 0; s < slices; ++s) count[s + 1] += count[s];
  scratch->resize(n);
  for (const MatchPair* p = begin; p < end; ++p) (*scratch)[count[slice(*p)]++] = *p;
  for (int64_t k = 0; k < n; ++k) {
    const MatchPair x = (*scratch)[k];
    MatchPair* at = begin + k;
    for (; at > begin && closer(x, at[-1]); --at) *at = at[-1];
    *at = x;
  }
}

double checked_radius(double radius) {
  if (!(radius > 0.0) || radius > 10.0)
    throw InvalidArgument("--radius must be > 0 and <= 10 deg, got " + std::to_string(radius * 3600.0) + " arcsec");
  return radius;
}

}  // namespace

struct CrossMatchIndex::Impl {
  double radius;
  Zones zones;
  ZoneIndex right;

  // Candidates lie within reach in dec (see match), so zones a little taller
  // than the radius put them in the point's zone and its two neighbours; zones
  // this thin keep the candidate boxes near the circle's area. The cap bounds
  // the offsets array for tiny radii.
  Impl(const std::vector<double>& ra, const std::vector<double>& dec, double radius_deg)
      : radius(checked_radius(radius_deg)),
        zones(std::min<int64_t>(static_cast<int64_t>(180.0 / (radius * (1.0 + 1e-6))), 1 << 21)),
        right(ra, dec, zones, true) {}
};

CrossMatchIndex::CrossMatchIndex(const std::vector<double>& ra, const std::vector<double>& dec, double radius_deg)
    : impl_(std::make_unique<Impl>(ra, dec, radius_deg)) {}
CrossMatchIndex::~CrossMatchIndex() = default;
CrossMatchIndex::CrossMatchIndex(CrossMatchIndex&&) noexcept = default;
CrossMatchIndex& CrossMatchIndex::operator=(CrossMatchIndex&&) noexcept = default;

std::vector<MatchPair> CrossMatchIndex::match(const std::vector<double>& left_ra, const std::vector<double>& left_dec,
                                              bool all_pairs) const {
  const double radius = impl_->radius;
  const Zones& zones = impl_->zones;
  const ZoneIndex& right = impl_->right;
  const double reach = radius * (1.0 + 1e-9) + 1e-12;
  // The left points are indexed like the right ones: zone by zone, each zone
  // in ra order. A left zone then meets each of its three right zones in one
  // sweep: as ra grows, each window's start only moves forward, and every
  // read is sequential.
  const ZoneIndex left(left_ra, left_dec, zones, false);
  const Buffer<int64_t>& left_start = left.start;
  // Prefilter: the lower bound of h against h at the radius, widened by 1e-6
  // where computed values err by ~1e-15. The haversine separation then
  // decides, so the result is exactly "separation <= radius".
  const double h_radius = std::pow(std::sin(radius * kDeg / 2.0), 2) * (1.0 + 1e-6);

  // Work items: runs of whole zones holding about `chunk` left points.
  const int64_t nl = static_cast<int64_t>(left_ra.size()), chunk = 16384;
  std::vector<int64_t> first_zone{0};
  for (int64_t z = 0; z < zones.count; ++z)
    if (left_start[z + 1] - left_start[first_zone.back()] >= chunk) first_zone.push_back(z + 1);
  if (first_zone.back() != zones.count) first_zone.push_back(zones.count);
  const int64_t chunks = static_cast<int64_t>(first_zone.size()) - 1;
  std::vector<std::vector<MatchPair>> found(chunks);  // per chunk, in zone order
  // Where left point i's pairs are: one entry, so one cache miss per point.
  struct Found {
    int32_t count;
    int32_t chunk;
    int64_t first;  // in found[chunk]
  };
  Buffer<Found> where(nl);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < nl; ++i) where[i].count = 0;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t c = 0; c < chunks; ++c) {
    auto& out = found[c];
    out.reserve(left_start[first_zone[c + 1]] - left_start[first_zone[c]]);  // enough for nearest
    struct Candidate {
      HaversineBounds h;
      const SkyPoint* p;
    };
    std::vector<Candidate> near;
    std::vector<MatchPair> scratch;
    for (int64_t z = first_zone[c]; z < first_zone[c + 1]; ++z) {
      if (left_start[z] == left_start[z + 1]) continue;  // most zones of a sparse catalog are empty
      const double half = ra_half_width(zones.max_abs_dec(z), radius);
      // cursor[rz - z + 1]: the first point of right zone rz not left of the window.
      const SkyPoint* cursor[3];
      for (int64_t d = 0; d < 3; ++d)
        cursor[d] = right.points.data() + right.start[std::clamp<int64_t>(z - 1 + d, 0, zones.count - 1)];
      for (int64_t s = left_start[z]; s < left_start[z + 1]; ++s) {
        const SkyPoint& q = left.points[s];
        const int64_t i = q.index;
        const double ra = q.ra, dec = q.dec;
        double cos_dec = -1.0;  // computed at the first point in reach
        near.clear();
        double keep = h_radius;
        auto scan = [&](const SkyPoint* it, const SkyPoint* end, double hi) {
          for (; it != end && it->ra <= hi; ++it) {
            if (std::fabs(it->dec - dec) > reach) continue;  // the cheapest test first
            if (cos_dec < 0.0) cos_dec = std::cos(dec * kDeg);
            const HaversineBounds h = haversine_bounds(ra, dec, cos_dec, *it);
            // Nearest mode keeps only what may beat the best upper bound so far.
            if (h.lower <= keep) {
              near.push_back({h, it});
              if (!all_pairs) keep = std::min(keep, h.upper * (1.0 + 1e-9));
            }
          }
        };
        // Zones are taller than reach, so these are z - 1 .. z + 1 at most.
        const int64_t z0 = std::max(z - 1, zones.of(dec - reach)), z1 = std::min(z + 1, zones.of(dec + reach));
        for (int64_t rz = z0; rz <= z1; ++rz) {
          const SkyPoint* begin = right.points.data() + right.start[rz];
          const SkyPoint* end = right.points.data() + right.start[rz + 1];
          if (half >= 180.0) {
            scan(begin, end, 1e300);
          } else {
            // Windows are disjoint (half < 180), so no pair is found twice.
            const double lo = ra - half, hi = ra + half;
            const SkyPoint*& it = cursor[rz - z + 1];
            while (it != end && it->ra < lo) ++it;
            scan(it, end, hi);
            if (lo < 0.0)  // window wraps below 0: rare, a binary search
              scan(std::partition_point(begin, end, [lo](const SkyPoint& p) { return p.ra < lo + 360.0; }), end, 1e300);
            if (hi >= 360.0) scan(begin, end, hi - 360.0);  // window wraps above 360
          }
        }
        if (near.empty()) continue;
        // The separation that decides: within a few ulps of the radius the
        // reference formula's, elsewhere the small-angle series'.
        auto separation = [&](const SkyPoint& p) {
          const double sep = separation_fast_deg(ra, dec, cos_dec, p);
          return std::fabs(sep - radius) <= radius * 1e-13 ? separation_deg(ra, dec, cos_dec, p) : sep;
        };
        const size_t first = out.size();
        if (all_pairs) {
          for (const Candidate& k : near) {
            const double sep = separation(*k.p);
            if (sep <= radius) out.push_back({i, k.p->index, sep * 3600.0});
          }
          sort_by_separation(out.data() + first, out.data() + out.size(), radius * 3600.0, &scratch);
        } else {
          // The nearest can only be a candidate whose lower bound does not
          // exceed the smallest upper bound (widened for rounding), which
          // keep now is. Usually one is left; of several, the separations are
          // taken as angular_separation_deg gives them, so near ties break as
          // there. The lowest right index wins a tie.
          MatchPair best{i, -1, 0.0};
          const SkyPoint* best_point = nullptr;
          int hits = 0;
          for (const Candidate& k : near) {
            if (k.h.lower > keep) continue;
            double sep = separation(*k.p);
            if (sep > radius) continue;
            if (++hits == 2) {  // the first hit's separation, now as the reference gives it
              best.sep_arcsec = separation_deg(ra, dec, cos_dec, *best_point) * 3600.0;
            }
            if (hits >= 2) sep = separation_deg(ra, dec, cos_dec, *k.p);
            const MatchPair pair{i, k.p->index, sep * 3600.0};
            if (best.right < 0 || closer(pair, best)) {
              best = pair;
              best_point = k.p;
            }
          }
          if (best.right >= 0) out.push_back(best);
        }
        where[i] = {static_cast<int32_t>(out.size() - first), static_cast<int32_t>(c), static_cast<int64_t>(first)};
      }
    }
  }
  // Back to left order: written in sequence, read at random (prefetched).
  Buffer<int64_t> offset(nl + 1);
  offset[0] = 0;
  for (int64_t i = 0; i < nl; ++i) offset[i + 1] = offset[i] + where[i].count;
  std::vector<MatchPair> pairs(static_cast<size_t>(offset[nl]));  // unset, filled below
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < nl; ++i) {
    if (i + kAhead < nl && where[i + kAhead].count > 0)
      __builtin_prefetch(found[where[i + kAhead].chunk].data() + where[i + kAhead].first);
    const Found& w = where[i];
    if (w.count > 0) std::copy_n(found[w.chunk].data() + w.first, w.count, pairs.data() + offset[i]);
  }
  return pairs;
}

std::vector<MatchPair> cross_match(const std::vector<double>& left_ra, const std::vector<double>& left_dec,
                                   const std::vector<double>& right_ra, const std::vector<double>& right_dec,
                                   double radius_deg, bool all_pairs) {
  return CrossMatchIndex(right_ra, right_dec, radius_deg).match(left_ra, left_dec, all_pairs);
}

}  // namespace mmu
