#include "mmu/crossmatch.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <omp.h>

#include "mmu/error.h"

namespace mmu {

namespace {

constexpr double kDeg = M_PI / 180.0;

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

// A stable counting sort of the points by zone, O(n) where a comparison sort
// costs O(n log n); each thread counts and places a slice of the points. Fills
// order[k] (the index of the k-th point in zone order) and returns the zone
// offsets (zones.count + 1).
std::vector<int64_t> zone_order(const std::vector<double>& dec, const Zones& zones, std::vector<int64_t>* order) {
  const int64_t n = static_cast<int64_t>(dec.size()), threads = omp_get_max_threads();
  std::vector<int32_t> zone(n);
  // next[t][z]: where thread t places its next point of zone z.
  std::vector<std::vector<int64_t>> next(threads, std::vector<int64_t>(zones.count, 0));
#pragma omp parallel for schedule(static, 1)
  for (int64_t t = 0; t < threads; ++t)
    for (int64_t i = n * t / threads; i < n * (t + 1) / threads; ++i) {
      zone[i] = static_cast<int32_t>(zones.of(dec[i]));
      ++next[t][zone[i]];
    }
  std::vector<int64_t> start(zones.count + 1, 0);
  for (int64_t z = 0; z < zones.count; ++z) {
    start[z + 1] = start[z];
    for (int64_t t = 0; t < threads; ++t) {
      const int64_t count = next[t][z];
      next[t][z] = start[z + 1];
      start[z + 1] += count;
    }
  }
  order->resize(n);
#pragma omp parallel for schedule(static, 1)
  for (int64_t t = 0; t < threads; ++t)
    for (int64_t i = n * t / threads; i < n * (t + 1) / threads; ++i) (*order)[next[t][zone[i]]++] = i;
  return start;
}

// Points grouped by zone, each zone sorted by ra.
struct ZoneIndex {
  std::vector<int64_t> start;  // zones.count + 1 offsets into points
  std::vector<SkyPoint> points;

  ZoneIndex(const std::vector<double>& ra, const std::vector<double>& dec, const Zones& zones) {
    std::vector<int64_t> order;
    start = zone_order(dec, zones, &order);
    const int64_t n = static_cast<int64_t>(ra.size());
    points.resize(n);
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < n; ++k) {
      if (k + kAhead < n) prefetch_point(ra, dec, order[k + kAhead]);
      points[k] = {ra[order[k]], dec[order[k]], std::cos(dec[order[k]] * kDeg), order[k]};
    }
#pragma omp parallel for schedule(dynamic, 4096)
    for (int64_t z = 0; z < zones.count; ++z)
      if (start[z + 1] - start[z] > 1)
        std::sort(points.begin() + start[z], points.begin() + start[z + 1],
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

bool closer(const MatchPair& a, const MatchPair& b) {
  return a.sep_arcsec != b.sep_arcsec ? a.sep_arcsec < b.sep_arcsec : a.right < b.right;
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
        right(ra, dec, zones) {}
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
  // Left points are visited zone by zone, so consecutive queries read the
  // same few right zones (in cache); their order within a zone does not matter.
  std::vector<int64_t> left_order;
  const std::vector<int64_t> left_start = zone_order(left_dec, zones, &left_order);
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
    int32_t count = 0;
    int32_t chunk = 0;
    int64_t first = 0;  // in found[chunk]
  };
  std::vector<Found> where(nl);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t c = 0; c < chunks; ++c) {
    std::vector<MatchPair>& out = found[c];
    out.reserve(left_start[first_zone[c + 1]] - left_start[first_zone[c]]);  // enough for nearest
    struct Candidate {
      HaversineBounds h;
      const SkyPoint* p;
    };
    std::vector<Candidate> near;
    for (int64_t z = first_zone[c]; z < first_zone[c + 1]; ++z) {
      if (left_start[z] == left_start[z + 1]) continue;  // most zones of a sparse catalog are empty
      const double half = ra_half_width(zones.max_abs_dec(z), radius);
      for (int64_t s = left_start[z]; s < left_start[z + 1]; ++s) {
        if (s + kAhead < nl) prefetch_point(left_ra, left_dec, left_order[s + kAhead]);
        const int64_t i = left_order[s];
        const double ra = left_ra[i], dec = left_dec[i];
        // cos(dec) waits for a first point in a window: in a sparse catalog
        // most left points have none.
        double cos_dec = -1.0;
        near.clear();
        auto scan = [&](const SkyPoint* begin, const SkyPoint* end, double lo, double hi) {
          const SkyPoint* it = std::partition_point(begin, end, [lo](const SkyPoint& p) { return p.ra < lo; });
          if (it == end || it->ra > hi) return;
          if (cos_dec < 0.0) cos_dec = std::cos(dec * kDeg);
          for (; it != end && it->ra <= hi; ++it) {
            if (std::fabs(it->dec - dec) > reach) continue;  // the cheapest test first
            const HaversineBounds h = haversine_bounds(ra, dec, cos_dec, *it);
            if (h.lower <= h_radius) near.push_back({h, it});
          }
        };
        // Zones are taller than reach, so these are z - 1 .. z + 1 at most.
        const int64_t z0 = std::max(z - 1, zones.of(dec - reach)), z1 = std::min(z + 1, zones.of(dec + reach));
        for (int64_t rz = z0; rz <= z1; ++rz) {
          const SkyPoint* begin = right.points.data() + right.start[rz];
          const SkyPoint* end = right.points.data() + right.start[rz + 1];
          if (half >= 180.0) {
            scan(begin, end, -1e300, 1e300);
          } else {
            // Windows are disjoint (half < 180), so no pair is found twice.
            const double lo = ra - half, hi = ra + half;
            scan(begin, end, lo, hi);
            if (lo < 0.0) scan(begin, end, lo + 360.0, 1e300);   // window wraps below 0
            if (hi >= 360.0) scan(begin, end, -1e300, hi - 360.0);  // window wraps above 360
          }
        }
        if (near.empty()) continue;
        // The nearest by haversine can only be a candidate whose lower bound
        // does not exceed the smallest upper bound (widened for rounding):
        // only those need a separation.
        double limit = h_radius;
        if (!all_pairs) {
          double best = h_radius;
          for (const Candidate& k : near) best = std::min(best, k.h.upper);
          limit = best * (1.0 + 1e-9);
        }
        const size_t first = out.size();
        for (const Candidate& k : near) {
          if (k.h.lower > limit) continue;
          const double sep = separation_deg(ra, dec, cos_dec, *k.p);
          if (sep <= radius) out.push_back({i, k.p->index, sep * 3600.0});
        }
        if (out.size() - first > 1) {
          std::sort(out.begin() + first, out.end(), closer);
          if (!all_pairs) out.resize(first + 1);
        }
        where[i] = {static_cast<int32_t>(out.size() - first), static_cast<int32_t>(c), static_cast<int64_t>(first)};
      }
    }
  }
  // Back to left order: written in sequence, read at random (prefetched).
  std::vector<int64_t> offset(nl + 1, 0);
  for (int64_t i = 0; i < nl; ++i) offset[i + 1] = offset[i] + where[i].count;
  std::vector<MatchPair> pairs(static_cast<size_t>(offset[nl]));
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
