#include <omp.h>

#include <algorithm>
#include <limits>
#include <string>
#include <unordered_map>

#include "mmu/sky_source.h"

namespace mmu {

namespace {

constexpr uint32_t kNotShared = std::numeric_limits<uint32_t>::max();

// A hash table of right objects keyed by (survey, integer): a million string
// keys in an unordered_map took ~2 s of CPU (a file matched with a file of the
// same folder shares its survey name), this ~30 ms. Open addressing, a power of
// two of slots at most half full.
class IntegerKeys {
 public:
  explicit IntegerKeys(size_t n) {
    size_t slots = 2;
    while (slots < 2 * n) slots *= 2;
    mask_ = slots - 1;
    slots_.assign(slots, Slot{0, 0, kEmpty});
  }
  // Repeated keys name no object: marked, never found.
  void add(uint64_t number, uint32_t survey, int64_t index) {
    for (size_t at = hash(number, survey);; at = (at + 1) & mask_) {
      Slot& s = slots_[at];
      if (s.index == kEmpty) {
        s = {number, survey, index};
        return;
      }
      if (s.number == number && s.survey == survey) {
        s.index = kRepeated;
        return;
      }
    }
  }
  // The index added with this key; -1 when none, or the key was repeated.
  int64_t find(uint64_t number, uint32_t survey) const {
    for (size_t at = hash(number, survey);; at = (at + 1) & mask_) {
      const Slot& s = slots_[at];
      if (s.index == kEmpty) return -1;
      if (s.number == number && s.survey == survey) return s.index < 0 ? -1 : s.index;
    }
  }

 private:
  static constexpr int64_t kEmpty = -1, kRepeated = -2;
  struct Slot {
    uint64_t number;
    uint32_t survey;
    int64_t index;
  };
  size_t hash(uint64_t number, uint32_t survey) const {
    uint64_t x = number ^ (uint64_t{survey} << 48) ^ 0x9e3779b97f4a7c15ull;  // splitmix64's finaliser
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return static_cast<size_t>(x ^ (x >> 31)) & mask_;
  }
  size_t mask_ = 0;
  std::vector<Slot> slots_;
};

}  // namespace

std::vector<int64_t> same_objects(const SkySource& l, const SkySource& r) {
  // right_survey[k]: the right side's number of left survey k (kNotShared: none).
  std::vector<uint32_t> right_survey(l.survey_names.size(), kNotShared);
  bool shared_survey = false;
  for (size_t k = 0; k < l.survey_names.size(); ++k) {
    const auto it = std::find(r.survey_names.begin(), r.survey_names.end(), l.survey_names[k]);
    if (it != r.survey_names.end()) right_survey[k] = static_cast<uint32_t>(it - r.survey_names.begin());
    shared_survey = shared_survey || it != r.survey_names.end();
  }
  // Different surveys share no object: the usual match costs nothing more.
  if (!shared_survey) return {};
  const bool by_row = !l.store.empty() && l.store == r.store;
  const int64_t nl = static_cast<int64_t>(l.ids.size()), nr = static_cast<int64_t>(r.ids.size());
  // Made only once some object may be on both sides: 8 bytes of fresh memory
  // per left object, whose page faults cost more than the range check.
  std::vector<int64_t> same;
  int64_t shared = 0;
  const bool integers = l.ids.kind() == r.ids.kind() && l.ids.kind() != ObjectIds::Kind::kText;
  if (by_row || integers) {
    // Key of an object: its store row, or its (right survey number, id).
    auto left_key = [&](int64_t i, uint32_t* survey) {
      *survey = by_row ? 0 : right_survey[l.survey_of[i]];
      return by_row ? static_cast<uint64_t>(l.rows[i]) : l.ids.number(i);
    };
    auto right_key = [&](int64_t j, uint32_t* survey) {
      *survey = by_row ? 0 : r.survey_of[j];
      return by_row ? static_cast<uint64_t>(r.rows[j]) : r.ids.number(j);
    };
    // Disjoint ranges of keys (a survey's ids in two files, numbered apart)
    // share none: found in one pass, before any table is built.
    uint64_t lo_l = std::numeric_limits<uint64_t>::max(), hi_l = 0, lo_r = lo_l, hi_r = 0;
#pragma omp parallel for reduction(min : lo_l) reduction(max : hi_l)
    for (int64_t i = 0; i < nl; ++i) {
      uint32_t survey;
      const uint64_t key = left_key(i, &survey);
      if (survey == kNotShared) continue;
      lo_l = std::min(lo_l, key);
      hi_l = std::max(hi_l, key);
    }
#pragma omp parallel for reduction(min : lo_r) reduction(max : hi_r)
    for (int64_t j = 0; j < nr; ++j) {
      uint32_t survey;
      const uint64_t key = right_key(j, &survey);
      lo_r = std::min(lo_r, key);
      hi_r = std::max(hi_r, key);
    }
    if (lo_l > hi_l || lo_r > hi_r || hi_l < lo_r || hi_r < lo_l) return {};
    same.assign(static_cast<size_t>(nl), -1);
    IntegerKeys right_of(static_cast<size_t>(nr));
    for (int64_t j = 0; j < nr; ++j) {
      uint32_t survey;
      const uint64_t key = right_key(j, &survey);
      right_of.add(key, survey, j);
    }
#pragma omp parallel for reduction(+ : shared)
    for (int64_t i = 0; i < nl; ++i) {
      uint32_t survey;
      const uint64_t key = left_key(i, &survey);
      if (survey == kNotShared) continue;
      same[i] = right_of.find(key, survey);
      shared += same[i] >= 0;
    }
  } else {
    same.assign(static_cast<size_t>(nl), -1);
    std::unordered_map<std::string, int64_t> right_of;
    right_of.reserve(r.ids.size());
    auto key = [](const SkySource& s, size_t i) { return s.survey(i) + '\n' + s.ids.text(i); };
    for (size_t j = 0; j < r.ids.size(); ++j) {
      const auto [it, added] = right_of.emplace(key(r, j), static_cast<int64_t>(j));
      if (!added) it->second = -1;
    }
    for (size_t i = 0; i < l.ids.size(); ++i) {
      const auto it = right_of.find(key(l, i));
      if (it != right_of.end() && it->second >= 0) {
        same[i] = it->second;
        ++shared;
      }
    }
  }
  if (shared == 0) same.clear();
  return same;
}

}  // namespace mmu
