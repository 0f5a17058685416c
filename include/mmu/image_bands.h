// The MMU image surveys' band names and pixel scales (one table, from the MMU
// builders), and the rule that turns a file's bands into the baseline space
// its images go to. A band name never maps onto a photometric band by a
// letter: only a name in the table has a known filter.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmu {

// One row of the table.
struct KnownBand {
  const char* name;     // as image_band holds it, lower-cased ("des-g", "hsc-y", "f150w")
  const char* filter;   // the photometric filter it is ("g", "y", "f150w")
  double pixel_scale;   // arcsec/pixel the survey's builder cuts at; 0 = per file (JWST: from the WCS)
  const char* survey;   // the MMU dataset(s) writing it
};

// The table entry of a band name (case-insensitive), or nullptr.
const KnownBand* find_known_band(const std::string& name);

// A file's bands as the image baseline uses them.
struct BandPlan {
  // The baseline space: "image" for the g, r, i, z filters (legacysurvey and
  // hsc share it; other bands of the file are left out), "image-rgb" for an
  // R, G, B colour set, else "image-" + the bands' filters (table names, or
  // the file's own for a band not in the table) in the table's order, joined
  // without a separator when every one is a single letter ("image-grz"), with
  // "-" otherwise ("image-f150w", "image-f277w-f444w").
  std::string space;
  std::vector<int64_t> used;  // indices of the file's bands the space takes, in the space's order
  std::string error;          // why the bands cannot be named ("" when they can)
};

// names: the file's band names, lower-cased and trimmed, one per band.
BandPlan plan_bands(const std::vector<std::string>& names);

// The band names a survey's MMU builder writes in this order, for a file
// without image_band ({} when the survey's order is not fixed by its builder,
// or when `bands` differs from it).
std::vector<std::string> survey_band_names(const std::string& survey, int64_t bands);

// The table's pixel scale shared by the named bands; 0 when a band is not in
// the table, has no fixed scale, or the bands disagree.
double table_pixel_scale(const std::vector<std::string>& names);

// What the image baseline assumes when neither the file nor the table gives a
// pixel scale (legacysurvey's; always with a warning naming the file).
inline constexpr double kAssumedPixelScale = 0.262;

}  // namespace mmu
