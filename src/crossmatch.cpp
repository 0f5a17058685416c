#include "mmu/crossmatch.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "mmu/error.h"
#include "mmu/sky.h"

namespace mmu {

namespace {

constexpr double kDeg = M_PI / 180.0;

// Right points bucketed into declination zones of height >= radius, each zone
// sorted by ra: a left point's candidates are ra windows in at most 3 zones.
// Coordinates are copied into zone order so a scan reads memory sequentially.
struct ZoneIndex {
  double height = 0;
  int64_t zones = 0;
  std::vector<int64_t> start;       // zones + 1 offsets
  std::vector<int64_t> order;       // original index of each sorted point
  std::vector<double> ra, dec;      // sorted by (zone, ra, index)
  std::vector<double> x, y, z;      // unit vectors, same order

  int64_t zone_of(double dec) const {
    return std::clamp<int64_t>(static_cast<int64_t>(std::floor((dec + 90.0) / height)), 0, zones - 1);
  }
};

void unit_vector(double ra, double dec, double* x, double* y, double* z) {
  const double a = ra * kDeg, d = dec * kDeg, cd = std::cos(d);
  *x = cd * std::cos(a);
  *y = cd * std::sin(a);
  *z = std::sin(d);
}

ZoneIndex build_zones(const std::vector<double>& ra, const std::vector<double>& dec, double height_deg) {
  ZoneIndex z;
  z.zones = std::max<int64_t>(1, std::min<int64_t>(static_cast<int64_t>(180.0 / height_deg), 1 << 22));
  z.height = 180.0 / static_cast<double>(z.zones);
  const int64_t n = static_cast<int64_t>(ra.size());
  std::vector<int64_t> zone(n);
  for (int64_t i = 0; i < n; ++i) zone[i] = z.zone_of(dec[i]);
  // Counting sort by zone, then each zone by (ra, index): cheaper than one
  // global comparison sort, and zones sort in parallel.
  z.start.assign(z.zones + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++z.start[zone[i] + 1];
  std::partial_sum(z.start.begin(), z.start.end(), z.start.begin());
  struct Keyed {
    double ra, dec;
    int64_t index;
    bool operator<(const Keyed& o) const { return ra != o.ra ? ra < o.ra : index < o.index; }
  };
  std::vector<Keyed> keyed(n);
  {
    std::vector<int64_t> next(z.start.begin(), z.start.end() - 1);
    for (int64_t i = 0; i < n; ++i) keyed[next[zone[i]]++] = {ra[i], dec[i], i};
  }
#pragma omp parallel for schedule(dynamic, 256)
  for (int64_t zi = 0; zi < z.zones; ++zi)
    if (z.start[zi + 1] - z.start[zi] > 1) std::sort(keyed.begin() + z.start[zi], keyed.begin() + z.start[zi + 1]);
  z.order.resize(n);
  z.ra.resize(n);
  z.dec.resize(n);
  z.x.resize(n);
  z.y.resize(n);
  z.z.resize(n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    z.order[i] = keyed[i].index;
    z.ra[i] = keyed[i].ra;
    z.dec[i] = keyed[i].dec;
    unit_vector(z.ra[i], z.dec[i], &z.x[i], &z.y[i], &z.z[i]);
  }
  return z;
}

// Largest |delta ra| of any point within radius of a point at dec (degrees);
// 180 (everything) when the circle reaches a pole.
double ra_half_width(double dec, double radius) {
  if (std::fabs(dec) + radius >= 89.999999) return 180.0;
  const double s = std::sin(radius * kDeg) / std::cos(dec * kDeg);
  if (s >= 1.0) return 180.0;
  return std::asin(s) / kDeg * (1.0 + 1e-9) + 1e-12;  // widened: never lose a boundary pair to rounding
}

}  // namespace

std::vector<MatchPair> cross_match(const std::vector<double>& left_ra, const std::vector<double>& left_dec,
                                   const std::vector<double>& right_ra, const std::vector<double>& right_dec,
                                   double radius, bool all_pairs) {
  if (!(radius > 0.0) || radius > 10.0)
    throw InvalidArgument("--radius must be > 0 and <= 10 deg, got " + std::to_string(radius * 3600.0) + " arcsec");
  // Zones no thinner than ~10": finer zones only add per-zone overhead, since a
  // ra window inside a zone is a binary search anyway.
  const double height = std::max(radius, 180.0 / 65536.0);
  const ZoneIndex rz = build_zones(right_ra, right_dec, height);
  // Left points are visited in the same (zone, ra) order, so consecutive
  // queries touch neighbouring memory of the right index.
  const ZoneIndex lz = build_zones(left_ra, left_dec, height);
  const int64_t nl = static_cast<int64_t>(left_ra.size());
  // Cheap filter on chord length, slightly widened; the haversine separation
  // then decides, so the result is exactly "separation <= radius".
  const double chord = 2.0 * std::sin(radius * kDeg / 2.0);
  const double chord2 = chord * chord * (1.0 + 1e-6) + 1e-24;

  const int64_t chunk = 8192, chunks = (nl + chunk - 1) / chunk;
  std::vector<std::vector<MatchPair>> found(chunks);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t c = 0; c < chunks; ++c) {
    std::vector<MatchPair>& out = found[c];
    std::vector<MatchPair> mine;
    for (int64_t s = c * chunk; s < std::min(nl, (c + 1) * chunk); ++s) {
      const int64_t i = lz.order[s];
      const double ra0 = lz.ra[s], dec0 = lz.dec[s];
      const double x = lz.x[s], y = lz.y[s], zz = lz.z[s];
      const double half = ra_half_width(dec0, radius);
      mine.clear();
      auto scan = [&](int64_t zone, double lo, double hi) {
        const auto begin = rz.ra.begin() + rz.start[zone], end = rz.ra.begin() + rz.start[zone + 1];
        for (auto it = std::lower_bound(begin, end, lo); it != end && *it <= hi; ++it) {
          const int64_t p = it - rz.ra.begin();
          const double dx = x - rz.x[p], dy = y - rz.y[p], dz = zz - rz.z[p];
          if (dx * dx + dy * dy + dz * dz > chord2) continue;
          const double sep = angular_separation_deg(ra0, dec0, rz.ra[p], rz.dec[p]);
          if (sep <= radius) mine.push_back({i, rz.order[p], sep * 3600.0});
        }
      };
      const int64_t z0 = rz.zone_of(dec0 - radius - 1e-9), z1 = rz.zone_of(dec0 + radius + 1e-9);
      for (int64_t zone = z0; zone <= z1; ++zone) {
        if (half >= 180.0) {
          scan(zone, -1e300, 1e300);
        } else {
          const double lo = ra0 - half, hi = ra0 + half;
          scan(zone, lo, hi);
          if (lo < 0.0) scan(zone, lo + 360.0, 1e300);   // window wraps below 0
          if (hi >= 360.0) scan(zone, -1e300, hi - 360.0);  // window wraps above 360
        }
      }
      std::sort(mine.begin(), mine.end(), [](const MatchPair& a, const MatchPair& b) {
        return a.sep_arcsec != b.sep_arcsec ? a.sep_arcsec < b.sep_arcsec : a.right < b.right;
      });
      mine.erase(std::unique(mine.begin(), mine.end(),
                             [](const MatchPair& a, const MatchPair& b) { return a.right == b.right; }),
                 mine.end());
      if (!all_pairs && mine.size() > 1) mine.resize(1);
      out.insert(out.end(), mine.begin(), mine.end());
    }
  }
  // Back to left order, keeping each left point's pairs in (sep, right) order.
  std::vector<int64_t> first(nl + 1, 0);
  for (const auto& v : found)
    for (const MatchPair& p : v) ++first[p.left + 1];
  std::partial_sum(first.begin(), first.end(), first.begin());
  std::vector<MatchPair> pairs(static_cast<size_t>(first[nl]));
  std::vector<int64_t> next(first.begin(), first.end() - 1);
  for (const auto& v : found)
    for (const MatchPair& p : v) pairs[next[p.left]++] = p;
  return pairs;
}

double parse_angle_deg(const std::string& text, const std::string& flag) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    throw InvalidArgument(flag + " must be an angle like 1arcsec, 2arcmin or 0.001deg, got '" + text + "'");
  }
  std::string unit = text.substr(used);
  unit.erase(std::remove(unit.begin(), unit.end(), ' '), unit.end());
  double scale;
  if (unit.empty() || unit == "arcsec" || unit == "\"") scale = 1.0 / 3600.0;
  else if (unit == "arcmin" || unit == "'") scale = 1.0 / 60.0;
  else if (unit == "deg" || unit == "d") scale = 1.0;
  else throw InvalidArgument(flag + ": unknown angle unit '" + unit + "' in '" + text + "' (use arcsec, arcmin or deg)");
  if (!std::isfinite(v) || v <= 0.0) throw InvalidArgument(flag + " must be positive, got '" + text + "'");
  return v * scale;
}

}  // namespace mmu
