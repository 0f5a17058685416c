#include "mmu/image_bands.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

namespace mmu {

namespace {

// In the table's order, which is each survey's order by wavelength: a space's
// bands follow it, so files listing the same bands in another order agree.
// Sources (MultimodalUniverse/MultimodalUniverse):
//  des-*: scripts/legacysurvey/build_parent_sample.py (lower-cased _filters,
//         ARCSEC_PER_PIXEL = 0.262) and scripts/ssl_legacysurvey/build_parent_sample.py (g, r, z only);
//  hsc-*: scripts/hsc/build_parent_sample.py (0.168"/px, HSC-G..HSC-Y);
//  f*w:   scripts/jwst/build_parent_sample.py (per band image_scale from each mosaic's WCS, so no fixed scale).
const KnownBand kTable[] = {
    {"des-g", "g", 0.262, "legacysurvey, ssl_legacysurvey"},
    {"des-r", "r", 0.262, "legacysurvey, ssl_legacysurvey"},
    {"des-i", "i", 0.262, "legacysurvey"},
    {"des-z", "z", 0.262, "legacysurvey, ssl_legacysurvey"},
    {"hsc-g", "g", 0.168, "hsc"},
    {"hsc-r", "r", 0.168, "hsc"},
    {"hsc-i", "i", 0.168, "hsc"},
    {"hsc-z", "z", 0.168, "hsc"},
    {"hsc-y", "y", 0.168, "hsc"},
    {"f090w", "f090w", 0, "jwst"},
    {"f115w", "f115w", 0, "jwst"},
    {"f150w", "f150w", 0, "jwst"},
    {"f200w", "f200w", 0, "jwst"},
    {"f277w", "f277w", 0, "jwst"},
    {"f356w", "f356w", 0, "jwst"},
    {"f444w", "f444w", 0, "jwst"},
};
constexpr size_t kTableSize = sizeof(kTable) / sizeof(kTable[0]);

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A colour (RGB) image, e.g. Galaxy10's: one of these sets, in this order.
const std::vector<std::vector<std::string>> kColourSets = {{"r", "g", "b"}, {"red", "green", "blue"}};

bool safe_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

}  // namespace

const KnownBand* find_known_band(const std::string& name) {
  const std::string n = lower(name);
  for (const KnownBand& k : kTable)
    if (n == k.name) return &k;
  return nullptr;
}

BandPlan plan_bands(const std::vector<std::string>& raw) {
  BandPlan p;
  std::vector<std::string> names;
  for (const auto& r : raw) names.push_back(lower(r));
  if (names.empty()) {
    p.error = "no band names";
    return p;
  }
  for (const auto& n : names)
    if (!safe_name(n)) {
      p.error = "band name '" + n + "' is not a name (letters, digits, '-' and '_' only)";
      return p;
    }
  if (std::set<std::string>(names.begin(), names.end()).size() != names.size()) {
    p.error = "a band name appears twice";
    return p;
  }
  for (const auto& colours : kColourSets) {
    if (std::set<std::string>(names.begin(), names.end()) != std::set<std::string>(colours.begin(), colours.end()))
      continue;
    p.space = "image-rgb";
    for (const auto& c : colours)
      p.used.push_back(std::find(names.begin(), names.end(), c) - names.begin());
    return p;
  }
  // g, r, i, z through the table: the shared space of legacysurvey and hsc.
  std::vector<int64_t> griz;
  for (const char* f : {"g", "r", "i", "z"})
    for (size_t k = 0; k < names.size(); ++k) {
      const KnownBand* kb = find_known_band(names[k]);
      if (kb && std::string(kb->filter) == f) {
        griz.push_back(static_cast<int64_t>(k));
        break;
      }
    }
  if (griz.size() == 4) {
    p.space = "image";
    p.used = griz;
    return p;
  }
  // Any other set: its own space, known bands in the table's order, then the rest as the file has them.
  std::vector<std::pair<size_t, int64_t>> order;  // (table position or kTableSize + file position, band)
  for (size_t k = 0; k < names.size(); ++k) {
    const KnownBand* kb = find_known_band(names[k]);
    order.push_back({kb ? static_cast<size_t>(kb - kTable) : kTableSize + k, static_cast<int64_t>(k)});
  }
  std::sort(order.begin(), order.end());
  std::vector<std::string> filters;
  bool single_letters = true;
  for (const auto& [pos, band] : order) {
    const KnownBand* kb = find_known_band(names[band]);
    filters.push_back(kb ? kb->filter : names[band]);
    single_letters = single_letters && filters.back().size() == 1;
    p.used.push_back(band);
  }
  // Two bands with one filter (des-g and hsc-g) would give a name that reads as one band.
  if (std::set<std::string>(filters.begin(), filters.end()).size() != filters.size()) {
    p.error = "two bands are the same filter";
    p.used.clear();
    return p;
  }
  p.space = "image-";
  for (size_t k = 0; k < filters.size(); ++k) p.space += (k && !single_letters ? "-" : "") + filters[k];
  return p;
}

std::vector<std::string> survey_band_names(const std::string& survey, int64_t bands) {
  // The order each builder writes image_array's band axis in (see kTable's sources);
  // gz10's `images` are RGB (scripts/gz10/build_parent_sample.py).
  static const std::vector<std::pair<std::string, std::vector<std::string>>> kSurveys = {
      {"legacysurvey", {"des-g", "des-r", "des-i", "des-z"}},
      {"hsc", {"hsc-g", "hsc-r", "hsc-i", "hsc-z", "hsc-y"}},
      {"ssl_legacysurvey", {"des-g", "des-r", "des-z"}},
      {"gz10", {"r", "g", "b"}},
  };
  for (const auto& [name, list] : kSurveys)
    if (name == survey && static_cast<int64_t>(list.size()) == bands) return list;
  return {};
}

double table_pixel_scale(const std::vector<std::string>& names) {
  double scale = 0;
  for (const auto& n : names) {
    const KnownBand* kb = find_known_band(n);
    if (!kb || !(kb->pixel_scale > 0)) return 0;
    if (scale > 0 && std::abs(kb->pixel_scale - scale) > 1e-9) return 0;
    scale = kb->pixel_scale;
  }
  return scale;
}

}  // namespace mmu
