#include "mmu/crossmatch.h"

#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "mmu/error.h"
#include "mmu/sky.h"

namespace {

struct Points {
  std::vector<double> ra, dec;
};

// Hard places: a strip along nside-16 cell borders, the ra = 0/360 seam, both
// poles, plus a uniform background. Right points are partly perturbed copies of
// left ones so there are many true pairs at every separation up to ~2 radii.
void make_catalogs(int64_t n, double radius, Points* left, Points* right) {
  std::mt19937_64 rng(2024);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  auto add = [&](Points* p, double ra, double dec) {
    ra = std::fmod(ra, 360.0);  // copies near a pole move by many turns of ra
    if (ra < 0.0) ra += 360.0;
    dec = std::clamp(dec, -90.0, 90.0);
    p->ra.push_back(ra);
    p->dec.push_back(dec);
  };
  auto sample = [&](Points* p) {
    const double r = u(rng);
    if (r < 0.3) {  // cell border: nside-16 cells meet along dec ~ 41.81 deg (z = 2/3)
      add(p, 40.0 + 2.0 * u(rng), 41.8103149 + (u(rng) - 0.5) * 0.01);
    } else if (r < 0.5) {  // the seam
      add(p, (u(rng) - 0.5) * 0.02, 10.0 + u(rng) * 0.5);
    } else if (r < 0.65) {  // north pole cap
      add(p, 360.0 * u(rng), 90.0 - 0.005 * u(rng));
    } else if (r < 0.8) {  // south pole cap
      add(p, 360.0 * u(rng), -90.0 + 0.005 * u(rng));
    } else {
      add(p, 360.0 * u(rng), std::asin(2.0 * u(rng) - 1.0) * 180.0 / M_PI);
    }
  };
  for (int64_t i = 0; i < n; ++i) sample(left);
  for (int64_t i = 0; i < n; ++i) {
    if (i % 2 == 0) {  // a copy of a left point moved by up to 2 radii in a random direction
      const double d = 2.0 * radius * u(rng), pa = 2.0 * M_PI * u(rng);
      const double dec = left->dec[i] + d * std::cos(pa);
      const double cosd = std::max(1e-6, std::cos(left->dec[i] * M_PI / 180.0));
      add(right, left->ra[i] + d * std::sin(pa) / cosd, dec);
    } else {
      sample(right);
    }
  }
}

// Every pair, checked by chord length on unit vectors (no zones, no sorting),
// confirmed with the haversine separation that defines the radius.
std::vector<mmu::MatchPair> brute_force(const Points& l, const Points& r, double radius, bool all) {
  auto xyz = [](const Points& p) {
    std::vector<double> v(3 * p.ra.size());
    for (size_t i = 0; i < p.ra.size(); ++i) {
      const double a = p.ra[i] * M_PI / 180.0, d = p.dec[i] * M_PI / 180.0;
      v[3 * i] = std::cos(d) * std::cos(a);
      v[3 * i + 1] = std::cos(d) * std::sin(a);
      v[3 * i + 2] = std::sin(d);
    }
    return v;
  };
  const auto lv = xyz(l), rv = xyz(r);
  const double chord = 2.0 * std::sin(radius * M_PI / 360.0);
  const double limit = chord * chord * (1.0 + 1e-6) + 1e-18;
  const int64_t nl = static_cast<int64_t>(l.ra.size()), nr = static_cast<int64_t>(r.ra.size());
  std::vector<std::vector<mmu::MatchPair>> per(nl);
#pragma omp parallel for schedule(dynamic, 256)
  for (int64_t i = 0; i < nl; ++i) {
    const double x = lv[3 * i], y = lv[3 * i + 1], z = lv[3 * i + 2];
    for (int64_t j = 0; j < nr; ++j) {
      const double dx = x - rv[3 * j], dy = y - rv[3 * j + 1], dz = z - rv[3 * j + 2];
      if (dx * dx + dy * dy + dz * dz <= limit) {
        const double sep = mmu::angular_separation_deg(l.ra[i], l.dec[i], r.ra[j], r.dec[j]);
        if (sep <= radius) per[i].push_back({i, j, sep * 3600.0});
      }
    }
    std::sort(per[i].begin(), per[i].end(), [](const mmu::MatchPair& a, const mmu::MatchPair& b) {
      return a.sep_arcsec != b.sep_arcsec ? a.sep_arcsec < b.sep_arcsec : a.right < b.right;
    });
    if (!all && per[i].size() > 1) per[i].resize(1);
  }
  std::vector<mmu::MatchPair> out;
  for (auto& v : per) out.insert(out.end(), v.begin(), v.end());
  return out;
}

// Pairs exactly; separations as angular_separation_deg gives them, to 4 ulps
// (the match computes small angles by series, which agree with libm's sin
// and asin to the last bit but in rare rounding cases).
void require_equal(const std::vector<mmu::MatchPair>& got, const std::vector<mmu::MatchPair>& want) {
  REQUIRE(got.size() == want.size());
  int64_t bit_equal = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    REQUIRE(got[i].left == want[i].left);
    REQUIRE(got[i].right == want[i].right);
    const double ulp = std::nextafter(want[i].sep_arcsec, HUGE_VAL) - want[i].sep_arcsec;
    REQUIRE(std::fabs(got[i].sep_arcsec - want[i].sep_arcsec) <= 4 * ulp);
    bit_equal += got[i].sep_arcsec == want[i].sep_arcsec;
  }
  INFO("separations equal to the last bit: " << bit_equal << " of " << got.size());
  CHECK(bit_equal >= static_cast<int64_t>(got.size() * 0.999));
}

}  // namespace

TEST_CASE("cross-match equals brute force on 1e5 x 1e5 positions, borders and poles included", "[sky][xmatch][slow]") {
  const double radius = 1.0 / 3600.0;
  Points left, right;
  make_catalogs(100000, radius, &left, &right);
  const mmu::CrossMatchIndex index(right.ra, right.dec, radius);  // one index, matched twice
  const auto nearest = index.match(left.ra, left.dec, false);
  const auto all = index.match(left.ra, left.dec, true);
  INFO("nearest pairs " << nearest.size() << ", all pairs " << all.size());
  REQUIRE(nearest.size() > 20000);   // the test must exercise many matches
  REQUIRE(all.size() > nearest.size());  // and crowded places with several candidates
  require_equal(nearest, brute_force(left, right, radius, false));
  require_equal(all, brute_force(left, right, radius, true));
  // Pairs across cell borders are kept (MMU's own cross-match drops them).
  int64_t across = 0;
  for (const auto& p : all)
    across += mmu::healpix_cell(left.ra[p.left], left.dec[p.left]) !=
              mmu::healpix_cell(right.ra[p.right], right.dec[p.right]);
  CHECK(across > 100);
}

TEST_CASE("cross-match equals brute force at a radius of half a degree", "[sky][xmatch]") {
  // Large angles take libm's sine and arcsine, not the small-angle series,
  // and crowded windows give nearest mode many candidates to choose from.
  const double radius = 0.5;
  Points left, right;
  make_catalogs(4000, radius, &left, &right);
  const mmu::CrossMatchIndex index(right.ra, right.dec, radius);
  const auto nearest = index.match(left.ra, left.dec, false);
  const auto all = index.match(left.ra, left.dec, true);
  REQUIRE(all.size() > 20 * nearest.size());
  require_equal(nearest, brute_force(left, right, radius, false));
  require_equal(all, brute_force(left, right, radius, true));
}

TEST_CASE("cross-match of crowded ties equals brute force: equal positions, equal ra", "[sky][xmatch]") {
  // Hundreds of right points at one position give hundreds of equal
  // separations (ordered by right index), and hundreds at one ra put equal
  // keys into one zone's sort by ra.
  const double radius = 1.0 / 3600.0;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  Points left, right;
  for (int i = 0; i < 600; ++i) {
    right.ra.push_back(i % 3 == 0 ? 150.0 : 150.0 + 0.3 * radius);
    right.dec.push_back(i % 3 == 2 ? 20.0 + 0.4 * radius * u(rng) : 20.0);
  }
  for (int i = 0; i < 200; ++i) {
    left.ra.push_back(150.0 + radius * u(rng));
    left.dec.push_back(20.0 + radius * u(rng));
  }
  const mmu::CrossMatchIndex index(right.ra, right.dec, radius);
  const auto all = index.match(left.ra, left.dec, true);
  REQUIRE(all.size() > 200 * 300);
  require_equal(index.match(left.ra, left.dec, false), brute_force(left, right, radius, false));
  require_equal(all, brute_force(left, right, radius, true));
}

TEST_CASE("one index matched from several threads at once gives the pairs of a lone call", "[sky][xmatch]") {
  // Inside a parallel region the match's own regions get a team of one
  // thread (nesting is off), fewer than omp_get_max_threads() says.
  const double radius = 1.0 / 3600.0;
  Points left, right;
  make_catalogs(20000, radius, &left, &right);
  const mmu::CrossMatchIndex index(right.ra, right.dec, radius);
  const auto lone = index.match(left.ra, left.dec, true);
  REQUIRE(lone.size() > 5000);
  std::vector<std::vector<mmu::MatchPair>> each(4);
#pragma omp parallel for num_threads(4)
  for (int t = 0; t < 4; ++t) each[t] = index.match(left.ra, left.dec, true);
  for (const auto& pairs : each) require_equal(pairs, lone);
  // Nearest mode keeps its answers in the left points' own slots: each call its own.
  const auto lone_nearest = index.match(left.ra, left.dec, false);
  REQUIRE(lone_nearest.size() > 5000);
#pragma omp parallel for num_threads(4)
  for (int t = 0; t < 4; ++t) each[t] = index.match(left.ra, left.dec, false);
  for (const auto& pairs : each) require_equal(pairs, lone_nearest);
}

TEST_CASE("positions without a valid ra/dec among many are skipped by both modes, as a brute force over the rest",
          "[xmatch]") {
  // Invalid points go to an extra zone of their own; in nearest mode their
  // answer slots are never matched and must read "none".
  const double radius = 2.0 / 3600.0, nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  Points left, right;
  make_catalogs(20000, radius, &left, &right);
  Points valid_left, valid_right;  // the brute force's input: the invalid ones dropped
  std::vector<int64_t> left_of, right_of;  // their indices in left, right
  for (size_t i = 0; i < left.ra.size(); ++i) {
    if (i % 7 == 3) left.ra[i] = i % 2 ? nan : inf;
    if (i % 11 == 5) left.dec[i] = i % 2 ? nan : 91.0;
    if (i % 13 == 1) right.ra[i] = i % 2 ? -inf : nan;
    if (i % 17 == 2) right.dec[i] = i % 2 ? nan : -90.5;
  }
  auto keep = [](const Points& p, Points* out, std::vector<int64_t>* at) {
    for (size_t i = 0; i < p.ra.size(); ++i)
      if (std::isfinite(p.ra[i]) && std::isfinite(p.dec[i]) && std::fabs(p.dec[i]) <= 90.0) {
        out->ra.push_back(p.ra[i]);
        out->dec.push_back(p.dec[i]);
        at->push_back(static_cast<int64_t>(i));
      }
  };
  keep(left, &valid_left, &left_of);
  keep(right, &valid_right, &right_of);
  REQUIRE(valid_left.ra.size() < left.ra.size());
  REQUIRE(valid_right.ra.size() < right.ra.size());
  const mmu::CrossMatchIndex index(right.ra, right.dec, radius);
  for (const bool all : {false, true}) {
    std::vector<mmu::MatchPair> want = brute_force(valid_left, valid_right, radius, all);
    for (mmu::MatchPair& p : want) p = {left_of[p.left], right_of[p.right], p.sep_arcsec};
    REQUIRE(want.size() > 3000);
    require_equal(index.match(left.ra, left.dec, all), want);
  }
}

TEST_CASE("positions without a valid ra/dec are never matched; ra is taken modulo 360", "[xmatch]") {
  const double nan = std::nan("");
  const std::vector<double> right_ra{10.0, 350.0, nan, 20.0, 30.0}, right_dec{0.0, 0.0, 0.0, 95.0, nan};
  const std::vector<double> left_ra{370.0, -10.0, nan, 20.0, 30.0, 10.0}, left_dec{0.0, 0.0, 0.0, 90.5, 0.0, nan};
  for (const bool all_pairs : {true, false}) {
    INFO((all_pairs ? "all pairs" : "nearest"));
    const auto pairs = mmu::cross_match(left_ra, left_dec, right_ra, right_dec, 1.0 / 3600.0, all_pairs);
    REQUIRE(pairs.size() == 2);
    for (size_t i = 0; i < 2; ++i) {
      CHECK(pairs[i].left == static_cast<int64_t>(i));
      CHECK(pairs[i].right == static_cast<int64_t>(i));
      CHECK(pairs[i].sep_arcsec < 1e-6);
    }
  }
}

TEST_CASE("angles parse with units and bad ones are named", "[xmatch]") {
  CHECK(mmu::parse_angle_deg("1arcsec", "--radius") == Approx(1.0 / 3600));
  CHECK(mmu::parse_angle_deg("2 arcmin", "--radius") == Approx(2.0 / 60));
  CHECK(mmu::parse_angle_deg("0.5", "--radius") == Approx(0.5 / 3600));
  CHECK(mmu::parse_angle_deg("0.01deg", "--radius") == Approx(0.01));
  CHECK_THROWS_WITH(mmu::parse_angle_deg("1parsec", "--radius"), Catch::Contains("--radius") && Catch::Contains("parsec"));
  CHECK_THROWS_WITH(mmu::parse_angle_deg("-1arcsec", "--radius"), Catch::Contains("positive"));
  std::vector<double> a{1.0}, b{1.0};
  CHECK_THROWS_AS(mmu::cross_match(a, b, a, b, 0.0, false), mmu::Error);
  const std::vector<double> two{1.0, 2.0};
  CHECK_THROWS_WITH(mmu::cross_match(two, b, a, b, 1e-3, false), Catch::Contains("left") && Catch::Contains("dec"));
  CHECK_THROWS_WITH(mmu::CrossMatchIndex(a, two, 1e-3), Catch::Contains("right") && Catch::Contains("dec"));
}
