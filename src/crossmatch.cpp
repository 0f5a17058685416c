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
struct ZoneIndex {
  double height = 0;
  int64_t zones = 0;
  std::vector<int64_t> start;  // zones + 1 offsets into order
  std::vector<int64_t> order;  // right indices by (zone, ra, index)
  std::vector<double> ra;      // ra of order[i]

  int64_t zone_of(double dec) const {
    return std::clamp<int64_t>(static_cast<int64_t>(std::floor((dec + 90.0) / height)), 0, zones - 1);
  }
};

ZoneIndex build_zones(const std::vector<double>& ra, const std::vector<double>& dec, double radius) {
  ZoneIndex z;
  z.zones = std::max<int64_t>(1, std::min<int64_t>(static_cast<int64_t>(180.0 / radius), 1 << 22));
  z.height = 180.0 / static_cast<double>(z.zones);
  const int64_t n = static_cast<int64_t>(ra.size());
  std::vector<int64_t> zone(n);
  for (int64_t i = 0; i < n; ++i) zone[i] = z.zone_of(dec[i]);
  z.order.resize(n);
  std::iota(z.order.begin(), z.order.end(), 0);
  std::sort(z.order.begin(), z.order.end(), [&](int64_t a, int64_t b) {
    if (zone[a] != zone[b]) return zone[a] < zone[b];
    if (ra[a] != ra[b]) return ra[a] < ra[b];
    return a < b;
  });
  z.start.assign(z.zones + 1, 0);
  for (int64_t i = 0; i < n; ++i) ++z.start[zone[i] + 1];
  std::partial_sum(z.start.begin(), z.start.end(), z.start.begin());
  z.ra.resize(n);
  for (int64_t i = 0; i < n; ++i) z.ra[i] = ra[z.order[i]];
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
  const ZoneIndex z = build_zones(right_ra, right_dec, radius);
  const int64_t nl = static_cast<int64_t>(left_ra.size());
  std::vector<std::vector<MatchPair>> per_left(nl);

#pragma omp parallel for schedule(dynamic, 4096)
  for (int64_t i = 0; i < nl; ++i) {
    const double ra0 = left_ra[i], dec0 = left_dec[i];
    const double half = ra_half_width(dec0, radius);
    std::vector<MatchPair>& out = per_left[i];
    auto consider = [&](int64_t pos) {
      const int64_t j = z.order[pos];
      const double sep = angular_separation_deg(ra0, dec0, right_ra[j], right_dec[j]);
      if (sep <= radius) out.push_back({i, j, sep * 3600.0});
    };
    // Declination zones that can hold a match (the margin covers rounding in zone_of).
    const int64_t z0 = z.zone_of(dec0 - radius - 1e-9), z1 = z.zone_of(dec0 + radius + 1e-9);
    for (int64_t zone = z0; zone <= z1; ++zone) {
      const auto begin = z.ra.begin() + z.start[zone], end = z.ra.begin() + z.start[zone + 1];
      auto scan = [&](double lo, double hi) {
        for (auto it = std::lower_bound(begin, end, lo); it != end && *it <= hi; ++it) consider(it - z.ra.begin());
      };
      if (half >= 180.0) {
        scan(-1e300, 1e300);
      } else {
        const double lo = ra0 - half, hi = ra0 + half;
        scan(std::max(lo, -1e300), hi);
        if (lo < 0.0) scan(lo + 360.0, 1e300);                   // wraps below 0
        if (hi >= 360.0) scan(-1e300, hi - 360.0);               // wraps above 360
      }
    }
    std::sort(out.begin(), out.end(), [](const MatchPair& a, const MatchPair& b) {
      return a.sep_arcsec != b.sep_arcsec ? a.sep_arcsec < b.sep_arcsec : a.right < b.right;
    });
    out.erase(std::unique(out.begin(), out.end(), [](const MatchPair& a, const MatchPair& b) { return a.right == b.right; }),
              out.end());
    if (!all_pairs && out.size() > 1) out.resize(1);
  }
  std::vector<MatchPair> pairs;
  for (auto& v : per_left) pairs.insert(pairs.end(), v.begin(), v.end());
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
