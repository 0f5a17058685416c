// The nearest cross-match read from its answers block by block
// (NearestMatches, write_nearest_csv), and all pairs read range by range
// (AllPairMatches, write_all_pairs_csv), against the vector of pairs and a
// brute-force nearest.
#include <omp.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "mmu/crossmatch.h"
#include "mmu/error.h"
#include "mmu/pair_csv.h"
#include "mmu/sky.h"
#include "mmu/sky_source.h"
#include "xmatch_test_util.h"

namespace {

using mmu::test::integer_sky_source;
using mmu::test::written_with_threads;

// Positions in the places a match finds hard: a sparse field, a dense clump,
// the ra seam, both poles, and invalid positions (never matched). With base,
// half the points are copies of base's moved by less than two radii.
void positions(size_t n, std::mt19937_64* rng, double radius, const mmu::SkySource* base, mmu::SkySource* s) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (size_t i = 0; i < n; ++i) {
    double ra = 0.0, dec = 0.0;
    switch (i % 6) {
      case 0: ra = 10.0 + u(*rng); dec = -5.0 + u(*rng); break;
      case 1: ra = 200.0 + u(*rng) * 0.01; dec = 40.0 + u(*rng) * 0.01; break;
      case 2: ra = u(*rng) < 0.5 ? 359.999 + u(*rng) * 1e-3 : u(*rng) * 1e-3; dec = u(*rng) * 0.01; break;
      case 3: ra = u(*rng) * 360.0; dec = 89.999 + u(*rng) * 1e-3; break;
      case 4: ra = u(*rng) * 360.0; dec = -90.0 + u(*rng) * 1e-3; break;
      default:
        ra = i % 12 == 5 ? std::numeric_limits<double>::quiet_NaN() : u(*rng) * 360.0;
        dec = i % 12 == 5 ? 0.0 : 95.0;  // both invalid
    }
    if (base != nullptr && i % 2 == 0 && i < base->ra.size() && std::isfinite(base->ra[i]) &&
        std::fabs(base->dec[i]) <= 90.0) {
      ra = base->ra[i] + (u(*rng) - 0.5) * 2.0 * radius;
      dec = std::max(-90.0, std::min(90.0, base->dec[i] + (u(*rng) - 0.5) * 2.0 * radius));
    }
    s->ra.push_back(ra);
    s->dec.push_back(dec);
  }
}

// All pairs_of blocks of `block` left points, one after the other.
std::vector<mmu::MatchPair> by_blocks(const mmu::NearestMatches& m, int64_t block) {
  std::vector<mmu::MatchPair> out(static_cast<size_t>(m.left_count()));
  mmu::MatchPair* at = out.data();
  for (int64_t i = 0; i < m.left_count(); i += block) at = m.pairs_of(i, std::min(m.left_count(), i + block), at);
  out.resize(static_cast<size_t>(at - out.data()));
  return out;
}

bool same_pairs(const std::vector<mmu::MatchPair>& a, const std::vector<mmu::MatchPair>& b) {
  if (a.size() != b.size()) return false;
  for (size_t k = 0; k < a.size(); ++k)
    if (a[k].left != b[k].left || a[k].right != b[k].right || a[k].sep_arcsec != b[k].sep_arcsec) return false;
  return true;
}

// Two catalogs of positions() (the left one half copies of the right one's
// points), their ids integers from the given firsts.
struct Catalogs {
  mmu::SkySource l, r;
};
Catalogs catalogs(uint64_t seed, double radius, size_t nl, int64_t first_left, size_t nr, int64_t first_right,
                  const std::string& right_survey) {
  std::mt19937_64 rng(seed);
  Catalogs c{integer_sky_source(nl, first_left, "left"), integer_sky_source(nr, first_right, right_survey)};
  positions(nr, &rng, radius, nullptr, &c.r);
  positions(nl, &rng, radius, &c.r, &c.l);
  return c;
}

// Brute force: every pair within the radius in (left, sep, right) order, or
// with nearest only each left point's first (lowest right index on ties).
std::vector<mmu::MatchPair> brute_force(const Catalogs& c, double radius, bool nearest) {
  std::vector<mmu::MatchPair> out;
  for (size_t i = 0; i < c.l.ra.size(); ++i) {
    if (!std::isfinite(c.l.ra[i]) || std::fabs(c.l.dec[i]) > 90.0) continue;
    const size_t from = out.size();
    for (size_t j = 0; j < c.r.ra.size(); ++j) {
      if (!std::isfinite(c.r.ra[j]) || std::fabs(c.r.dec[j]) > 90.0) continue;
      const double sep = mmu::angular_separation_deg(c.l.ra[i], c.l.dec[i], c.r.ra[j], c.r.dec[j]);
      if (sep <= radius) out.push_back({static_cast<int64_t>(i), static_cast<int64_t>(j), sep * 3600.0});
    }
    std::sort(out.begin() + static_cast<std::ptrdiff_t>(from), out.end(), [](const auto& a, const auto& b) {
      return a.sep_arcsec != b.sep_arcsec ? a.sep_arcsec < b.sep_arcsec : a.right < b.right;
    });
    if (nearest && out.size() > from + 1) out.resize(from + 1);
  }
  return out;
}

// The index of the first pair that differs from the brute force's (same
// pairs, separations within 1e-9 arcsec); pairs.size() when none does. One
// check, not one per pair: there are many.
size_t first_wrong(const std::vector<mmu::MatchPair>& pairs, const std::vector<mmu::MatchPair>& expected) {
  size_t k = 0;
  while (k < pairs.size() && k < expected.size() && pairs[k].left == expected[k].left &&
         pairs[k].right == expected[k].right && std::fabs(pairs[k].sep_arcsec - expected[k].sep_arcsec) <= 1e-9)
    ++k;
  return k;
}

}  // namespace

TEST_CASE("nearest answers read block by block equal match's pairs and a brute-force nearest", "[xmatch]") {
  const double radius = 2.0 / 3600.0;
  const Catalogs c = catalogs(11, radius, 2500, 0, 3000, 1000000, "right");
  const mmu::CrossMatchIndex index(c.r.ra, c.r.dec, radius);
  const std::vector<mmu::MatchPair> pairs = index.match(c.l.ra, c.l.dec, false);
  const mmu::NearestMatches nearest = index.match_nearest(c.l.ra, c.l.dec);
  CHECK(nearest.left_count() == 2500);
  CHECK(nearest.pair_count() == static_cast<int64_t>(pairs.size()));
  for (int64_t block : {1, 7, 256, 100000}) CHECK(same_pairs(by_blocks(nearest, block), pairs));
  CHECK(nearest.pairs_of(5, 5, nullptr) == nullptr);  // an empty range writes nothing

  const std::vector<mmu::MatchPair> expected = brute_force(c, radius, true);
  REQUIRE(expected.size() > 500);  // the test has pairs of every kind to compare
  REQUIRE(pairs.size() == expected.size());
  CHECK(first_wrong(pairs, expected) == pairs.size());
}

TEST_CASE("nearest CSV written from the answers is the CSV of match's pairs, byte for byte, 1 and 2 threads",
          "[xmatch]") {
  // Enough left points for several of the writer's blocks (~13,000 rows each).
  const double radius = 2.0 / 3600.0;
  const Catalogs c = catalogs(12, radius, 40000, -20000, 30000, 1000000000000, "right_survey");
  const mmu::SkySource &l = c.l, &r = c.r;
  const mmu::CrossMatchIndex index(r.ra, r.dec, radius);
  const std::vector<mmu::MatchPair> pairs = index.match(l.ra, l.dec, false);
  const mmu::NearestMatches nearest = index.match_nearest(l.ra, l.dec);
  REQUIRE(pairs.size() > 15000);
  const std::string expected = written_with_threads([&](int fd) { mmu::write_pairs_csv(l, r, pairs, fd); }, 1);
  CHECK(std::count(expected.begin(), expected.end(), '\n') == static_cast<int64_t>(pairs.size()) + 1);
  for (int threads : {1, 2})
    CHECK(written_with_threads([&](int fd) { mmu::write_nearest_csv(l, r, nearest, fd); }, threads) == expected);
}

namespace {

// All pairs() ranges of `block` pairs, one after the other.
std::vector<mmu::MatchPair> by_ranges(const mmu::AllPairMatches& m, int64_t block) {
  std::vector<mmu::MatchPair> out(static_cast<size_t>(m.pair_count()));
  for (int64_t k = 0; k < m.pair_count(); k += block) {
    const int64_t last = std::min(m.pair_count(), k + block);
    REQUIRE(m.pairs(k, last, out.data() + k) == out.data() + last);
  }
  return out;
}

}  // namespace

TEST_CASE("all-pairs answers read range by range equal a brute-force match, and their CSV match's, byte for byte",
          "[xmatch]") {
  // Dense places (a clump, the poles) give many pairs a point, so ranges
  // start and end inside a point's pairs and inside runs of points without any.
  const double radius = 2.0 / 3600.0;
  const Catalogs c = catalogs(13, radius, 5000, 0, 6000, 5000000, "right");
  const mmu::SkySource &l = c.l, &r = c.r;
  const mmu::CrossMatchIndex index(r.ra, r.dec, radius);
  const mmu::AllPairMatches all = index.match_all(l.ra, l.dec);
  CHECK(all.left_count() == 5000);

  const std::vector<mmu::MatchPair> expected = brute_force(c, radius, false);
  REQUIRE(expected.size() > 20000);  // several of the writer's blocks, and points with many pairs
  REQUIRE(all.pair_count() == static_cast<int64_t>(expected.size()));
  const std::vector<mmu::MatchPair> pairs = index.match(l.ra, l.dec, true);
  CHECK(same_pairs(pairs, by_ranges(all, all.pair_count())));
  for (int64_t block : {1, 3, 255, 4099}) CHECK(same_pairs(by_ranges(all, block), pairs));
  CHECK(first_wrong(pairs, expected) == pairs.size());
  mmu::MatchPair one;
  CHECK(all.pairs(all.pair_count(), all.pair_count(), &one) == &one);  // an empty range writes nothing
  for (const auto& [first, last] : {std::pair<int64_t, int64_t>{0, all.pair_count() + 1}, {-1, 0}, {2, 1}}) {
    try {
      all.pairs(first, last, nullptr);
      FAIL("pairs " << first << " to " << last << " read");
    } catch (const mmu::Error& e) {
      CHECK(e.kind() == mmu::ErrorKind::kInvalidArgument);
    }
  }

  const std::string csv = written_with_threads([&](int fd) { mmu::write_pairs_csv(l, r, pairs, fd); }, 1);
  for (int threads : {1, 2})
    CHECK(written_with_threads([&](int fd) { mmu::write_all_pairs_csv(l, r, all, fd); }, threads) == csv);
}
