// Positional cross-match of two sky catalogs. Exact: every pair within the
// radius is found, wherever it lies (cell borders, the ra=0/360 seam, poles),
// because candidates come from declination zones, not from partitions.
// Thread-safe; parallel inside (OpenMP over left points); deterministic.
// Positions whose ra or dec is not finite, or |dec| > 90, are never matched;
// ra is taken modulo 360.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mmu/column.h"

namespace mmu {

struct MatchPair {
  int64_t left;
  int64_t right;
  double sep_arcsec;

  // Leaves the fields unset: a match allocates millions of pairs and fills
  // them from several threads, so a vector of them is never zeroed first.
  MatchPair() noexcept {}
  MatchPair(int64_t left_index, int64_t right_index, double sep) noexcept
      : left(left_index), right(right_index), sep_arcsec(sep) {}
};

// Nearest-mode answers as the match leaves them, read in left order block by
// block (pairs_of) without a vector of all pairs: a writer that formats each
// block (the CSV) then reads them once, not twice (measured: building the
// vector of pairs took 8 ms of the nearest command's wall time on 2 cores).
class NearestMatches {
 public:
  NearestMatches();
  ~NearestMatches();
  NearestMatches(NearestMatches&&) noexcept;
  NearestMatches& operator=(NearestMatches&&) noexcept;

  int64_t left_count() const;  // left points matched (with an answer or not)
  int64_t pair_count() const;  // left points with a nearest right point
  // The pairs of left points [first_left, last_left) in left order, written
  // to out (room for last_left - first_left); returns the end of those written.
  // Thread-safe.
  MatchPair* pairs_of(int64_t first_left, int64_t last_left, MatchPair* out) const;

 private:
  friend class CrossMatchIndex;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// All-pairs answers as the match leaves them: each left point's pairs, sorted,
// where the thread that found them put them. Read in (left, sep, right) order
// a range at a time (pairs), without a vector of all pairs: that vector is 24
// bytes a pair of fresh memory (80 MB for 3.3 M pairs), and in this VM fresh
// pages cost more than the copy into them (measured: the in-process all-pairs
// match took 0.19-0.23 s in most runs and up to 0.45 s in runs where the
// kernel cleared pages slowly).
class AllPairMatches {
 public:
  AllPairMatches();
  ~AllPairMatches();
  AllPairMatches(AllPairMatches&&) noexcept;
  AllPairMatches& operator=(AllPairMatches&&) noexcept;

  int64_t left_count() const;  // left points matched (with pairs or not)
  int64_t pair_count() const;
  // Pairs [first, last) of the sorted order, written to out (room for
  // last - first); returns out + (last - first). Throws InvalidArgument when
  // the range is not within [0, pair_count()]. Thread-safe.
  MatchPair* pairs(int64_t first, int64_t last, MatchPair* out) const;

 private:
  friend class CrossMatchIndex;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The right side of a cross-match, indexed once: it can be built while the
// left side is still being read, and matched against several left sides.
// ra/dec in degrees. Throws InvalidArgument for a radius <= 0 or > 10 deg, ra
// and dec of different lengths, or 2^32 - 1 positions or more on one side.
class CrossMatchIndex {
 public:
  CrossMatchIndex(ColumnView<double> ra, ColumnView<double> dec, double radius_deg);
  ~CrossMatchIndex();
  CrossMatchIndex(CrossMatchIndex&&) noexcept;
  CrossMatchIndex& operator=(CrossMatchIndex&&) noexcept;

  // With all_pairs=false, each left point gets at most one pair: its nearest
  // right point with separation <= radius (ties: lowest right index). With
  // all_pairs=true, every pair within the radius. Sorted by (left, sep, right).
  // same_object, when not empty, has one entry per left point: the right
  // index of the same object (-1: none), never paired with it; so a catalog
  // matched against itself finds each object's *other* neighbours. Throws
  // InvalidArgument when its length is not the left side's.
  std::vector<MatchPair> match(ColumnView<double> left_ra, ColumnView<double> left_dec, bool all_pairs,
                               const std::vector<int64_t>& same_object = {}) const;
  // match(left_ra, left_dec, false, same_object), its pairs read through NearestMatches.
  NearestMatches match_nearest(ColumnView<double> left_ra, ColumnView<double> left_dec,
                               const std::vector<int64_t>& same_object = {}) const;
  // match(left_ra, left_dec, true, same_object), its pairs read through AllPairMatches.
  AllPairMatches match_all(ColumnView<double> left_ra, ColumnView<double> left_dec,
                           const std::vector<int64_t>& same_object = {}) const;

 private:
  // match's work: the answers go to *nearest, or with all_pairs to *all.
  void run(ColumnView<double> left_ra, ColumnView<double> left_dec, bool all_pairs,
           const std::vector<int64_t>& same_object, NearestMatches* nearest, AllPairMatches* all) const;

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// CrossMatchIndex(right_ra, right_dec, radius_deg).match(left_ra, left_dec, all_pairs).
std::vector<MatchPair> cross_match(ColumnView<double> left_ra, ColumnView<double> left_dec, ColumnView<double> right_ra,
                                   ColumnView<double> right_dec, double radius_deg, bool all_pairs);


}  // namespace mmu
