// Light-curve padding in every MMU builder convention (src/read/light_curve_padding.cpp):
// the same observations padded any way give bit-identical baseline features.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "mmu/mmu_files.h"
#include "mmu/preprocess.h"

namespace {

struct Point {
  float t, v, e;
};
using Curve = std::vector<std::vector<Point>>;  // per band, in file order

// A supernova-like curve: 3 bands of different lengths, times on a quarter-day
// grid (so shifts are exact), a real flux of exactly 0 and negative fluxes.
Curve sample_curve(uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  Curve c(3);
  const int counts[3] = {9, 4, 13};
  for (int b = 0; b < 3; ++b)
    for (int k = 0; k < counts[b]; ++k) {
      const float t = 55000.0f + 0.25f * std::floor(400.0f * u(rng));
      const float peak = 55050.0f;
      const float flux = 500.0f * std::exp(-std::fabs(t - peak) / 20.0f) - 20.0f + 40.0f * u(rng);
      c[b].push_back({t, flux, 5.0f + 10.0f * u(rng)});
    }
  c[0][3].v = 0.0f;  // plasticc/SNANA: a real flux can be exactly 0
  return c;
}

// The curve as read_light_curves leaves it: rows of `length` (≥ longest band),
// `bands` rows (extra rows all padding), padded at the end with pad_time/0/0.
mmu::LightCurveBatch padded(const Curve& c, int64_t bands, int64_t length, float pad_time) {
  mmu::LightCurveBatch b;
  b.count = 1;
  b.bands = bands;
  b.length = length;
  b.time.assign(bands * length, pad_time);
  b.value.assign(bands * length, 0.0f);
  b.error.assign(bands * length, 0.0f);
  for (size_t band = 0; band < c.size(); ++band)
    for (size_t k = 0; k < c[band].size(); ++k) {
      const size_t p = band * length + k;
      b.time[p] = c[band][k].t;
      b.value[p] = c[band][k].v;
      b.error[p] = c[band][k].e;
    }
  mmu::mark_light_curve_padding(&b);
  return b;
}

std::vector<float> features(const mmu::LightCurveBatch& b) {
  const mmu::LightCurveFeatureOptions opt;
  std::vector<float> f(static_cast<size_t>(b.count * mmu::light_curve_feature_dim(opt)));
  REQUIRE(mmu::light_curve_features(b, opt, f.data()) == -1);
  return f;
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

int64_t usable(const mmu::LightCurveBatch& b) {
  int64_t n = 0;
  for (uint8_t g : b.good) n += g;
  return n;
}

}  // namespace

TEST_CASE("a light curve padded in any MMU builder convention gives bit-identical features", "[lightcurve]") {
  const Curve c = sample_curve(7);
  const int64_t points = 9 + 4 + 13, longest = 13;
  // The SNANA template (swift_sne_ia, foundation, ...) at the object's own length: the reference.
  const auto snana = padded(c, 3, longest, -99.0f);
  REQUIRE(usable(snana) == points);
  CHECK(snana.padding.trailing_minus99 == 3 * longest - points);
  const auto want = features(snana);

  struct Case {
    const char* what;
    int64_t bands, length;
    float pad_time;
  };
  const Case cases[] = {
      {"SNANA template, longer rows", 3, 40, -99.0f},
      {"SNANA template, survey bands never observed", 5, 13, -99.0f},
      {"cfa/csp zero padding", 3, 13, 0.0f},
      {"cfa/csp zero padding, longer rows", 3, 29, 0.0f},
      {"plasticc (6 bands, per-file length)", 6, 57, 0.0f},
  };
  for (const Case& k : cases) {
    INFO(k.what);
    const auto b = padded(c, k.bands, k.length, k.pad_time);
    CHECK(usable(b) == points);
    const int64_t pad = k.bands * k.length - points;
    CHECK((k.pad_time == 0.0f ? b.padding.trailing_zero : b.padding.trailing_minus99) == pad);
    CHECK(b.padding.inner_padding + b.padding.sentinel_kept + b.padding.non_finite == 0);
    CHECK(mmu::padding_warnings("x.hdf5", b.padding).empty());
    CHECK(bit_equal(features(b), want));
  }

  // What the reader did before: only all-zero points were padding, so -99 padding
  // became observations at t = -99 and the features changed.
  auto old_rule = padded(c, 3, 40, -99.0f);
  for (size_t p = 0; p < old_rule.good.size(); ++p)
    old_rule.good[p] = !(old_rule.time[p] == 0.0f && old_rule.value[p] == 0.0f && old_rule.error[p] == 0.0f);
  CHECK_FALSE(bit_equal(features(old_rule), want));
}

TEST_CASE("light-curve features do not depend on the absolute date", "[lightcurve]") {
  // The features use time relative to the brightest point and the time span only.
  Curve c = sample_curve(11);
  const auto want = features(padded(c, 3, 20, -99.0f));
  for (auto& band : c)
    for (auto& p : band) p.t += 1024.0f;  // exact on the quarter-day grid
  CHECK(bit_equal(features(padded(c, 3, 20, -99.0f)), want));
  for (auto& band : c)
    for (auto& p : band) p.t -= 55000.0f;  // tess-like small times (BTJD scale)
  CHECK(bit_equal(features(padded(c, 3, 20, 0.0f)), want));
}

TEST_CASE("light-curve points that only look like padding are counted and warned about", "[lightcurve]") {
  const Curve c = sample_curve(3);
  SECTION("padding-like points before real ones are missing, with a warning") {
    Curve holes = c;
    holes[0][2] = {-99.0f, 0.0f, 0.0f};
    holes[2][5] = {0.0f, 0.0f, 0.0f};
    const auto b = padded(holes, 3, 13, -99.0f);
    CHECK(b.padding.inner_padding == 2);
    CHECK(b.good[0 * 13 + 2] == 0);
    CHECK(b.good[2 * 13 + 5] == 0);
    CHECK(usable(b) == 26 - 2);
    const auto w = mmu::padding_warnings("/data/swift/healpix=1/SN1.hdf5", b.padding);
    REQUIRE(w.size() == 1);
    CHECK(w[0].find("'/data/swift/healpix=1/SN1.hdf5'") == 0);
    CHECK(w[0].find("2 light-curve points look like padding") != std::string::npos);
  }
  SECTION("a padding time with a real value is kept as an observation, with a warning") {
    Curve odd = c;
    odd[1][1] = {-99.0f, 12.5f, 3.0f};
    const auto b = padded(odd, 3, 13, -99.0f);
    CHECK(b.padding.sentinel_kept == 1);
    CHECK(b.good[1 * 13 + 1] == 1);
    CHECK(usable(b) == 26);
    const auto w = mmu::padding_warnings("f.hdf5", b.padding);
    REQUIRE(w.size() == 1);
    CHECK(w[0].find("kept as observations") != std::string::npos);
  }
  SECTION("NaN fluxes at real times (tess) are missing, with a warning") {
    Curve tess = {c[2]};
    tess[0][4].v = std::numeric_limits<float>::quiet_NaN();
    tess[0][6].e = std::numeric_limits<float>::infinity();
    const auto b = padded(tess, 1, 20, 0.0f);
    CHECK(b.padding.non_finite == 2);
    CHECK(b.padding.trailing_zero == 7);
    CHECK(usable(b) == 11);
    CHECK(mmu::padding_warnings("tess.hdf5", b.padding).size() == 1);
    Curve clean = tess;
    clean[0].erase(clean[0].begin() + 6);
    clean[0].erase(clean[0].begin() + 4);
    CHECK(bit_equal(features(b), features(padded(clean, 1, 11, 0.0f))));
  }
  SECTION("a file mixing -99 and 0 padding is warned about; both are padding") {
    auto b = padded(c, 3, 13, -99.0f);
    for (int64_t k = 9; k < 13; ++k) b.time[k] = 0.0f;  // band 0's tail padded with 0 instead
    mmu::mark_light_curve_padding(&b);
    CHECK(b.padding.trailing_zero == 4);
    CHECK(b.padding.trailing_minus99 == 39 - 26 - 4);
    CHECK(usable(b) == 26);
    const auto w = mmu::padding_warnings("mixed.hdf5", b.padding);
    REQUIRE(w.size() == 1);
    CHECK(w[0].find("both time -99 padding") != std::string::npos);
  }
}

TEST_CASE("the real cfa and csp files are zero padded and need no assumption", "[lightcurve][real]") {
  // tests/data/mmu-real: SN2007bc (CfA, 7 x 19) and SN2004dt (CSP, 12 x 46), padding 0 in all three arrays.
  const auto files = mmu::discover_files({std::string(MMU_TEST_DATA_DIR) + "/mmu-real"});
  REQUIRE(files.size() == 2);
  for (const auto& file : files) {
    INFO(file.path);
    mmu::MmuFileReader reader(file);
    mmu::LightCurveBatch lc;
    reader.read_light_curves(0, 1, &lc);
    // Independent count: per band row, the points after its last non-zero time.
    int64_t trailing = 0;
    for (int64_t band = 0; band < lc.bands; ++band) {
      int64_t last = -1;
      for (int64_t k = 0; k < lc.length; ++k)
        if (lc.time[band * lc.length + k] != 0.0f) last = k;
      trailing += lc.length - 1 - last;
    }
    CHECK(trailing > 0);
    CHECK(lc.padding.trailing_zero == trailing);
    CHECK(usable(lc) == lc.bands * lc.length - trailing);
    const auto& pad = lc.padding;
    CHECK(pad.trailing_minus99 + pad.inner_padding + pad.sentinel_kept + pad.non_finite == 0);
    CHECK(mmu::padding_warnings(file.path, lc.padding).empty());
  }
}
