#include "mmu/object_view.h"

#include <zlib.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <string>
#include <vector>

#include "mmu/error.h"

namespace {

uint32_t be32(const std::string& s, size_t at) {
  return static_cast<uint32_t>(static_cast<unsigned char>(s[at])) << 24 |
         static_cast<uint32_t>(static_cast<unsigned char>(s[at + 1])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(s[at + 2])) << 8 | static_cast<unsigned char>(s[at + 3]);
}

// One-band-per-pixel test image: bands x 2 x 2.
mmu::ImageBatch batch_of(const std::vector<std::vector<float>>& bands) {
  mmu::ImageBatch b;
  b.count = 1;
  b.bands = static_cast<int64_t>(bands.size());
  b.height = b.width = 2;
  for (const auto& band : bands) b.pixels.insert(b.pixels.end(), band.begin(), band.end());
  b.good.assign(b.pixels.size(), 1);
  return b;
}

}  // namespace

TEST_CASE("colour bands follow the stated mapping") {
  const auto grz = mmu::choose_colour_bands({"des-g", "des-r", "des-i", "des-z"}, 4);
  CHECK((grz.blue == 0 && grz.green == 1 && grz.red == 3));
  CHECK((grz.blue_scale == 6.0f && grz.green_scale == 3.4f && grz.red_scale == 2.2f));
  const auto hsc = mmu::choose_colour_bands({"hsc-g", "hsc-r", "hsc-i", "hsc-z", "hsc-y"}, 5);
  CHECK((hsc.blue == 0 && hsc.green == 1 && hsc.red == 3));  // g,r,z is preferred when present
  const auto gri = mmu::choose_colour_bands({"hsc-g", "hsc-r", "hsc-i"}, 3);
  CHECK((gri.blue == 0 && gri.green == 1 && gri.red == 2 && gri.red_scale == 3.0f));
  const auto unnamed = mmu::choose_colour_bands({}, 5);
  CHECK((unnamed.blue == 0 && unnamed.green == 1 && unnamed.red == 2 && unnamed.blue_scale == 1.0f));
  CHECK(mmu::choose_colour_bands({"a", "b"}, 2).mean_green);
  const auto grey = mmu::choose_colour_bands({"x"}, 1);
  CHECK((grey.blue == 0 && grey.green == 0 && grey.red == 0));
  CHECK_THROWS_AS(mmu::choose_colour_bands({}, 0), mmu::Error);
}

TEST_CASE("Lupton colour: astropy's formula, masked and non-finite pixels magenta") {
  // Unnamed bands: B = band 0, G = band 1, R = band 2, scales 1.
  auto b = batch_of({{0.1f, 0.0f, -1.0f, 100.0f}, {0.2f, 0.0f, -1.0f, 100.0f}, {0.3f, 0.0f, -1.0f, NAN}});
  b.good[1] = 0;  // pixel 1 of band 0 masked
  const auto rgb = mmu::lupton_rgb(b, 0, mmu::choose_colour_bands({}, 3));
  REQUIRE(rgb.rgb.size() == 12);
  // Pixel 0: I = 0.2, factor = asinh(I Q / stretch) * slope / I.
  const double slope = 0.1 * 255 / std::asinh(0.1 * mmu::kLuptonQ);
  const double fac = std::asinh(0.2 * mmu::kLuptonQ / mmu::kLuptonStretch) * slope / 0.2;
  CHECK(std::abs(rgb.rgb[0] - static_cast<int>(0.3 * fac)) <= 1);  // red = band 2
  CHECK(std::abs(rgb.rgb[1] - static_cast<int>(0.2 * fac)) <= 1);
  CHECK(std::abs(rgb.rgb[2] - static_cast<int>(0.1 * fac)) <= 1);
  CHECK((rgb.rgb[3] == 255 && rgb.rgb[4] == 0 && rgb.rgb[5] == 255));  // masked
  CHECK((rgb.rgb[6] == 0 && rgb.rgb[7] == 0 && rgb.rgb[8] == 0));      // I <= 0: black
  CHECK((rgb.rgb[9] == 255 && rgb.rgb[10] == 0 && rgb.rgb[11] == 255));  // NaN: magenta
}

TEST_CASE("PNG: signature, header and rows decompress to the raster") {
  mmu::RgbImage img;
  img.width = 3;
  img.height = 2;
  for (int i = 0; i < 18; ++i) img.rgb.push_back(static_cast<uint8_t>(i * 13));
  const std::string png = mmu::encode_png(img);
  REQUIRE(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  CHECK(png.substr(12, 4) == "IHDR");
  CHECK((be32(png, 16) == 3 && be32(png, 20) == 2));
  CHECK(be32(png, 29) == crc32(0, reinterpret_cast<const Bytef*>(png.data() + 12), 17));
  const size_t idat = 8 + 25;
  REQUIRE(png.substr(idat + 4, 4) == "IDAT");
  const uint32_t n = be32(png, idat);
  std::vector<unsigned char> raw(2 * (1 + 9));
  uLongf raw_size = raw.size();
  REQUIRE(uncompress(raw.data(), &raw_size, reinterpret_cast<const Bytef*>(png.data() + idat + 8), n) == Z_OK);
  REQUIRE(raw_size == raw.size());
  for (int y = 0; y < 2; ++y) {
    CHECK(raw[y * 10] == 0);
    for (int i = 0; i < 9; ++i) CHECK(raw[y * 10 + 1 + i] == img.rgb[y * 9 + i]);
  }
  CHECK(png.substr(png.size() - 8, 4) == "IEND");
}

TEST_CASE("nearest-neighbour resampling takes the centre sample") {
  mmu::RgbImage img;
  img.width = img.height = 4;
  for (int i = 0; i < 16; ++i) img.rgb.insert(img.rgb.end(), {static_cast<uint8_t>(i), 0, 0});
  const auto small = mmu::resample_square(img, 2);
  // Output pixel (x, y) takes input floor((x + 0.5) * 4 / 2) = 1 or 3.
  CHECK(small.rgb[0] == 1 * 4 + 1);
  CHECK(small.rgb[3] == 1 * 4 + 3);
  CHECK(small.rgb[6] == 3 * 4 + 1);
  CHECK(small.rgb[9] == 3 * 4 + 3);
}

TEST_CASE("a resampled cutout equals colouring the whole image, then resampling it") {
  // 3 objects of 4 bands, 37 x 23 (not square, so rows and columns resample apart), with masked,
  // non-finite, negative and bright pixels; the middle object drawn.
  mmu::ImageBatch b;
  b.count = 3;
  b.bands = 4;
  b.height = 23;
  b.width = 37;
  uint32_t state = 12345;
  auto next = [&state] { return (state = state * 1664525u + 1013904223u) >> 8; };
  for (int64_t i = 0; i < b.count * b.bands * b.height * b.width; ++i) {
    b.pixels.push_back(static_cast<float>(static_cast<int>(next() % 2000) - 300) / 100.0f);
    b.good.push_back(next() % 17 != 0);
  }
  b.pixels[static_cast<size_t>(b.bands * b.height * b.width + 40)] = NAN;
  const auto bands = mmu::choose_colour_bands({"des-g", "des-r", "des-i", "des-z"}, b.bands);
  const auto whole = mmu::lupton_rgb(b, 1, bands);
  for (const int64_t size : {16, 20, 23, 30, 37, 64, 100}) {
    INFO("size " << size);
    const auto expected = mmu::resample_square(whole, size);
    const auto got = mmu::lupton_cutout(b, 1, bands, size);
    CHECK(got.width == size);
    CHECK(got.height == size);
    CHECK(got.rgb == expected.rgb);
  }
  CHECK(mmu::lupton_cutout(b, 1, bands, 0).rgb == whole.rgb);
}
