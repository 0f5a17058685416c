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

TEST_CASE("image features: asinh block means, masks ignored, unit norm", "[preprocess]") {
  mmu::ImageFeatureOptions opt;
  REQUIRE(mmu::image_feature_dim(opt) == 4 * 24 * 24);
  auto b = flat_image(4, 0.02f);
  // Band 1 brighter; a masked NaN pixel in band 2 must change nothing.
  for (int64_t i = 0; i < 160 * 160; ++i) b.pixels[160 * 160 + i] = 0.05f;
  const int64_t centre = 2 * 160 * 160 + 80 * 160 + 80;
  b.pixels[centre] = std::numeric_limits<float>::quiet_NaN();
  b.good[centre] = 0;
  std::vector<float> f(mmu::image_feature_dim(opt));
  REQUIRE(mmu::image_features(b, opt, f.data()) == -1);
  const double a = std::asinh(2.0), c = std::asinh(5.0);
  const double norm = std::sqrt(576 * (3 * a * a + c * c));
  CHECK(f[0] == Approx(a / norm).epsilon(1e-5));
  CHECK(f[576] == Approx(c / norm).epsilon(1e-5));
  CHECK(f[2 * 576 + 12 * 24 + 12] == Approx(a / norm).epsilon(1e-5));
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
