#include "mmu/crossmatch.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include "mmu/error.h"
#include "xmatch/sky_zones.h"

namespace mmu {

using xmatch::Index;
using xmatch::kDeg;
using xmatch::SkyPoint;
using xmatch::ZoneIndex;
using xmatch::Zones;

namespace {

// A match found for one left point: its right index and separation.
struct Hit {
  int64_t right;
  double sep_arcsec;
};

// Bounds on the haversine h = sin^2(ddec/2) + cos dec1 cos dec2 sin^2(dra/2)
// without its sines, from x - x^3/6 <= sin x <= x (0 <= x <= pi/2): a
// prefilter that needs no trigonometry per pair.
struct HaversineBounds {
  double lower, upper;
};

HaversineBounds haversine_bounds(double ra1, double dec1, double cos_dec1, const SkyPoint& b) {
  double dra = std::fabs(b.ra - ra1);
  dra = std::min(dra, 360.0 - dra);  // across the ra = 0/360 seam
  const double x = std::fabs(b.dec - dec1) * (kDeg / 2.0), y = dra * (kDeg / 2.0);
  constexpr double kSixth = 1.0 / 6.0;  // rounded, but the bound has room
  const double x_low = std::max(0.0, x - x * x * x * kSixth), y_low = std::max(0.0, y - y * y * y * kSixth);
  const double cc = cos_dec1 * b.cos_dec;
  return {x_low * x_low + cc * y_low * y_low, x * x + cc * y * y};
}

// Largest |delta ra| of any point within radius of a point at |dec| <= abs_dec
// (degrees); 180 (everything) when the circle reaches a pole.
double ra_half_width(double abs_dec, double radius) {
  if (abs_dec + radius >= 89.999999) return 180.0;
  const double s = std::sin(radius * kDeg) / std::cos(abs_dec * kDeg);
  if (s >= 1.0) return 180.0;
  return std::asin(s) / kDeg * (1.0 + 1e-9) + 1e-12;  // widened: never lose a boundary pair to rounding
}

// angular_separation_deg (sky.h) given both cos(dec): the same operations in
// the same order, so bit-identical, with half the trigonometry per pair.
double separation_deg(double ra1, double dec1, double cos_dec1, const SkyPoint& b) {
  const double s_dec = std::sin((b.dec - dec1) * kDeg / 2.0);
  const double s_ra = std::sin((b.ra - ra1) * kDeg / 2.0);
  const double h = s_dec * s_dec + cos_dec1 * b.cos_dec * s_ra * s_ra;
  return 2.0 * std::asin(std::sqrt(std::min(1.0, h))) / kDeg;
}

// sin x for the small half-angles of a cross-match: the Taylor series to x^7
// is exact to far below half an ulp for |x| < 1e-2, so this is the correctly
// rounded sine but for values within ~1e-20 of a rounding midpoint, at a tenth
// of std::sin's cost; larger x go to std::sin.
inline double sin_small(double x) {
  if (std::fabs(x) >= 1e-2) return std::sin(x);
  const double x2 = x * x;
  return x + x * x2 * (-1.0 / 6.0 + x2 * (1.0 / 120.0 - x2 * (1.0 / 5040.0)));
}

// asin y likewise, y in [0, 1e-3): the series to y^7 (next term 35/1152 y^9).
inline double asin_small(double y) {
  if (y >= 1e-3) return std::asin(y);
  const double y2 = y * y;
  return y + y * y2 * (1.0 / 6.0 + y2 * (3.0 / 40.0 + y2 * (15.0 / 336.0)));
}

// separation_deg with the small-angle sine and arcsine: equal to it but for
// the last bit in rare cases, so it decides nothing within a few ulps of the radius.
double separation_fast_deg(double ra1, double dec1, double cos_dec1, const SkyPoint& b) {
  const double s_dec = sin_small((b.dec - dec1) * kDeg / 2.0);
  const double s_ra = sin_small((b.ra - ra1) * kDeg / 2.0);
  const double h = s_dec * s_dec + cos_dec1 * b.cos_dec * s_ra * s_ra;
  return 2.0 * asin_small(std::sqrt(std::min(1.0, h))) / kDeg;
}

bool closer(const Hit& a, const Hit& b) {
  return a.sep_arcsec != b.sep_arcsec ? a.sep_arcsec < b.sep_arcsec : a.right < b.right;
}

// Sorts one left point's pairs by (separation, right) into out; separations
// lie in [0, radius].
void sort_by_separation(Hit* begin, Hit* end, Hit* out, double radius_arcsec, SortScratch<Hit>* scratch) {
  slice_sort(begin, end, out, 0.0, radius_arcsec, [](const Hit& h) { return h.sep_arcsec; }, closer, scratch);
}

// Where one thread keeps the pairs of all-pairs mode: blocks that never move,
// each mapped in one call when it is opened, filled in order; a point's pairs
// are contiguous. (A growing vector would copy and fault in its contents again
// at each doubling: dense fields give tens of pairs per point.)
class HitArena {
 public:
  // Room for n hits, valid until the arena is destroyed.
  Hit* allocate(int64_t n) {
    if (used_ + n > size_) {
      size_ = std::max(kBlock, n);
      blocks_.emplace_back(size_);
      populate(blocks_.back().data(), static_cast<size_t>(size_) * sizeof(Hit));
      used_ = 0;
    }
    Hit* at = blocks_.back().data() + used_;
    used_ += n;
    return at;
  }

 private:
  static constexpr int64_t kBlock = 1 << 17;  // 2 MB: one huge page
  std::vector<Buffer<Hit>> blocks_;
  int64_t used_ = 0, size_ = 0;
};

// Nearest mode keeps a left point's answer in the point's own slot, whose
// position is not read again once it is matched: no array of answers by left
// index (16 bytes a point of fresh memory). The right index goes to .index
// (kNone: no match), the separation in arcsec to .ra.
constexpr Index kNone = std::numeric_limits<Index>::max();  // check_size keeps indices below it
void keep_nearest(SkyPoint* slot, const Hit& h) {
  slot->index = h.right < 0 ? kNone : static_cast<Index>(h.right);
  slot->ra = h.sep_arcsec;
}

void check_size(ColumnView<double> ra, ColumnView<double> dec, const char* side) {
  if (ra.size() != dec.size())
    throw InvalidArgument(std::string("cross-match: the ") + side + " catalog has " + std::to_string(ra.size()) +
                          " ra but " + std::to_string(dec.size()) + " dec values");
  if (ra.size() >= std::numeric_limits<Index>::max())
    throw InvalidArgument(std::string("cross-match: the ") + side + " catalog has " + std::to_string(ra.size()) +
                          " positions; at most " + std::to_string(std::numeric_limits<Index>::max() - 1) +
                          " can be matched at once");
}

double checked_radius(double radius) {
  if (!(radius > 0.0) || radius > 10.0)
    throw InvalidArgument("--radius must be > 0 and <= 10 deg, got " + std::to_string(radius * 3600.0) + " arcsec");
  return radius;
}

}  // namespace

struct CrossMatchIndex::Impl {
  double radius;
  Zones zones;
  ZoneIndex right;

  // Candidates lie within reach in dec (see match), so zones a little taller
  // than the radius put them in the point's zone and its two neighbours; zones
  // this thin keep the candidate boxes near the circle's area. The cap bounds
  // the offsets array for tiny radii.
  Impl(ColumnView<double> ra, ColumnView<double> dec, double radius_deg)
      : radius((check_size(ra, dec, "right"), checked_radius(radius_deg))),
        zones(std::min<int64_t>(static_cast<int64_t>(180.0 / (radius * (1.0 + 1e-6))), 1 << 21)),
        right(ra, dec, zones) {}
};

CrossMatchIndex::CrossMatchIndex(ColumnView<double> ra, ColumnView<double> dec, double radius_deg)
    : impl_(std::make_unique<Impl>(ra, dec, radius_deg)) {}
CrossMatchIndex::~CrossMatchIndex() = default;
CrossMatchIndex::CrossMatchIndex(CrossMatchIndex&&) noexcept = default;
CrossMatchIndex& CrossMatchIndex::operator=(CrossMatchIndex&&) noexcept = default;

namespace {

// The ra half-width of a left zone's windows, asked zone after zone. Away from
// the poles it changes slowly, so one value serves a band of zones (taken at
// the band's largest |dec|: a window wider by < 0.1% at 1 arcsec), saving
// three libm calls per zone; near the poles, one per zone.
class HalfWidths {
 public:
  HalfWidths(const Zones& zones, double radius) : zones_(zones), radius_(radius) {}

  double of(int64_t z) {
    if (z / kBand != band_) {
      band_ = z / kBand;
      const double top = std::max(zones_.max_abs_dec(band_ * kBand),
                                  zones_.max_abs_dec(std::min(zones_.count - 1, band_ * kBand + kBand - 1)));
      per_zone_ = top > 89.0;
      half_ = ra_half_width(top, radius_);
    }
    return per_zone_ ? ra_half_width(zones_.max_abs_dec(z), radius_) : half_;
  }

  // Whether the last zone asked for is in a band taken zone by zone.
  bool per_zone() const { return per_zone_; }

  static constexpr int64_t kBand = 64;

 private:
  const Zones& zones_;
  double radius_;
  int64_t band_ = -1;
  bool per_zone_ = true;
  double half_ = 180.0;
};

// Windows of this many points or more take PointMatcher::scan's batched path.
constexpr int64_t kBatch = 8;

// One thread's matching of left points, one at a time: start(), scan() the
// ra windows of the point's right zones, then nearest() or all_pairs().
class PointMatcher {
 public:
  PointMatcher(const ZoneIndex& right, const Zones& zones, double radius, bool all_pairs)
      : right_(right),
        zones_(zones),
        radius_(radius),
        reach_(radius * (1.0 + 1e-9) + 1e-12),
        // The lower bound of h against h at the radius, widened by 1e-6
        // where computed values err by ~1e-15. The haversine separation then
        // decides, so the result is exactly "separation <= radius".
        h_radius_(std::pow(std::sin(radius * kDeg / 2.0), 2) * (1.0 + 1e-6)),
        all_pairs_(all_pairs) {}

  double reach() const { return reach_; }

  // q's own object on the right side (-1: none) is skipped.
  void start(const SkyPoint& q, int64_t same_object) {
    same_ = same_object;
    ra_ = q.ra;
    dec_ = q.dec;
    cos_dec_ = -1.0;  // computed at the first point in reach
    keep_ = h_radius_;
    near_.clear();
    hits_.clear();
  }

  // In nearest mode, whether right zone rz (a neighbour of the point's zone
  // z) is too far in dec alone to hold anything nearer than the best so far.
  bool too_far(int64_t rz, int64_t z) const {
    if (all_pairs_ || keep_ >= h_radius_) return false;  // nothing in reach yet: z0, z1 decide
    // Less 1e-12 deg for rounding in zone edges and zone assignment.
    const double gap = rz < z ? dec_ - zones_.bottom(z) : zones_.bottom(rz) - dec_;
    const double x = (gap - 1e-12) * (kDeg / 2.0), x_low = x - x * x * x * (1.0 / 6.0);
    return x_low > 0.0 && x_low * x_low > keep_;
  }

  // The right points from it on with ra <= hi (sorted by ra, up to end).
  void scan(const SkyPoint* it, const SkyPoint* end, double hi) {
    const SkyPoint* stop = it;
    while (stop != end && stop->ra <= hi) ++stop;
    if (stop - it < kBatch) {
      for (; it != stop; ++it) {
        if (std::fabs(it->dec - dec_) > reach_) continue;  // the cheapest test first
        if (same_ >= 0 && right_index(it) == same_) continue;
        consider(it, haversine_bounds(ra_, dec_, cos_dec(), *it));
      }
      return;
    }
    // A long window (dense fields, near the poles): the bounds of all its
    // points first, in a loop without branches, then the few in reach.
    const int64_t m = stop - it;
    bounds_.resize(m);
    const double c = cos_dec();
    for (int64_t j = 0; j < m; ++j) bounds_[j] = haversine_bounds(ra_, dec_, c, it[j]);
    if (same_ >= 0) {  // out of reach, or its zero upper bound would hide every other candidate
      constexpr double kInf = std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < m; ++j)
        if (right_index(it + j) == same_) bounds_[j] = {kInf, kInf};
    }
    if (!all_pairs_) {
      double least = keep_;
      for (int64_t j = 0; j < m; ++j) least = std::min(least, bounds_[j].upper * (1.0 + 1e-9));
      keep_ = least;
    }
    for (int64_t j = 0; j < m; ++j) consider(it + j, bounds_[j]);
  }

  // Nearest mode: the nearest right point within the radius (right < 0: none).
  // It can only be a candidate whose lower bound does not exceed the smallest
  // upper bound (widened for rounding), which keep_ now is. Usually one is
  // left; of several, the separations are taken as angular_separation_deg
  // gives them, so near ties break as there. The lowest right index wins a tie.
  Hit nearest() const {
    Hit best{-1, 0.0};
    const SkyPoint* best_point = nullptr;
    int hits = 0;
    for (const Candidate& k : near_) {
      if (k.h.lower > keep_) continue;
      double sep = separation(*k.p);
      if (sep > radius_) continue;
      if (++hits == 2)  // the first hit's separation, now as the reference gives it
        best.sep_arcsec = separation_deg(ra_, dec_, cos_dec_, *best_point) * 3600.0;
      if (hits >= 2) sep = separation_deg(ra_, dec_, cos_dec_, *k.p);
      const Hit hit{right_index(k.p), sep * 3600.0};
      if (best.right < 0 || closer(hit, best)) {
        best = hit;
        best_point = k.p;
      }
    }
    return best;
  }

  // All-pairs mode: the point's pairs, sorted, in room taken from arena.
  struct Pairs {
    const Hit* first;
    int64_t count;
  };
  Pairs all_pairs(HitArena* arena) {
    const int64_t n = static_cast<int64_t>(hits_.size());
    if (n == 0) return {nullptr, 0};
    Hit* out = arena->allocate(n);
    sort_by_separation(hits_.data(), hits_.data() + n, out, radius_ * 3600.0, &scratch_);
    return {out, n};
  }

 private:
  struct Candidate {
    HaversineBounds h;
    const SkyPoint* p;
  };

  double cos_dec() {
    if (cos_dec_ < 0.0) cos_dec_ = std::cos(dec_ * kDeg);
    return cos_dec_;
  }

  // All pairs: a pair if within the radius. Nearest: a candidate if it may
  // beat the best upper bound so far.
  void consider(const SkyPoint* p, const HaversineBounds& h) {
    if (all_pairs_) {
      if (h.lower > h_radius_) return;
      const double sep = separation(*p);
      if (sep <= radius_) hits_.push_back({right_index(p), sep * 3600.0});
    } else if (h.lower <= keep_) {
      near_.push_back({h, p});
      keep_ = std::min(keep_, h.upper * (1.0 + 1e-9));
    }
  }

  // The separation that decides: within a few ulps of the radius the
  // reference formula's, elsewhere the small-angle series'.
  double separation(const SkyPoint& p) const {
    const double sep = separation_fast_deg(ra_, dec_, cos_dec_, p);
    return std::fabs(sep - radius_) <= radius_ * 1e-13 ? separation_deg(ra_, dec_, cos_dec_, p) : sep;
  }

  int64_t right_index(const SkyPoint* p) const { return right_.index[p - right_.points.data()]; }

  const ZoneIndex& right_;
  const Zones& zones_;
  const double radius_, reach_, h_radius_;
  const bool all_pairs_;
  // The point being matched.
  int64_t same_ = -1;
  double ra_ = 0.0, dec_ = 0.0, cos_dec_ = -1.0, keep_ = 0.0;
  std::vector<Hit> hits_;  // all-pairs mode: its pairs, unsorted
  // Scratch, kept between points.
  std::vector<Candidate> near_;
  std::vector<HaversineBounds> bounds_;
  SortScratch<Hit> scratch_;
};

// A run of left points in zone order, [first, last), matched by one thread.
struct WorkItem {
  int64_t first, last;
};

// Work items of about equal estimated cost, so that no thread is left with a
// long one at the end: a point costs 1 plus the right points in its windows,
// which near a pole or in a dense field is thousands of times more than in a
// sparse one; a costly zone is split across items. Costs are estimated per
// band of zones (HalfWidths' bands; zone by zone near the poles), which keeps
// the plan at a fraction of a millisecond.
std::vector<WorkItem> plan_work(const Buffer<Index>& left_start, const ZoneIndex& right, const Zones& zones,
                                double radius) {
  constexpr int64_t kItemsPerThread = 64;
  HalfWidths half_width(zones, radius);
  struct Segment {
    int64_t first_zone, last_zone;
    double per_point;  // estimated cost of each of its left points
  };
  std::vector<Segment> segments;
  double total = 0.0;
  for (int64_t z = 0; z < zones.count;) {
    const double half = half_width.of(z);
    const int64_t band_end = (z / HalfWidths::kBand + 1) * HalfWidths::kBand;
    const int64_t end = half_width.per_zone() ? z + 1 : std::min(zones.count, band_end);
    const double left = static_cast<double>(left_start[end] - left_start[z]);
    if (left > 0.0) {
      const int64_t r0 = std::max<int64_t>(z - 1, 0), r1 = std::min(end + 1, zones.count);
      const double right_per_zone =
          static_cast<double>(right.start[r1] - right.start[r0]) / static_cast<double>(r1 - r0);
      segments.push_back({z, end, 1.0 + std::min(1.0, half / 180.0) * 3.0 * right_per_zone});
      total += left * segments.back().per_point;
    }
    z = end;
  }
  const double budget = total / static_cast<double>(omp_get_max_threads() * kItemsPerThread) + 1.0;
  std::vector<WorkItem> items;
  int64_t first = 0;
  double cost = 0.0;
  for (const Segment& g : segments) {
    const int64_t last = left_start[g.last_zone];
    for (int64_t k = left_start[g.first_zone]; k < last;) {
      const int64_t fits = static_cast<int64_t>(std::ceil((budget - cost) / g.per_point));
      const int64_t take = std::clamp<int64_t>(fits, 1, last - k);
      k += take;
      cost += static_cast<double>(take) * g.per_point;
      if (cost >= budget) {
        items.push_back({first, k});
        first = k;
        cost = 0.0;
      }
    }
  }
  if (first < left_start[zones.count]) items.push_back({first, left_start[zones.count]});
  return items;
}

}  // namespace

// Nearest mode's answers: left point i's is in points[slot_of[i]] (keep_nearest);
// block_start[b] pairs come before block b of 2^block_shift left indices.
struct NearestMatches::Impl {
  Buffer<SkyPoint> points;
  Buffer<Index> slot_of;
  int64_t left_count = 0;
  int block_shift = 0;
  std::vector<int64_t> block_start{0};
};

NearestMatches::NearestMatches() : impl_(std::make_unique<Impl>()) {}
NearestMatches::~NearestMatches() = default;
NearestMatches::NearestMatches(NearestMatches&&) noexcept = default;
NearestMatches& NearestMatches::operator=(NearestMatches&&) noexcept = default;
int64_t NearestMatches::left_count() const { return impl_->left_count; }
int64_t NearestMatches::pair_count() const { return impl_->block_start.back(); }

// The slots are read at random, fetched ahead.
MatchPair* NearestMatches::pairs_of(int64_t first_left, int64_t last_left, MatchPair* out) const {
  const SkyPoint* const points = impl_->points.data();
  const Index* const slot_of = impl_->slot_of.data();
  constexpr int64_t kAhead = 16;
  for (int64_t i = first_left; i < last_left; ++i) {
    if (i + kAhead < last_left) __builtin_prefetch(&points[slot_of[i + kAhead]]);
    const SkyPoint& p = points[slot_of[i]];
    if (p.index != kNone) *out++ = {i, static_cast<int64_t>(p.index), p.ra};
  }
  return out;
}

// All-pairs answers: left point i's pairs are where[i], in the arenas;
// group_start[g] pairs come before left point g << kGroupShift, so a range of
// pairs is found by a binary search and a walk of at most 2^kGroupShift points.
namespace {
constexpr int kGroupShift = 8;
}  // namespace

struct AllPairMatches::Impl {
  std::vector<HitArena> arenas;
  Buffer<PointMatcher::Pairs> where;
  std::vector<int64_t> group_start{0};
  int64_t left_count = 0;
};

AllPairMatches::AllPairMatches() : impl_(std::make_unique<Impl>()) {}
AllPairMatches::~AllPairMatches() = default;
AllPairMatches::AllPairMatches(AllPairMatches&&) noexcept = default;
AllPairMatches& AllPairMatches::operator=(AllPairMatches&&) noexcept = default;
int64_t AllPairMatches::left_count() const { return impl_->left_count; }
int64_t AllPairMatches::pair_count() const { return impl_->group_start.back(); }

MatchPair* AllPairMatches::pairs(int64_t first, int64_t last, MatchPair* out) const {
  const Impl& m = *impl_;
  if (first < 0 || last < first || last > pair_count())
    throw InvalidArgument("cross-match: pairs " + std::to_string(first) + " to " + std::to_string(last) + " of " +
                          std::to_string(pair_count()));
  if (first == last) return out;
  const int64_t g = std::upper_bound(m.group_start.begin(), m.group_start.end(), first) - m.group_start.begin() - 1;
  const PointMatcher::Pairs* const where = m.where.data();
  int64_t i = g << kGroupShift, k = m.group_start[static_cast<size_t>(g)];
  while (k + where[i].count <= first) k += where[i++].count;
  int64_t skip = first - k, left = last - first;
  for (; left > 0; ++i) {
    // Pairs lie in zone order: fetched ahead, or each point waits on memory.
    constexpr int64_t kAhead = 8;
    if (i + kAhead < m.left_count) __builtin_prefetch(where[i + kAhead].first);
    const int64_t take = std::min(where[i].count - skip, left);
    for (const Hit *h = where[i].first + skip, *e = h + take; h != e; ++h) *out++ = {i, h->right, h->sep_arcsec};
    left -= take;
    skip = 0;
  }
  return out;
}

NearestMatches CrossMatchIndex::match_nearest(ColumnView<double> left_ra, ColumnView<double> left_dec,
                                              const std::vector<int64_t>& same_object) const {
  NearestMatches nearest;
  run(left_ra, left_dec, false, same_object, &nearest, nullptr);
  return nearest;
}

AllPairMatches CrossMatchIndex::match_all(ColumnView<double> left_ra, ColumnView<double> left_dec,
                                          const std::vector<int64_t>& same_object) const {
  AllPairMatches all;
  run(left_ra, left_dec, true, same_object, nullptr, &all);
  return all;
}

std::vector<MatchPair> CrossMatchIndex::match(ColumnView<double> left_ra, ColumnView<double> left_dec, bool all_pairs,
                                              const std::vector<int64_t>& same_object) const {
  std::vector<MatchPair> pairs;
  if (all_pairs) {
    const AllPairMatches all = match_all(left_ra, left_dec, same_object);
    resize_fresh(&pairs, static_cast<size_t>(all.pair_count()));  // unset, filled below
    const int64_t n = all.pair_count();
#pragma omp parallel
    {
      const int64_t t = omp_get_thread_num(), threads = omp_get_num_threads();
      const int64_t k0 = n * t / threads, k1 = n * (t + 1) / threads;
      populate(pairs.data() + k0, static_cast<size_t>(k1 - k0) * sizeof(MatchPair));
      all.pairs(k0, k1, pairs.data() + k0);
    }
    return pairs;
  }
  const NearestMatches nearest = match_nearest(left_ra, left_dec, same_object);
  const NearestMatches::Impl& m = *nearest.impl_;
  // Back to left order, block by block of left indices, each block's count
  // taken during the match.
  resize_fresh(&pairs, static_cast<size_t>(m.block_start.back()));  // unset, filled below
  const int64_t blocks = static_cast<int64_t>(m.block_start.size()) - 1;
#pragma omp parallel
  {
    // Each thread a run of blocks, its pairs mapped in one call (a block's
    // alone are too few pages for populate, and 4 KB faults cost ~12 us).
    const int64_t t = omp_get_thread_num(), threads = omp_get_num_threads();
    const int64_t b0 = blocks * t / threads, b1 = blocks * (t + 1) / threads;
    MatchPair* to = pairs.data() + m.block_start[b0];
    populate(to, static_cast<size_t>(m.block_start[b1] - m.block_start[b0]) * sizeof(MatchPair));
    nearest.pairs_of(b0 << m.block_shift, std::min(m.left_count, b1 << m.block_shift), to);
  }
  return pairs;
}

void CrossMatchIndex::run(ColumnView<double> left_ra, ColumnView<double> left_dec, bool all_pairs,
                          const std::vector<int64_t>& same_object, NearestMatches* nearest, AllPairMatches* all) const {
  const Zones& zones = impl_->zones;
  const ZoneIndex& right = impl_->right;
  // The left points are taken zone by zone, each zone in ra order. A left
  // zone then meets each of its three right zones in one sweep: as ra grows,
  // each window's start only moves forward, and every read is sequential.
  check_size(left_ra, left_dec, "left");
  const int64_t nl = static_cast<int64_t>(left_ra.size());
  if (!same_object.empty() && same_object.size() != left_ra.size())
    throw InvalidArgument("cross-match: " + std::to_string(same_object.size()) + " same-object entries for " +
                          std::to_string(nl) + " left positions");
  Buffer<SkyPoint> left_points;
  Buffer<Index> slot_of;  // nearest mode: left point i is left_points[slot_of[i]]
  const Buffer<Index> left_start =
      group_by_zone(left_ra, left_dec, zones, &left_points, all_pairs ? nullptr : &slot_of);
  const std::vector<WorkItem> work = plan_work(left_start, right, zones, impl_->radius);

  // Results. Nearest: in each left point's slot once it is matched
  // (keep_nearest); points without a valid position are never matched, so
  // theirs are set here. All pairs: left point i's pairs are where[i], in the
  // arenas of the threads.
  if (!all_pairs)
    for (int64_t k = left_start[zones.count]; k < nl; ++k) keep_nearest(&left_points[k], Hit{-1, 0.0});
  // Nearest: matches per block of 2^block_shift left indices (at most 256 blocks).
  int block_shift = 0;
  while (((nl - 1) >> block_shift) >= 256) ++block_shift;
  std::vector<int64_t> found_in_block(all_pairs || nl == 0 ? 0 : static_cast<size_t>(((nl - 1) >> block_shift) + 1), 0);
  Buffer<PointMatcher::Pairs> where(all_pairs ? nl : 0);
  std::vector<HitArena> arenas(all_pairs ? omp_get_max_threads() : 0);
  const int64_t groups = all_pairs ? ((nl + (int64_t{1} << kGroupShift) - 1) >> kGroupShift) : 0;
  std::vector<int64_t> group_start(static_cast<size_t>(groups) + 1, 0);
#pragma omp parallel
  {
    if (all_pairs) {
      // All "none" first, in sequence: then only the points with a match are
      // written at random (each such write a cache miss).
      populate_share(where.data(), nl);
#pragma omp for schedule(static)
      for (int64_t i = 0; i < nl; ++i) where[i] = {nullptr, 0};
    }

    std::vector<int64_t> found(found_in_block.size(), 0);  // this thread's matches per block
    PointMatcher matcher(right, zones, impl_->radius, all_pairs);
    HalfWidths half_width(zones, impl_->radius);
#pragma omp for schedule(dynamic, 1)
    for (size_t w = 0; w < work.size(); ++w) {
      const int64_t first = work[w].first, last = work[w].last;
      const int64_t z_first = std::upper_bound(left_start.data(), left_start.data() + zones.count, first) -
                              left_start.data() - 1;
      for (int64_t z = z_first; z < zones.count && left_start[z] < last; ++z) {
        if (left_start[z] == left_start[z + 1]) continue;  // most zones of a sparse catalog are empty
        SkyPoint* const zone_begin = left_points.data() + std::max<int64_t>(left_start[z], first);
        SkyPoint* const zone_end = left_points.data() + std::min<int64_t>(left_start[z + 1], last);
        const double half = half_width.of(z);
        // cursor[rz - z + 1]: the first point of right zone rz not left of the
        // window (found by binary search where an item starts inside a zone).
        const SkyPoint* cursor[3];
        for (int64_t d = 0; d < 3; ++d) {
          const int64_t rz = std::clamp<int64_t>(z - 1 + d, 0, zones.count - 1);
          const SkyPoint* begin = right.points.data() + right.start[rz];
          const SkyPoint* end = right.points.data() + right.start[rz + 1];
          const double lo = zone_begin->ra - half;
          cursor[d] = zone_begin == left_points.data() + left_start[z] || half >= 180.0 || lo < 0.0
                          ? begin
                          : std::partition_point(begin, end, [lo](const SkyPoint& p) { return p.ra < lo; });
        }
        for (SkyPoint* q = zone_begin; q != zone_end; ++q) {
          matcher.start(*q, same_object.empty() ? -1 : same_object[q->index]);
          // Zones are taller than reach, so these are z - 1 .. z + 1 at most;
          // the point's own zone first, which may make the others too_far.
          const int64_t z0 = std::max(z - 1, zones.of(q->dec - matcher.reach()));
          const int64_t z1 = std::min(z + 1, zones.of(q->dec + matcher.reach()));
          for (int64_t rz : {z, z - 1, z + 1}) {
            if (rz < z0 || rz > z1 || matcher.too_far(rz, z)) continue;
            const SkyPoint* begin = right.points.data() + right.start[rz];
            const SkyPoint* end = right.points.data() + right.start[rz + 1];
            if (half >= 180.0) {
              matcher.scan(begin, end, 1e300);
              continue;
            }
            // Windows are disjoint (half < 180), so no pair is found twice.
            const double lo = q->ra - half, hi = q->ra + half;
            const SkyPoint*& it = cursor[rz - z + 1];
            while (it != end && it->ra < lo) ++it;
            matcher.scan(it, end, hi);
            if (lo < 0.0)  // window wraps below 0: rare, a binary search
              matcher.scan(std::partition_point(begin, end, [lo](const SkyPoint& p) { return p.ra < lo + 360.0; }),
                           end, 1e300);
            if (hi >= 360.0) matcher.scan(begin, end, hi - 360.0);  // window wraps above 360
          }
          if (all_pairs) {
            const PointMatcher::Pairs pairs = matcher.all_pairs(&arenas[omp_get_thread_num()]);
            if (pairs.count > 0) where[q->index] = pairs;
          } else {
            const Hit nearest = matcher.nearest();
            if (nearest.right >= 0) ++found[q->index >> block_shift];
            keep_nearest(q, nearest);  // q's position is not read again
          }
        }
      }
    }
    for (size_t b = 0; b < found.size(); ++b)
      if (found[b] > 0) {
#pragma omp atomic
        found_in_block[b] += found[b];
      }
  }
  if (!all_pairs) {
    NearestMatches::Impl& m = *nearest->impl_;
    m.points = std::move(left_points);
    m.slot_of = std::move(slot_of);
    m.left_count = nl;
    m.block_shift = block_shift;
    m.block_start.assign(found_in_block.size() + 1, 0);
    for (size_t b = 0; b < found_in_block.size(); ++b) m.block_start[b + 1] = m.block_start[b] + found_in_block[b];
    return;
  }

  // Pairs per group of left points, the groups shared out among the threads.
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < groups; ++g) {
    int64_t count = 0;
    for (int64_t i = g << kGroupShift, e = std::min(nl, (g + 1) << kGroupShift); i < e; ++i) count += where[i].count;
    group_start[static_cast<size_t>(g) + 1] = count;
  }
  for (int64_t g = 0; g < groups; ++g) group_start[static_cast<size_t>(g) + 1] += group_start[static_cast<size_t>(g)];
  AllPairMatches::Impl& m = *all->impl_;
  m.arenas = std::move(arenas);
  m.where = std::move(where);
  m.group_start = std::move(group_start);
  m.left_count = nl;
}

std::vector<MatchPair> cross_match(ColumnView<double> left_ra, ColumnView<double> left_dec, ColumnView<double> right_ra,
                                   ColumnView<double> right_dec, double radius_deg, bool all_pairs) {
  return CrossMatchIndex(right_ra, right_dec, radius_deg).match(left_ra, left_dec, all_pairs);
}

}  // namespace mmu
