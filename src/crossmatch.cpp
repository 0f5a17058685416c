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
  double ra;
  double x, y, z;       // unit vector, for the chord prefilter
  double dec, cos_dec;  // cos(dec * kDeg) as angular_separation_deg computes it, once per point
  int64_t index;        // in the caller's arrays
};

SkyPoint sky_point(double ra, double dec, int64_t index) {
  const double a = ra * kDeg, d = dec * kDeg, cos_dec = std::cos(d);
  return {ra, cos_dec * std::cos(a), cos_dec * std::sin(a), std::sin(d), dec, cos_dec, index};
}

// Points grouped by zone, each zone sorted by ra.
//
// Built by a counting sort in two passes: into ~1024 bands of neighbouring
// zones, then within each band into its zones. One pass into all zones (up to
// 2^21) would write each point to a random cache line; each of these writes
// into few enough places to stay in cache, and both run on all threads.
struct ZoneIndex {
  std::vector<int64_t> start;  // zones.count + 1 offsets into points
  std::vector<SkyPoint> points;

  ZoneIndex(const std::vector<double>& ra, const std::vector<double>& dec, const Zones& zones) {
    const int64_t n = static_cast<int64_t>(ra.size()), threads = omp_get_max_threads();
    const int64_t per_band = (zones.count + 1023) / 1024, bands = (zones.count + per_band - 1) / per_band;
    std::vector<SkyPoint> unsorted(n);
    std::vector<int32_t> zone(n);
    // band_next[t][b]: where thread t's next point of band b goes.
    std::vector<std::vector<int64_t>> band_next(threads, std::vector<int64_t>(bands, 0));
#pragma omp parallel for schedule(static, 1)
    for (int64_t t = 0; t < threads; ++t)
      for (int64_t i = n * t / threads; i < n * (t + 1) / threads; ++i) {
        unsorted[i] = sky_point(ra[i], dec[i], i);
        zone[i] = static_cast<int32_t>(zones.of(dec[i]));
        ++band_next[t][zone[i] / per_band];
      }
    std::vector<int64_t> band_start(bands + 1, 0);
    for (int64_t b = 0; b < bands; ++b) {
      band_start[b + 1] = band_start[b];
      for (int64_t t = 0; t < threads; ++t) {
        const int64_t count = band_next[t][b];
        band_next[t][b] = band_start[b + 1];
        band_start[b + 1] += count;
      }
    }
    points.resize(n);
    std::vector<int32_t> banded_zone(n);
#pragma omp parallel for schedule(static, 1)
    for (int64_t t = 0; t < threads; ++t)
      for (int64_t i = n * t / threads; i < n * (t + 1) / threads; ++i) {
        const int64_t k = band_next[t][zone[i] / per_band]++;
        points[k] = unsorted[i];
        banded_zone[k] = zone[i];
      }
    start.assign(zones.count + 1, 0);
    start[zones.count] = n;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t b = 0; b < bands; ++b) {
      const int64_t z0 = b * per_band, z1 = std::min(zones.count, z0 + per_band);
      const int64_t k0 = band_start[b], k1 = band_start[b + 1];
      std::vector<int64_t> next(z1 - z0 + 1, 0);
      for (int64_t k = k0; k < k1; ++k) ++next[banded_zone[k] - z0 + 1];
      next[0] = k0;
      std::partial_sum(next.begin(), next.end(), next.begin());
      std::copy(next.begin(), next.end() - 1, start.begin() + z0);
      for (int64_t k = k0; k < k1; ++k) unsorted[next[banded_zone[k] - z0]++] = points[k];
      for (int64_t z = z0; z < z1; ++z)
        std::sort(unsorted.begin() + start[z], unsorted.begin() + next[z - z0],
                  [](const SkyPoint& a, const SkyPoint& b) { return a.ra < b.ra; });
    }
    points.swap(unsorted);
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
double separation_deg(const SkyPoint& a, const SkyPoint& b) {
  const double s_dec = std::sin((b.dec - a.dec) * kDeg / 2.0);
  const double s_ra = std::sin((b.ra - a.ra) * kDeg / 2.0);
  const double h = s_dec * s_dec + a.cos_dec * b.cos_dec * s_ra * s_ra;
  return 2.0 * std::asin(std::sqrt(std::min(1.0, h))) / kDeg;
}

bool closer(const MatchPair& a, const MatchPair& b) {
  return a.sep_arcsec != b.sep_arcsec ? a.sep_arcsec < b.sep_arcsec : a.right < b.right;
}

}  // namespace

std::vector<MatchPair> cross_match(const std::vector<double>& left_ra, const std::vector<double>& left_dec,
                                   const std::vector<double>& right_ra, const std::vector<double>& right_dec,
                                   double radius, bool all_pairs) {
  if (!(radius > 0.0) || radius > 10.0)
    throw InvalidArgument("--radius must be > 0 and <= 10 deg, got " + std::to_string(radius * 3600.0) + " arcsec");
  // Candidates lie within reach in dec, so zones a little taller than the
  // radius put them in the point's zone and its two neighbours; zones this
  // thin keep the candidate boxes near the circle's area. The cap bounds the
  // offsets array for tiny radii.
  const double reach = radius * (1.0 + 1e-9) + 1e-12;
  const Zones zones(std::min<int64_t>(static_cast<int64_t>(180.0 / (radius * (1.0 + 1e-6))), 1 << 21));
  const ZoneIndex right(right_ra, right_dec, zones);
  // Left points sorted the same way: a zone's points, in ra order, move
  // through the neighbouring right zones in one forward sweep.
  const ZoneIndex left(left_ra, left_dec, zones);
  // Chord-length prefilter, widened by ~1e-12 rad where computed chords err by
  // ~1e-15. The haversine separation then decides, so the result is exactly
  // "separation <= radius".
  const double chord = 2.0 * std::sin(radius * kDeg / 2.0);
  const double chord2 = chord * chord * (1.0 + 1e-6) + 1e-24;

  // Work items: runs of whole zones holding about `chunk` left points.
  const int64_t nl = static_cast<int64_t>(left_ra.size()), chunk = 16384;
  std::vector<int64_t> first_zone{0};
  for (int64_t z = 0; z < zones.count; ++z)
    if (left.start[z + 1] - left.start[first_zone.back()] >= chunk) first_zone.push_back(z + 1);
  if (first_zone.back() != zones.count) first_zone.push_back(zones.count);
  const int64_t chunks = static_cast<int64_t>(first_zone.size()) - 1;
  std::vector<std::vector<MatchPair>> found(chunks);  // per chunk, in zone order
  std::vector<int32_t> count(nl, 0);                  // pairs per left point
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t c = 0; c < chunks; ++c) {
    std::vector<MatchPair>& out = found[c];
    struct Candidate {
      double chord2;
      const SkyPoint* p;
    };
    std::vector<Candidate> near;
    for (int64_t z = first_zone[c]; z < first_zone[c + 1]; ++z) {
      const double half = ra_half_width(zones.max_abs_dec(z), radius);
      // cursor[k]: in right zone z - 1 + k, the first point not left of any later window.
      const SkyPoint* cursor[3];
      for (int64_t k = 0; k < 3; ++k)
        cursor[k] = right.points.data() + right.start[std::clamp<int64_t>(z - 1 + k, 0, zones.count)];
      for (int64_t s = left.start[z]; s < left.start[z + 1]; ++s) {
        const SkyPoint& me = left.points[s];
        near.clear();
        auto scan = [&](const SkyPoint* it, const SkyPoint* end, double hi) {
          for (; it != end && it->ra <= hi; ++it) {
            const double dx = me.x - it->x, dy = me.y - it->y, dz = me.z - it->z;
            const double d2 = dx * dx + dy * dy + dz * dz;
            if (d2 <= chord2) near.push_back({d2, it});
          }
        };
        // Zones are taller than reach, so these are z - 1 .. z + 1 at most.
        const int64_t z0 = std::max(z - 1, zones.of(me.dec - reach)), z1 = std::min(z + 1, zones.of(me.dec + reach));
        for (int64_t rz = z0; rz <= z1; ++rz) {
          const SkyPoint* begin = right.points.data() + right.start[rz];
          const SkyPoint* end = right.points.data() + right.start[rz + 1];
          if (half >= 180.0) {
            scan(begin, end, 1e300);
            continue;
          }
          const double lo = me.ra - half, hi = me.ra + half;
          // lo only grows along the zone, so the cursor only moves forward.
          const SkyPoint*& cur = cursor[rz - z + 1];
          while (cur != end && cur->ra < lo) ++cur;
          scan(cur, end, hi);
          // Wrapped windows, disjoint from [lo, hi] since half < 180.
          auto from = [&](double ra) {
            return std::partition_point(begin, end, [ra](const SkyPoint& p) { return p.ra < ra; });
          };
          if (lo < 0.0) scan(from(lo + 360.0), end, 1e300);
          if (hi >= 360.0) scan(begin, end, hi - 360.0);
        }
        if (near.empty()) continue;
        // The nearest by haversine is among the nearest by chord, up to the
        // ~1e-15 errors of both: only those need a separation.
        double limit = chord2;
        if (!all_pairs) {
          double best = chord2;
          for (const Candidate& k : near) best = std::min(best, k.chord2);
          const double widened = std::sqrt(best) + 1e-12;
          limit = widened * widened;
        }
        const size_t first = out.size();
        for (const Candidate& k : near) {
          if (k.chord2 > limit) continue;
          const double sep = separation_deg(me, *k.p);
          if (sep <= radius) out.push_back({me.index, k.p->index, sep * 3600.0});
        }
        if (out.size() - first > 1) {
          std::sort(out.begin() + first, out.end(), closer);
          if (!all_pairs) out.resize(first + 1);
        }
        count[me.index] = static_cast<int32_t>(out.size() - first);
      }
    }
  }
  // Back to left order: each left point's pairs are one run in its chunk.
  std::vector<int64_t> offset(nl + 1, 0);
  for (int64_t i = 0; i < nl; ++i) offset[i + 1] = offset[i] + count[i];
  std::vector<MatchPair> pairs(static_cast<size_t>(offset[nl]));
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t c = 0; c < chunks; ++c)
    for (size_t k = 0; k < found[c].size(); k += count[found[c][k].left])
      std::copy_n(found[c].begin() + k, count[found[c][k].left], pairs.begin() + offset[found[c][k].left]);
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
