// Positional cross-match of two sky catalogs. Exact: every pair within the
// radius is found, wherever it lies (cell borders, the ra=0/360 seam, poles),
// because candidates come from declination zones, not from partitions.
// Thread-safe; parallel inside (OpenMP over left points); deterministic.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmu {

struct MatchPair {
  int64_t left = -1;
  int64_t right = -1;
  double sep_arcsec = 0;
};

// ra/dec in degrees. With all_pairs=false, each left point gets at most one
// pair: its nearest right point with separation <= radius (ties: lowest right
// index). With all_pairs=true, every pair within the radius. Sorted by
// (left, sep, right). Throws InvalidArgument for a radius <= 0 or > 10 deg.
std::vector<MatchPair> cross_match(const std::vector<double>& left_ra, const std::vector<double>& left_dec,
                                   const std::vector<double>& right_ra, const std::vector<double>& right_dec,
                                   double radius_deg, bool all_pairs);

// Parses "1arcsec", "0.5 arcsec", "2arcmin", "0.001deg" (a bare number is arcsec)
// into degrees; throws InvalidArgument naming the flag.
double parse_angle_deg(const std::string& text, const std::string& flag);

}  // namespace mmu
