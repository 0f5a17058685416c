// Sorting the short or evenly spread runs a cross-match sorts (a zone's
// points by ra, a point's pairs by separation) without a comparison sort's
// mispredicted branches.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace mmu {

template <typename T, typename Less>
void insertion_sort(T* begin, T* end, Less less) {
  for (T* p = begin + 1; p < end; ++p) {
    const T x = *p;
    T* at = p;
    for (; at > begin && less(x, at[-1]); --at) *at = at[-1];
    *at = x;
  }
}

template <typename T>
struct SortScratch {
  std::vector<T> items;
  std::vector<int32_t> count;
};

// Sorts [begin, end) by less, which orders by key(x) in [lo, hi] first, into
// out[0, n) (out may be begin). What the match sorts (a zone's points by ra, a
// point's pairs by separation) is a few items, or many spread over a known
// range, where a comparison sort mispredicts half its branches. So a counting
// sort into 2n equal slices of [lo, hi] comes first, and an insertion sort
// then finds the items nearly in order (predictable branches) and settles
// those that share a slice. Crowded slices (many equal keys) go to std::sort,
// and so do runs too long to want a scratch copy.
template <typename T, typename Key, typename Less>
void slice_sort(T* begin, T* end, T* out, double lo, double hi, Key key, Less less, SortScratch<T>* scratch) {
  constexpr int64_t kSmall = 4, kCrowded = 128, kLarge = 1 << 16;
  const int64_t n = end - begin;
  auto sort_in_out = [&](auto sort) {
    if (out != begin) std::copy(begin, end, out);
    sort(out, out + n, less);
  };
  if (n <= kSmall) return sort_in_out(insertion_sort<T, Less>);
  if (!(hi > lo) || n > kLarge) return sort_in_out(std::sort<T*, Less>);
  const int64_t slices = 2 * n;
  const double scale = static_cast<double>(slices) / (hi - lo);
  auto slice = [&](const T& x) { return std::min<int64_t>(slices - 1, static_cast<int64_t>((key(x) - lo) * scale)); };
  std::vector<int32_t>& count = scratch->count;
  count.assign(slices + 1, 0);
  for (const T* p = begin; p < end; ++p) ++count[slice(*p) + 1];
  if (*std::max_element(count.begin(), count.end()) > kCrowded) return sort_in_out(std::sort<T*, Less>);
  for (int64_t s = 0; s < slices; ++s) count[s + 1] += count[s];
  std::vector<T>& items = scratch->items;
  items.resize(n);
  for (const T* p = begin; p < end; ++p) items[count[slice(*p)]++] = *p;
  for (int64_t k = 0; k < n; ++k) {  // insertion sort from items to out
    const T x = items[k];
    T* at = out + k;
    for (; at > out && less(x, at[-1]); --at) *at = at[-1];
    *at = x;
  }
}

}  // namespace mmu
