// Defaults a user gets without flags: a catalog cross-matched with itself
// skips each object's own pair, and the default space of a modality.
#include <catch2/catch.hpp>
#include <algorithm>
#include <random>
#include <tuple>

#include "mmu/crossmatch.h"
#include "mmu/error.h"
#include "mmu/sky.h"
#include "mmu/store.h"

namespace {

// Brute force over every pair, skipping i == j: (left, right) of the pairs
// within radius, nearest only (lowest index on ties) or all.
std::vector<std::pair<int64_t, int64_t>> self_pairs(const std::vector<double>& ra, const std::vector<double>& dec,
                                                    double radius, bool all) {
  std::vector<std::pair<int64_t, int64_t>> out;
  const int64_t n = static_cast<int64_t>(ra.size());
  for (int64_t i = 0; i < n; ++i) {
    int64_t best = -1;
    double best_sep = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (j == i) continue;
      const double sep = mmu::angular_separation_deg(ra[i], dec[i], ra[j], dec[j]);
      if (sep > radius) continue;
      if (all) out.emplace_back(i, j);
      else if (best < 0 || sep < best_sep) best = j, best_sep = sep;
    }
    if (!all && best >= 0) out.emplace_back(i, best);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::pair<int64_t, int64_t>> pairs_of(const std::vector<mmu::MatchPair>& m) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& p : m) out.emplace_back(p.left, p.right);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("a catalog matched with itself: no self-pairs, nearest is the nearest other, sparse and dense windows") {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> ra, dec;
  // A sparse field with planted near-duplicates, and a dense clump (windows
  // long enough for the matcher's batched path), and points at the ra seam.
  for (int i = 0; i < 300; ++i) {
    ra.push_back(10.0 + u(rng) * 0.5);
    dec.push_back(-5.0 + u(rng) * 0.5);
    if (i % 7 == 0) {
      ra.push_back(ra.back() + 0.3 / 3600.0);
      dec.push_back(dec.back());
    }
  }
  for (int i = 0; i < 200; ++i) {
    ra.push_back(200.0 + u(rng) * 20.0 / 3600.0);
    dec.push_back(40.0 + u(rng) * 20.0 / 3600.0);
  }
  for (int i = 0; i < 20; ++i) {
    ra.push_back(i % 2 ? 359.99999 + u(rng) * 1e-5 : u(rng) * 1e-4);
    dec.push_back(u(rng) * 1e-4);
  }
  std::vector<int64_t> same(ra.size());
  for (size_t i = 0; i < same.size(); ++i) same[i] = static_cast<int64_t>(i);
  for (double radius : {1.0 / 3600.0, 30.0 / 3600.0}) {
    const mmu::CrossMatchIndex index(ra, dec, radius);
    for (bool all : {false, true}) {
      const auto got = index.match(ra, dec, all, same);
      CHECK(std::none_of(got.begin(), got.end(), [](const mmu::MatchPair& p) { return p.left == p.right; }));
      CHECK(pairs_of(got) == self_pairs(ra, dec, radius, all));
    }
    // Without same_object, every object is its own nearest.
    const auto plain = index.match(ra, dec, false);
    REQUIRE(plain.size() == ra.size());
    CHECK(std::all_of(plain.begin(), plain.end(), [](const mmu::MatchPair& p) { return p.left == p.right; }));
  }
  const mmu::CrossMatchIndex index(ra, dec, 1e-3);
  CHECK_THROWS_WITH(index.match(ra, dec, false, std::vector<int64_t>(3, -1)), Catch::Contains("same-object"));
}

TEST_CASE("default space by rule: the newest model space of the modality, else its baseline") {
  auto space = [](const char* name, const char* modality, const char* model, const char* created) {
    mmu::SpaceInfo s;
    s.name = name;
    s.modality = modality;
    s.model = model;
    s.created = created;
    return s;
  };
  std::vector<mmu::SpaceInfo> spaces = {space("image", "image", "baseline-pca", "2026-01-03T00:00:00Z"),
                                        space("spectrum", "spectrum", "baseline-pca", "2026-01-01T00:00:00Z")};
  CHECK(mmu::default_space_by_rule(spaces, "image") == "image");
  CHECK(mmu::default_space_by_rule(spaces, "lightcurve").empty());
  spaces.push_back(space("clip-image@2", "image", "clip-image", "2026-01-02T00:00:00Z"));
  spaces.push_back(space("clip-image@1", "image", "clip-image", "2026-01-01T00:00:00Z"));
  CHECK(mmu::default_space_by_rule(spaces, "image") == "clip-image@2");  // a model beats a newer baseline
  CHECK(mmu::default_space_by_rule(spaces, "spectrum") == "spectrum");
  spaces.push_back(space("aion@1", "image", "aion", "2026-01-02T00:00:00Z"));
  CHECK(mmu::default_space_by_rule(spaces, "image") == "clip-image@2");  // same time: the greater name
}
