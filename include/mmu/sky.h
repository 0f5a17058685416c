// Sky geometry: HEALPix cells as MMU partitions them and angular distances.
// All angles in degrees unless a name says otherwise. Thread-safe (pure functions).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mmu/types.h"  // SkyCone

namespace mmu {

// MMU partitions by HEALPix nside 16 (order 4), NESTED, lon = ra, lat = dec.
inline constexpr int kCellOrder = 4;
inline constexpr int64_t kNumCells = 12 * 16 * 16;
// Rows inside a partition are ordered by the order-29 NESTED key, so any coarser
// cell (a cone, a region) is a contiguous key range: key >> 2*(29-order).
inline constexpr int kFineOrder = 29;

// NESTED pixel index of (ra, dec) at the given HEALPix order.
int64_t healpix_nest(int order, double ra_deg, double dec_deg);
inline int64_t healpix_cell(double ra_deg, double dec_deg) {
  return healpix_nest(kCellOrder, ra_deg, dec_deg);
}
inline int64_t healpix_fine(double ra_deg, double dec_deg) {
  return healpix_nest(kFineOrder, ra_deg, dec_deg);
}

// Half-open ranges [first, last) of order-29 NESTED keys that together cover
// the cone of radius_deg around (ra, dec): a superset (pixels that only touch
// the cone are included), so a caller checks each candidate's separation.
// Few ranges: the covering is computed at the order whose pixels are about the
// cone's size.
std::vector<std::pair<int64_t, int64_t>> fine_key_ranges_in_cone(double ra_deg, double dec_deg, double radius_deg);

// Great-circle separation (haversine form, accurate at small angles), degrees.
double angular_separation_deg(double ra1, double dec1, double ra2, double dec2);

// Parses "1arcsec", "0.5 arcsec", "2arcmin", "0.001deg" (a bare number is arcsec)
// into degrees; throws InvalidArgument naming the flag.
double parse_angle_deg(const std::string& text, const std::string& flag);

// True when ra is finite in [0, 360] and dec finite in [-90, 90].
bool valid_sky_position(double ra_deg, double dec_deg);

// "RA,DEC" in degrees; throws InvalidArgument naming `flag`.
std::pair<double, double> parse_sky_position(const std::string& text, const std::string& flag);
// "RA,DEC,RADIUS", the radius as parse_angle_deg reads it (30arcsec, 2arcmin, 0.5deg).
SkyCone parse_cone(const std::string& text, const std::string& flag);

}  // namespace mmu
