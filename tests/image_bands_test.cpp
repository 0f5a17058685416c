#include "mmu/image_bands.h"

#include <catch2/catch.hpp>

#include "mmu/preprocess.h"

using mmu::plan_bands;

TEST_CASE("band plan: g, r, i, z through the table, never by a letter", "[bands]") {
  // hsc: its y band is left out of the shared space.
  auto p = plan_bands({"hsc-g", "hsc-r", "hsc-i", "hsc-z", "hsc-y"});
  CHECK(p.space == "image");
  CHECK(p.used == std::vector<int64_t>{0, 1, 2, 3});
  // Any order in the file: the space's order is g, r, i, z.
  p = plan_bands({"DES-Z", "des-g", "des-i", "des-r"});
  CHECK(p.space == "image");
  CHECK(p.used == std::vector<int64_t>{1, 3, 2, 0});
  // R, G, B is a colour set: not the r and g filters, and B is not dropped.
  p = plan_bands({"B", "G", "R"});
  CHECK(p.space == "image-rgb");
  CHECK(p.used == std::vector<int64_t>{2, 1, 0});
  // A name ending in a filter letter is not that filter.
  p = plan_bands({"xyz-g", "abc-r", "foo-i", "bar-z"});
  CHECK(p.space == "image-xyz-g-abc-r-foo-i-bar-z");
  p = plan_bands({"des-z", "des-g", "des-r"});
  CHECK(p.space == "image-grz");
  CHECK(p.used == std::vector<int64_t>{1, 2, 0});
  p = plan_bands({"f444w", "f150w"});
  CHECK(p.space == "image-f150w-f444w");
  CHECK(p.used == std::vector<int64_t>{1, 0});
}

TEST_CASE("band plan: names that cannot name a space are refused", "[bands]") {
  CHECK_FALSE(plan_bands({}).error.empty());
  CHECK_FALSE(plan_bands({"des-g", "des-g"}).error.empty());
  CHECK_FALSE(plan_bands({"des-g", "hsc-g"}).error.empty());
  CHECK_FALSE(plan_bands({"../x"}).error.empty());
  CHECK_FALSE(plan_bands({""}).error.empty());
}

TEST_CASE("band table: pixel scales and the builders' band orders", "[bands]") {
  CHECK(mmu::table_pixel_scale({"des-g", "des-z"}) == Approx(0.262));
  CHECK(mmu::table_pixel_scale({"hsc-g", "hsc-y"}) == Approx(0.168));
  CHECK(mmu::table_pixel_scale({"f150w"}) == 0);           // per mosaic: only the file knows
  CHECK(mmu::table_pixel_scale({"des-g", "hsc-g"}) == 0);  // disagree
  CHECK(mmu::table_pixel_scale({"r", "g", "b"}) == 0);
  CHECK(mmu::survey_band_names("hsc", 5) == std::vector<std::string>{"hsc-g", "hsc-r", "hsc-i", "hsc-z", "hsc-y"});
  CHECK(mmu::survey_band_names("hsc", 4).empty());
  CHECK(mmu::survey_band_names("mystery", 4).empty());
}

TEST_CASE("image features take the batch's space bands in their order", "[bands]") {
  mmu::ImageFeatureOptions opt;
  mmu::ImageBatch b;
  b.count = 1;
  b.bands = 3;
  b.height = b.width = 96;
  b.pixel_scale = 0.262;
  for (int k = 0; k < 3; ++k) b.pixels.insert(b.pixels.end(), 96 * 96, 0.01f * (k + 1));
  b.good.assign(b.pixels.size(), 1);
  b.space_bands = {2, 0};
  std::vector<float> f(mmu::image_feature_dim(opt, 2));
  REQUIRE(mmu::image_features(b, opt, f.data()) == -1);
  // Band 2 (0.03 -> asinh 3) first, band 0 (0.01 -> asinh 1) second: every ring's
  // mean (mode 0) of the first band over the second's is asinh(3) / asinh(1).
  const int64_t per_band = opt.rings * (opt.modes + 1);
  const double ratio = std::asinh(3.0) / std::asinh(1.0);
  for (int64_t ring : {int64_t{0}, opt.rings - 1}) {
    REQUIRE(f[per_band + ring] > 0);
    CHECK(f[ring] / f[per_band + ring] == Approx(ratio).epsilon(1e-5));
  }
}
