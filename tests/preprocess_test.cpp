#include "mmu/preprocess.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

namespace {

mmu::ImageBatch flat_image(int64_t bands, float value) {
  mmu::ImageBatch b;
  b.count = 1;
  b.bands = bands;
  b.height = b.width = 160;
  b.pixels.assign(bands * 160 * 160, value);
  b.good.assign(b.pixels.size(), 1);
  return b;
}

}  // namespace

TEST_CASE("image features: asinh ring means and angular moduli, masks ignored, unit norm", "[preprocess]") {
  mmu::ImageFeatureOptions opt;
  const int64_t per_band = 24 * 5;  // 24 rings x (mean + 4 angular moduli)
  REQUIRE(mmu::image_feature_dim(opt) == 4 * per_band);
  auto b = flat_image(4, 0.02f);
  // Band 1 brighter; a masked NaN pixel in band 2 must change nothing.
  for (int64_t i = 0; i < 160 * 160; ++i) b.pixels[160 * 160 + i] = 0.05f;
  const int64_t centre = 2 * 160 * 160 + 80 * 160 + 80;
  b.pixels[centre] = std::numeric_limits<float>::quiet_NaN();
  b.good[centre] = 0;
  std::vector<float> f(mmu::image_feature_dim(opt));
  REQUIRE(mmu::image_features(b, opt, f.data()) == -1);
  double norm = 0.0;
  for (float v : f) norm += static_cast<double>(v) * v;
  CHECK(norm == Approx(1.0).epsilon(1e-5));
  const double a = std::asinh(2.0), c = std::asinh(5.0);
  for (int64_t k = 0; k < 24; ++k) {
    CHECK(f[k] / f[0] == Approx(1.0).epsilon(1e-5));  // a flat band: the same mean in every ring
    CHECK(f[per_band + k] / f[k] == Approx(c / a).epsilon(1e-5));
    CHECK(f[2 * per_band + k] == Approx(f[k]).epsilon(1e-5));
    // A flat disc has no m = 1..3 structure (the pixel grid's 4-fold symmetry leaves m = 4 a little).
    for (int64_t m = 1; m <= 3; ++m) CHECK(std::abs(f[m * 24 + k]) < 1e-5 * f[k]);
  }
}

TEST_CASE("image features are the same for the eight 90-degree rotations and flips", "[preprocess]") {
  mmu::ImageFeatureOptions opt;
  const int64_t s = 160, plane = s * s;
  mmu::ImageBatch b = flat_image(4, 0.0f);
  b.count = 8;
  b.pixels.assign(8 * 4 * plane, 0.0f);
  b.good.assign(b.pixels.size(), 1);
  // An off-centre, elongated blob plus deterministic noise and a masked strip: no symmetry to hide behind.
  uint32_t seed = 12345;
  std::vector<float> img(4 * plane);
  std::vector<uint8_t> ok(4 * plane, 1);
  for (int64_t t = 0; t < 4; ++t)
    for (int64_t y = 0; y < s; ++y)
      for (int64_t x = 0; x < s; ++x) {
        seed = seed * 1664525u + 1013904223u;
        const double dy = y - 70.0, dx = x - 90.0;
        img[t * plane + y * s + x] = static_cast<float>((t + 1) * std::exp(-(dx * dx / 200.0 + dy * dy / 50.0)) +
                                                        0.01 * ((seed >> 8) / 16777216.0 - 0.5));
        if (x > 100 && x < 104 && y < 90) ok[t * plane + y * s + x] = 0;
      }
  // Copy k: rotated by 90 degrees k % 4 times, mirrored when k >= 4.
  for (int64_t k = 0; k < 8; ++k)
    for (int64_t t = 0; t < 4; ++t)
      for (int64_t y = 0; y < s; ++y)
        for (int64_t x = 0; x < s; ++x) {
          int64_t sy = y, sx = k >= 4 ? s - 1 - x : x;
          for (int64_t r = 0; r < k % 4; ++r) {
            const int64_t ny = sx, nx = s - 1 - sy;
            sy = ny;
            sx = nx;
          }
          b.pixels[(k * 4 + t) * plane + y * s + x] = img[t * plane + sy * s + sx];
          b.good[(k * 4 + t) * plane + y * s + x] = ok[t * plane + sy * s + sx];
        }
  const int64_t dim = mmu::image_feature_dim(opt);
  std::vector<float> f(8 * dim);
  REQUIRE(mmu::image_features(b, opt, f.data()) == -1);
  double moduli = 0.0;
  for (int64_t j = 24; j < 5 * 24; ++j) moduli += f[j];
  CHECK(moduli > 0.1);  // the blob's asymmetry is in the angular modes
  for (int64_t k = 1; k < 8; ++k)
    for (int64_t j = 0; j < dim; ++j) CHECK(f[k * dim + j] == Approx(f[j]).margin(1e-6));
}

TEST_CASE("image features report unmasked non-finite pixels", "[preprocess]") {
  mmu::ImageFeatureOptions opt;
  auto b = flat_image(4, 0.02f);
  b.pixels[3 * 160 * 160 + 70 * 160 + 70] = std::numeric_limits<float>::infinity();
  std::vector<float> f(mmu::image_feature_dim(opt));
  CHECK(mmu::image_features(b, opt, f.data()) == 0);
}

TEST_CASE("spectrum features: rebinned, standardised, bad pixels skipped", "[preprocess]") {
  mmu::SpectrumFeatureOptions opt;
  mmu::SpectrumBatch s;
  s.count = 2;
  s.length = 7781;
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t p = 0; p < 7781; ++p) {
      const float lam = 3600.0f + 0.8f * p;
      s.lambda.push_back(lam);
      s.flux.push_back(i == 0 ? lam / 1000.0f : 1.0f + (p % 2));  // a ramp; a comb
      s.ivar.push_back(1.0f);
      s.good.push_back(1);
    }
  s.flux[100] = std::numeric_limits<float>::quiet_NaN();  // unusable: masked
  s.good[100] = 0;
  std::vector<float> f(2 * opt.bins);
  REQUIRE(mmu::spectrum_features(s, opt, f.data()) == -1);
  double mean = 0, var = 0;
  for (int64_t k = 0; k < opt.bins; ++k) mean += f[k];
  mean /= opt.bins;
  for (int64_t k = 0; k < opt.bins; ++k) var += (f[k] - mean) * (f[k] - mean);
  CHECK(mean == Approx(0).margin(1e-5));
  CHECK(std::sqrt(var / (opt.bins - 1)) == Approx(1).epsilon(1e-4));
  for (int64_t k = 1; k < opt.bins; ++k) CHECK(f[k] > f[k - 1]);  // the ramp stays monotonic
  s.good[100] = 1;
  CHECK(mmu::spectrum_features(s, opt, f.data()) == 0);
}
