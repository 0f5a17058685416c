#include "mmu/sky.h"

#include <healpix_base.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "mmu/error.h"

namespace mmu {

int64_t healpix_nest(int order, double ra_deg, double dec_deg) {
  // One base per order, built once: constructing it per call showed in profiles.
  static const std::vector<T_Healpix_Base<int64>> bases = [] {
    std::vector<T_Healpix_Base<int64>> b;
    for (int o = 0; o <= kFineOrder; ++o) b.emplace_back(o, NEST);
    return b;
  }();
  const T_Healpix_Base<int64>& base = bases.at(static_cast<size_t>(order));
  const double theta = (90.0 - dec_deg) * M_PI / 180.0;
  const double phi = ra_deg * M_PI / 180.0;
  return base.ang2pix(pointing(theta, phi));
}

std::vector<std::pair<int64_t, int64_t>> fine_key_ranges_in_cone(double ra_deg, double dec_deg, double radius_deg) {
  // Pixel size at order o is about 58.6 / 2^o degrees; one order finer than the
  // radius keeps both the range count and the false positives small.
  int order = static_cast<int>(std::floor(std::log2(58.6 / std::max(radius_deg, 1e-9)))) + 1;
  order = std::clamp(order, 0, kFineOrder);
  const T_Healpix_Base<int64> base(order, NEST);
  const double theta = (90.0 - dec_deg) * M_PI / 180.0, phi = ra_deg * M_PI / 180.0;
  rangeset<int64> pix;
  base.query_disc_inclusive(pointing(theta, phi), radius_deg * M_PI / 180.0, pix, 4);
  const int shift = 2 * (kFineOrder - order);
  std::vector<std::pair<int64_t, int64_t>> out;
  const auto& r = pix.data();
  for (size_t i = 0; i + 1 < r.size(); i += 2) out.emplace_back(r[i] << shift, r[i + 1] << shift);
  return out;
}

double angular_separation_deg(double ra1, double dec1, double ra2, double dec2) {
  const double d2r = M_PI / 180.0;
  const double s_dec = std::sin((dec2 - dec1) * d2r / 2.0);
  const double s_ra = std::sin((ra2 - ra1) * d2r / 2.0);
  const double h = s_dec * s_dec + std::cos(dec1 * d2r) * std::cos(dec2 * d2r) * s_ra * s_ra;
  return 2.0 * std::asin(std::sqrt(std::min(1.0, h))) / d2r;
}

double parse_angle_deg(const std::string& text, const std::string& flag) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    throw InvalidArgument(flag + " must be an angle like 1arcsec, 2arcmin or 0.001deg, got '" + text + "'");
  }
  std::string unit = text.substr(used);
  unit.erase(std::remove(unit.begin(), unit.end(), ' '), unit.end());
  double scale;
  if (unit.empty() || unit == "arcsec" || unit == "\"") scale = 1.0 / 3600.0;
  else if (unit == "arcmin" || unit == "'") scale = 1.0 / 60.0;
  else if (unit == "deg" || unit == "d") scale = 1.0;
  else throw InvalidArgument(flag + ": unknown angle unit '" + unit + "' in '" + text + "' (use arcsec, arcmin or deg)");
  if (!std::isfinite(v) || v <= 0.0) throw InvalidArgument(flag + " must be positive, got '" + text + "'");
  return v * scale;
}

bool valid_sky_position(double ra_deg, double dec_deg) {
  return std::isfinite(ra_deg) && std::isfinite(dec_deg) && ra_deg >= 0.0 && ra_deg <= 360.0 &&
         dec_deg >= -90.0 && dec_deg <= 90.0;
}

std::pair<double, double> parse_sky_position(const std::string& text, const std::string& flag) {
  const size_t comma = text.find(',');
  double ra = NAN, dec = NAN;
  try {
    size_t used_ra = 0, used_dec = 0;
    if (comma != std::string::npos) {
      ra = std::stod(text.substr(0, comma), &used_ra);
      dec = std::stod(text.substr(comma + 1), &used_dec);
      if (used_ra != comma || used_dec != text.size() - comma - 1) ra = NAN;
    }
  } catch (const std::exception&) {
    ra = NAN;
  }
  if (!valid_sky_position(ra, dec))
    throw InvalidArgument(flag + " must be RA,DEC in degrees (ra 0..360, dec -90..90), got '" + text + "'");
  return {ra, dec};
}

SkyCone parse_cone(const std::string& text, const std::string& flag) {
  const size_t last = text.rfind(',');
  if (last == std::string::npos || text.find(',') == last)
    throw InvalidArgument(flag + " must be RA,DEC,RADIUS (e.g. 150.1,2.2,30arcmin), got '" + text + "'");
  const auto [ra, dec] = parse_sky_position(text.substr(0, last), flag);
  return {ra, dec, parse_angle_deg(text.substr(last + 1), flag)};
}

}  // namespace mmu
