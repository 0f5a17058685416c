// Colour composites of multi-band cutouts: which band is which colour, and
// the Lupton et al. (2004) asinh stretch as astropy's make_lupton_rgb computes it.
#include <algorithm>
#include <cctype>
#include <cmath>

#include "mmu/error.h"
#include "mmu/object_view.h"

namespace mmu {

namespace {

// "des-g" -> 'g'; "" when the name has no single-letter band.
char band_letter(const std::string& name) {
  const size_t dash = name.find_last_of("-_");
  const std::string tail = dash == std::string::npos ? name : name.substr(dash + 1);
  return tail.size() == 1 ? static_cast<char>(std::tolower(static_cast<unsigned char>(tail[0]))) : '\0';
}

float legacy_scale(char letter) {
  switch (letter) {
    case 'g': return 6.0f;
    case 'r': return 3.4f;
    case 'i': return 3.0f;
    case 'z': return 2.2f;
    default: return 1.0f;
  }
}

}  // namespace

ColourBands choose_colour_bands(const std::vector<std::string>& band_names, int64_t bands) {
  if (bands <= 0) throw InvalidArgument("an image needs at least one band to be drawn");
  std::vector<char> letters(static_cast<size_t>(bands), '\0');
  for (size_t b = 0; b < letters.size() && b < band_names.size(); ++b) letters[b] = band_letter(band_names[b]);
  auto find = [&](char c) {
    const auto it = std::find(letters.begin(), letters.end(), c);
    return it == letters.end() ? -1 : static_cast<int>(it - letters.begin());
  };
  ColourBands out;
  auto take = [&](int b, int g, int r, const std::string& how) {
    out.blue = b;
    out.green = g;
    out.red = r;
    out.blue_scale = legacy_scale(letters[b]);
    out.green_scale = legacy_scale(letters[g]);
    out.red_scale = legacy_scale(letters[r]);
    out.description = how;
  };
  const int g = find('g'), r = find('r'), i = find('i'), z = find('z');
  auto name = [&](int b) { return b < static_cast<int>(band_names.size()) ? band_names[b] : "band " + std::to_string(b); };
  if (g >= 0 && r >= 0 && z >= 0) {
    take(g, r, z, "g,r,z -> B,G,R");
  } else if (g >= 0 && r >= 0 && i >= 0) {
    take(g, r, i, "g,r,i -> B,G,R");
  } else if (bands >= 3) {
    take(0, 1, 2, name(0) + "," + name(1) + "," + name(2) + " -> B,G,R");
  } else if (bands == 2) {
    take(0, 0, 1, name(0) + "," + name(1) + " -> B,R (G their mean)");
    out.mean_green = true;
  } else {
    take(0, 0, 0, name(0) + " -> grey");
  }
  return out;
}

namespace {

// The Lupton colour of pixel p of one object's planes into px[3].
struct LuptonPixel {
  const float* base;
  const uint8_t* good;
  int64_t plane;
  ColourBands bands;
  // astropy: float32 images times Python/NumPy float scalars stay float32.
  float soften = static_cast<float>(static_cast<double>(kLuptonQ) / static_cast<double>(kLuptonStretch));
  float slope = static_cast<float>(0.1 * 255.0 / std::asinh(0.1 * static_cast<double>(kLuptonQ)));

  LuptonPixel(const ImageBatch& batch, int64_t index, const ColourBands& b)
      : base(batch.pixels.data() + index * batch.bands * batch.height * batch.width),
        good(batch.good.data() + index * batch.bands * batch.height * batch.width),
        plane(batch.height * batch.width),
        bands(b) {}

  void operator()(int64_t p, uint8_t* px) const {
    const float b = base[bands.blue * plane + p] * bands.blue_scale;
    const float r = base[bands.red * plane + p] * bands.red_scale;
    const float g = bands.mean_green ? (b + r) / 2.0f : base[bands.green * plane + p] * bands.green_scale;
    const bool masked = !good[bands.blue * plane + p] || !good[bands.red * plane + p] ||
                        (!bands.mean_green && !good[bands.green * plane + p]) || !std::isfinite(b) ||
                        !std::isfinite(g) || !std::isfinite(r);
    if (masked) {
      std::copy(kMaskedRgb, kMaskedRgb + 3, px);
      return;
    }
    const float intensity = (r + g + b) / 3.0f;
    const float fac = intensity <= 0 ? 0.0f : std::asinh(intensity * soften) * slope / intensity;
    float c[3] = {r * fac, g * fac, b * fac};
    for (float& v : c) v = std::max(v, 0.0f);
    const float top = std::max({c[0], c[1], c[2]});
    for (int k = 0; k < 3; ++k) {
      float v = top >= 255.0f ? c[k] * 255.0f / top : c[k];
      px[k] = static_cast<uint8_t>(std::min(v, 255.0f));
    }
  }
};

// The input row or column that output i of `size` takes (resample_square's rule).
int64_t source_of(int64_t i, int64_t in, int64_t size) {
  return std::min(in - 1, static_cast<int64_t>((i + 0.5) * in / size));
}

}  // namespace

RgbImage lupton_rgb(const ImageBatch& batch, int64_t index, const ColourBands& bands) {
  const LuptonPixel colour(batch, index, bands);
  RgbImage out;
  out.width = batch.width;
  out.height = batch.height;
  out.rgb.resize(static_cast<size_t>(colour.plane) * 3);
  for (int64_t p = 0; p < colour.plane; ++p) colour(p, &out.rgb[static_cast<size_t>(p) * 3]);
  return out;
}

RgbImage lupton_cutout(const ImageBatch& batch, int64_t index, const ColourBands& bands, int64_t size) {
  if (size == 0 || (size == batch.width && size == batch.height)) return lupton_rgb(batch, index, bands);
  // Enlarging: each input pixel is taken at least once, so colour them all first.
  if (size * size >= batch.width * batch.height) return resample_square(lupton_rgb(batch, index, bands), size);
  const LuptonPixel colour(batch, index, bands);
  RgbImage out;
  out.width = out.height = size;
  out.rgb.resize(static_cast<size_t>(size * size) * 3);
  for (int64_t y = 0; y < size; ++y) {
    const int64_t sy = source_of(y, batch.height, size);
    for (int64_t x = 0; x < size; ++x)
      colour(sy * batch.width + source_of(x, batch.width, size), &out.rgb[static_cast<size_t>(y * size + x) * 3]);
  }
  return out;
}

RgbImage resample_square(const RgbImage& in, int64_t size) {
  RgbImage out;
  out.width = out.height = size;
  out.rgb.resize(static_cast<size_t>(size * size) * 3);
  for (int64_t y = 0; y < size; ++y) {
    const int64_t sy = source_of(y, in.height, size);
    for (int64_t x = 0; x < size; ++x) {
      const int64_t sx = source_of(x, in.width, size);
      std::copy_n(&in.rgb[static_cast<size_t>(sy * in.width + sx) * 3], 3, &out.rgb[static_cast<size_t>(y * size + x) * 3]);
    }
  }
  return out;
}

}  // namespace mmu
