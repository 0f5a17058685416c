// mmu_cuda_check: the GPU search path (DeviceIndex::top_k -> plugin/torch_search.cpp)
// checked against a brute-force oracle, then timed against the device's own
// floors. Built and run by run.sh, without the rest of the project (see README.md).
//
//   mmu_cuda_check --json FILE [--quick] [--no-timing] [--timing-device cuda|torch-cpu]
//                  [--rows N] [--dim D] [--k K] [--batch Q] [--budget-s S]
//
// 1. correctness, on torch-cpu and (when this build and the machine have it) cuda:
//    seeded clustered unit vectors and adversarial near-ties (duplicated rows,
//    rows one ulp apart, an all-zero query that ties every row), fp32 and fp16
//    bases, with and without a subset, several block sizes (down to one row per
//    block, so ties straddle block boundaries). Each answer is compared with an
//    exact top-k computed here in double precision, ties to the lower row.
//    An answer passes when it has min(k, candidates) distinct candidate rows in
//    its own (score, row) order, each rank's true score is within 1e-6 of the
//    oracle's at that rank (the header's allowance for swaps), and each
//    returned score is within 1e-5 of the row's true score. Any other answer
//    fails the run (exit 1).
// 2. timing, on --timing-device (cuda by default, skipped without one):
//    --rows x --dim clustered, fp32 then fp16, k = --k: upload, one query
//    (median of 50), batches of --batch queries; torch-cpu on all cores for
//    scale (up to 5 single queries within 5 s, one batch; none once the run
//    is past --budget-s, 150 s); each figure over its floor (bytes scanned /
//    measured device copy rate) or ceiling (flops / measured fp32 matmul
//    rate, TF32 off).
//
// Exit: 0 all checks passed; 1 a check failed; 2 bad flags; 3 this is a CUDA
// build but LibTorch sees no CUDA device (torch-cpu results still reported).
#include <ATen/Context.h>
#include <omp.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench_stats.h"
#include "encode/model_plugin.h"
#include "mmu/device_search.h"
#include "mmu/error.h"

extern "C" mmu::DeviceIndex* mmu_create_torch_index(const mmu::VectorMatrix& base, const char* device,
                                                    int64_t block_bytes);

namespace mmu {

// Stands in for model_loader.cpp's dlopen: the search part of the plug-in is
// linked into this program, so DeviceIndex::open runs unchanged.
void* model_plugin_symbol(const char* name) {
  if (std::string(name) == "mmu_create_torch_index") return reinterpret_cast<void*>(&mmu_create_torch_index);
  throw NotFound(std::string("mmu_cuda_check links only the search plug-in, not '") + name + "'");
}

}  // namespace mmu

namespace {

using mmu::bench::Clock;
using mmu::bench::ms_since;
using Answers = std::vector<std::vector<mmu::Hit>>;

constexpr double kRankTolerance = 1e-6;   // mmu/device_search.h: rows within ~1e-6 may swap
constexpr double kScoreTolerance = 1e-5;  // fp32 sums vs the exact sum, unit-norm vectors

struct Args {
  std::string json;
  bool quick = false, timing = true;
  std::string timing_device = "cuda";
  int64_t rows = 1000000, dim = 512, k = 50, batch = 1000;
  double budget_s = 150;  // seconds from the start past which no torch-cpu timing starts
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "mmu_cuda_check: " << why << "\n"
            << "usage: mmu_cuda_check --json FILE [--quick] [--no-timing] [--timing-device cuda|torch-cpu]\n"
            << "                      [--rows N] [--dim D] [--k K] [--batch Q] [--budget-s S]\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(f + " needs a value");
      return argv[++i];
    };
    if (f == "--json") a.json = value();
    else if (f == "--quick") a.quick = true;
    else if (f == "--no-timing") a.timing = false;
    else if (f == "--timing-device") a.timing_device = value();
    else if (f == "--rows") a.rows = std::atoll(value().c_str());
    else if (f == "--dim") a.dim = std::atoll(value().c_str());
    else if (f == "--k") a.k = std::atoll(value().c_str());
    else if (f == "--batch") a.batch = std::atoll(value().c_str());
    else if (f == "--budget-s") a.budget_s = std::atof(value().c_str());
    else if (f == "-h" || f == "--help") usage("help");
    else usage("unknown flag '" + f + "'");
  }
  if (a.json.empty()) usage("--json is required");
  if (a.timing_device != "cuda" && a.timing_device != "torch-cpu") usage("--timing-device must be cuda or torch-cpu");
  if (a.rows < 1 || a.dim < 1 || a.k < 1 || a.batch < 1) usage("--rows, --dim, --k and --batch must be >= 1");
  return a;
}

// ---- seeded data, the same whatever the thread count ----

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

struct Rng {
  uint64_t s;
  Rng(uint64_t seed, uint64_t stream) : s(seed * 0x2545F4914F6CDD1Dull ^ (stream + 1) * 0x9E3779B97F4A7C15ull) {}
  uint64_t next() { return splitmix(s); }
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  double normal() { return std::sqrt(-2 * std::log(uniform())) * std::cos(6.283185307179586 * uniform()); }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

void normalize(float* v, int64_t d) {
  double s = 0;
  for (int64_t j = 0; j < d; ++j) s += static_cast<double>(v[j]) * v[j];
  const double inv = s > 0 ? 1 / std::sqrt(s) : 0;
  for (int64_t j = 0; j < d; ++j) v[j] = static_cast<float>(v[j] * inv);
}

// n x d unit vectors around `clusters` random unit centres.
std::vector<float> clustered(int64_t n, int64_t d, int64_t clusters, double spread, uint64_t seed) {
  std::vector<float> centres(static_cast<size_t>(clusters * d)), out(static_cast<size_t>(n * d));
  for (int64_t c = 0; c < clusters; ++c) {
    Rng r(seed, static_cast<uint64_t>(c));
    for (int64_t j = 0; j < d; ++j) centres[c * d + j] = static_cast<float>(r.normal());
    normalize(&centres[c * d], d);
  }
  const double sigma = spread / std::sqrt(static_cast<double>(d));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    Rng r(seed + 1, static_cast<uint64_t>(i));
    const float* c = &centres[r.below(clusters) * d];
    float* v = &out[i * d];
    for (int64_t j = 0; j < d; ++j) v[j] = static_cast<float>(c[j] + sigma * r.normal());
    normalize(v, d);
  }
  return out;
}

uint16_t to_half(float f) { return c10::Half(f).x; }
float from_half(uint16_t h) { return static_cast<float>(c10::Half(h, c10::Half::from_bits())); }

// A base as the store keeps it: fp32, or fp16 bits (VectorMatrix::type kF16).
struct Base {
  std::string shape;
  mmu::VectorType type = mmu::VectorType::kF32;
  int64_t n = 0, d = 0;
  std::vector<float> f32;
  std::vector<uint16_t> f16;

  mmu::VectorMatrix view() const {
    mmu::VectorMatrix m;
    m.data = type == mmu::VectorType::kF32 ? static_cast<const void*>(f32.data()) : f16.data();
    m.type = type;
    m.rows = n;
    m.dim = d;
    return m;
  }
  float at(int64_t i, int64_t j) const {
    return type == mmu::VectorType::kF32 ? f32[i * d + j] : from_half(f16[i * d + j]);
  }
  double bytes() const { return static_cast<double>(n * d) * (type == mmu::VectorType::kF32 ? 4 : 2); }
  const char* type_name() const { return type == mmu::VectorType::kF32 ? "fp32" : "fp16"; }
};

Base make_base(const std::string& shape, mmu::VectorType type, std::vector<float> values, int64_t n, int64_t d) {
  Base b;
  b.shape = shape;
  b.type = type;
  b.n = n;
  b.d = d;
  if (type == mmu::VectorType::kF32) {
    b.f32 = std::move(values);
  } else {
    b.f16.resize(values.size());
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n * d; ++i) b.f16[i] = to_half(values[i]);
  }
  return b;
}

// Near-ties: every row is one of a few prototypes, exactly (duplicates) or
// with one component moved by 1-3 units in the last place of the stored type,
// so scores tie exactly or differ far below fp32's rounding of a sum.
Base adversarial(mmu::VectorType type, int64_t n, int64_t d, int64_t prototypes, uint64_t seed) {
  const std::vector<float> protos = clustered(prototypes, d, prototypes, 0.0, seed);
  Base b = make_base("near-ties", type, std::vector<float>(static_cast<size_t>(n * d)), n, d);
  for (int64_t i = 0; i < n; ++i) {
    Rng r(seed + 7, static_cast<uint64_t>(i));
    const int64_t p = r.below(prototypes);
    const bool nudge = r.below(2) == 1;
    const int64_t at = r.below(d), steps = 1 + r.below(3);
    const bool up = r.below(2) == 1;
    for (int64_t j = 0; j < d; ++j) {
      const float v = protos[p * d + j];
      if (type == mmu::VectorType::kF32) {
        float x = v;
        if (nudge && j == at)
          for (int64_t s = 0; s < steps; ++s) x = std::nextafter(x, up ? 1.0f : -1.0f);
        b.f32[i * d + j] = x;
      } else {
        uint16_t h = to_half(v);
        // Only normal halves: their bits +-3 stay finite and keep their sign.
        if (nudge && j == at && (h & 0x7fff) > 0x0400) h = static_cast<uint16_t>(up ? h + steps : h - steps);
        b.f16[i * d + j] = h;
      }
    }
  }
  return b;
}

// ---- the oracle ----

// True inner products (double) of query q with every row.
std::vector<double> exact_scores(const Base& b, const float* q) {
  std::vector<double> s(static_cast<size_t>(b.n));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < b.n; ++i) {
    double acc = 0;
    if (b.type == mmu::VectorType::kF32) {
      const float* row = &b.f32[i * b.d];
      for (int64_t j = 0; j < b.d; ++j) acc += static_cast<double>(q[j]) * row[j];
    } else {
      for (int64_t j = 0; j < b.d; ++j) acc += static_cast<double>(q[j]) * b.at(i, j);
    }
    s[i] = acc;
  }
  return s;
}

// The rule of mmu/exact_search.h: min(k, candidates) rows, higher score first, ties to the lower row.
std::vector<int64_t> exact_top(const std::vector<double>& s, int64_t k, const std::vector<int64_t>& candidates) {
  std::vector<int64_t> rows = candidates;
  const size_t m = static_cast<size_t>(std::min<int64_t>(k, static_cast<int64_t>(rows.size())));
  std::partial_sort(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(m), rows.end(),
                    [&](int64_t a, int64_t c) { return s[a] > s[c] || (s[a] == s[c] && a < c); });
  rows.resize(m);
  return rows;
}

// Counts over all compared answers (one answer = one query's list).
struct Tally {
  int64_t answers = 0, exact = 0, within_tolerance = 0, failed = 0;
  // Answers where, among rows of exactly equal true score, a higher row came
  // first or took a lower row's place: allowed (the fp32 sums of equal rows
  // may differ in the last bit across blocks), but a sign of tie handling.
  int64_t tie_to_higher_row = 0;
  double max_score_diff = 0, max_rank_gap = 0;
  std::vector<std::string> failures;  // the first few, for the log

  void fail(const std::string& what) {
    ++failed;
    if (failures.size() < 12) failures.push_back(what);
  }
  void add(const Tally& t) {
    answers += t.answers;
    exact += t.exact;
    within_tolerance += t.within_tolerance;
    failed += t.failed;
    tie_to_higher_row += t.tie_to_higher_row;
    max_score_diff = std::max(max_score_diff, t.max_score_diff);
    max_rank_gap = std::max(max_rank_gap, t.max_rank_gap);
    for (const auto& f : t.failures)
      if (failures.size() < 12) failures.push_back(f);
  }
};

// Compares one answer with the oracle; `where` names the case in failure lines.
// `exact_only`: every score is exactly equal in any arithmetic (the all-zero
// query), so the answer must be the oracle's, row for row.
void compare(const std::vector<mmu::Hit>& got, const std::vector<double>& s, const std::vector<int64_t>& want,
             const std::vector<char>& is_candidate, const std::string& where, Tally& t, bool exact_only = false) {
  ++t.answers;
  if (got.size() != want.size()) {
    t.fail(where + ": " + std::to_string(got.size()) + " rows, want " + std::to_string(want.size()));
    return;
  }
  bool same = true, ok = true;
  std::vector<int64_t> seen;
  for (size_t i = 0; i < got.size(); ++i) {
    const int64_t id = got[i].id;
    if (id < 0 || id >= static_cast<int64_t>(s.size()) || !is_candidate[id]) {
      t.fail(where + ": rank " + std::to_string(i) + " is row " + std::to_string(id) + ", not a candidate");
      return;
    }
    seen.push_back(id);
    same = same && id == want[i];
    if (i > 0) {
      const mmu::Hit& p = got[i - 1];
      if (!(p.score > got[i].score || (p.score == got[i].score && p.id < id))) {
        t.fail(where + ": ranks " + std::to_string(i - 1) + "," + std::to_string(i) + " out of (score, row) order");
        ok = false;
      }
    }
    const double gap = std::fabs(s[id] - s[want[i]]);
    const double diff = std::fabs(static_cast<double>(got[i].score) - s[id]);
    t.max_rank_gap = std::max(t.max_rank_gap, gap);
    t.max_score_diff = std::max(t.max_score_diff, diff);
    if (gap > kRankTolerance && ok) {
      char line[256];
      std::snprintf(line, sizeof(line), ": rank %zu is row %lld (true %.9g), oracle row %lld (true %.9g)", i,
                    static_cast<long long>(id), s[id], static_cast<long long>(want[i]), s[want[i]]);
      t.fail(where + line);
      ok = false;
    }
    if (diff > kScoreTolerance && ok) {
      char line[256];
      std::snprintf(line, sizeof(line), ": row %lld scored %.9g, true %.9g", static_cast<long long>(id),
                    static_cast<double>(got[i].score), s[id]);
      t.fail(where + line);
      ok = false;
    }
  }
  std::sort(seen.begin(), seen.end());
  if (std::adjacent_find(seen.begin(), seen.end()) != seen.end()) {
    t.fail(where + ": a row is returned twice");
    ok = false;
  }
  // Rows of each exact true score, in answer order, must be that score's lowest candidates, ascending.
  std::unordered_map<double, std::vector<int64_t>> returned, tied;  // by true score: answer's rows, all candidates
  for (const mmu::Hit& h : got) {
    returned[s[h.id]].push_back(h.id);
    tied[s[h.id]];
  }
  for (size_t r = 0; r < s.size(); ++r) {
    if (!is_candidate[r]) continue;
    const auto it = tied.find(s[r]);
    if (it != tied.end()) it->second.push_back(static_cast<int64_t>(r));
  }
  for (const auto& [score, ids] : returned)
    if (!std::equal(ids.begin(), ids.end(), tied[score].begin())) {
      ++t.tie_to_higher_row;
      break;
    }
  if (ok && exact_only && !same) {
    t.fail(where + ": every row ties at 0, yet the answer is not the lowest rows in order");
    ok = false;
  }
  if (ok && same) ++t.exact;
  if (ok && !same) ++t.within_tolerance;
}

// Runs one top_k call and compares every query's answer with the oracle.
Tally check_call(const mmu::DeviceIndex& index, const Base& b, const std::vector<float>& queries, int64_t nq,
                 int64_t k, const std::vector<int64_t>* subset, const std::string& where) {
  Tally t;
  const Answers got = index.top_k(queries.data(), nq, k, subset);
  std::vector<int64_t> candidates;
  if (subset) {
    candidates = *subset;
  } else {
    candidates.resize(static_cast<size_t>(b.n));
    for (int64_t i = 0; i < b.n; ++i) candidates[i] = i;
  }
  std::vector<char> is_candidate(static_cast<size_t>(b.n), 0);
  for (int64_t r : candidates) is_candidate[r] = 1;
  if (static_cast<int64_t>(got.size()) != nq) {
    t.fail(where + ": " + std::to_string(got.size()) + " answers for " + std::to_string(nq) + " queries");
    return t;
  }
  for (int64_t j = 0; j < nq; ++j) {
    const std::vector<double> s = exact_scores(b, &queries[j * b.d]);
    const bool zero = std::all_of(&queries[j * b.d], &queries[(j + 1) * b.d], [](float v) { return v == 0.0f; });
    compare(got[j], s, exact_top(s, k, candidates), is_candidate, where + " query " + std::to_string(j), t, zero);
  }
  return t;
}

// Queries for a base: an all-zero one (every row ties), stored rows (they tie
// with their duplicates), a negated row, and fresh clustered vectors.
std::vector<float> queries_for(const Base& b, int64_t nq, uint64_t seed) {
  const int64_t d = b.d;
  std::vector<float> q(static_cast<size_t>(nq * d), 0.0f);
  const std::vector<float> fresh = clustered(nq, d, 4, 0.5, seed);
  for (int64_t j = 1; j < nq; ++j) {
    Rng r(seed, static_cast<uint64_t>(j));
    const int64_t row = r.below(b.n);
    for (int64_t c = 0; c < d; ++c) {
      const float v = b.at(row, c);
      q[j * d + c] = j % 3 == 1 ? v : j % 3 == 2 ? -v : fresh[j * d + c];
    }
  }
  return q;
}

std::string json_tally(const Tally& t) {
  std::ostringstream o;
  o.precision(6);
  o << "{\"answers\": " << t.answers << ", \"exact\": " << t.exact << ", \"within_tolerance\": " << t.within_tolerance
    << ", \"failed\": " << t.failed << ", \"tie_to_higher_row\": " << t.tie_to_higher_row
    << ", \"max_score_diff\": " << t.max_score_diff
    << ", \"max_rank_gap\": " << t.max_rank_gap << "}";
  return o.str();
}

void print_tally(const std::string& name, const Tally& t) {
  std::printf("  %-32s answers %5lld  exact %5lld  within 1e-6 %5lld  FAILED %lld  max|score-true| %.1e  "
              "max rank gap %.1e  exact ties out of row order %lld\n",
              name.c_str(), static_cast<long long>(t.answers), static_cast<long long>(t.exact),
              static_cast<long long>(t.within_tolerance), static_cast<long long>(t.failed), t.max_score_diff,
              t.max_rank_gap, static_cast<long long>(t.tie_to_higher_row));
  for (const auto& f : t.failures) std::printf("    FAIL %s\n", f.c_str());
  std::fflush(stdout);
}

// Device bytes per row of a block, as plugin/torch_search.cpp counts them
// (scores and mask per query, gathered rows, widened rows): bytes for r rows
// per block = r times this.
int64_t plugin_row_bytes(const Base& b, int64_t nq, bool gathered) {
  const bool widened = b.type == mmu::VectorType::kF16;
  return 5 * nq + (gathered ? b.d * (widened ? 2 : 4) : 0) + (widened ? b.d * 4 : 0);
}

// Part 1 on one device: every shape x type x subset x block size.
Tally correctness(mmu::SearchDevice device, const Args& a, std::ostringstream& json) {
  const int64_t n = a.quick ? 1000 : 3000, d = a.quick ? 64 : 128, nq = 8;
  const std::string dev = mmu::search_device_name(device);
  // Rows per block: one (ties straddle every boundary), a few, a few hundred,
  // and 0 for the default block size (the whole base in one block).
  const std::vector<int64_t> block_rows{1, 3, 300, 0};
  const std::vector<int64_t> ks{1, 10, 50, n + 5};
  Tally all;
  json << "\"correctness_" << dev << "\": {";
  bool first_json = true;
  for (const std::string shape : {"clustered", "near-ties"}) {
    for (const mmu::VectorType type : {mmu::VectorType::kF32, mmu::VectorType::kF16}) {
      const Base b = shape == "clustered"
                         ? make_base(shape, type, clustered(n, d, 12, 0.6, 11), n, d)
                         : adversarial(type, n, d, 5, 23);
      const std::vector<float> q = queries_for(b, nq, 31);
      std::vector<int64_t> some, few, none;
      for (int64_t i = 0; i < n; ++i) {
        Rng r(41, static_cast<uint64_t>(i));
        if (r.below(100) < 37) some.push_back(i);
      }
      for (int64_t i = n / 3; i < n; i += n / 5) few.push_back(i);  // fewer rows than most k
      struct Sub {
        const char* name;
        const std::vector<int64_t>* rows;
      };
      const std::vector<Sub> subsets{{"all rows", nullptr}, {"subset", &some}, {"tiny subset", &few}, {"empty subset", &none}};
      Tally t;
      const std::vector<float> q1(q.begin() + d, q.begin() + 2 * d);  // a stored row: ties with its duplicates
      for (size_t bi = 0; bi < block_rows.size(); ++bi) {
        for (const Sub& sub : subsets) {
          if ((sub.rows == &few || sub.rows == &none) && bi != 0 && bi + 1 != block_rows.size()) continue;
          // Each block size sees every k over its two calls (a batch, a single query).
          const int64_t k_batch = ks[bi % ks.size()], k_one = ks[(bi + 2) % ks.size()];
          for (const int64_t m : {nq, int64_t{1}}) {
            const int64_t bytes = block_rows[bi] == 0 ? mmu::kDefaultDeviceBlockBytes
                                                      : block_rows[bi] * plugin_row_bytes(b, m, sub.rows != nullptr);
            const auto index = mmu::DeviceIndex::open(b.view(), device, bytes);
            const int64_t k = m == 1 ? k_one : k_batch;
            const std::string where = dev + " " + shape + " " + b.type_name() + " " + sub.name + " " +
                                      (block_rows[bi] ? std::to_string(block_rows[bi]) + "-row" : "default") +
                                      " blocks, " + std::to_string(m) + " queries, k " + std::to_string(k);
            t.add(check_call(*index, b, m == 1 ? q1 : q, m, k, sub.rows, where));
          }
        }
      }
      // "Safe to call from several threads at once": four threads share one index.
      {
        const auto index = mmu::DeviceIndex::open(b.view(), device, 300 * plugin_row_bytes(b, nq, true));
        std::vector<Tally> per(4);
        std::vector<std::thread> threads;
        for (size_t i = 0; i < per.size(); ++i)
          threads.emplace_back([&, i] {
            try {
              for (int r = 0; r < 3; ++r)
                per[i].add(check_call(*index, b, q, nq, 10, r % 2 ? &some : nullptr,
                                      dev + " " + shape + " " + b.type_name() + " thread " + std::to_string(i)));
            } catch (const std::exception& e) {
              per[i].fail(std::string("thread ") + std::to_string(i) + " threw: " + e.what());
            }
          });
        for (auto& th : threads) th.join();
        for (const Tally& p : per) t.add(p);
      }
      const std::string name = dev + " " + shape + " " + b.type_name();
      print_tally(name, t);
      json << (first_json ? "" : ", ") << "\"" << shape << " " << b.type_name() << "\": " << json_tally(t);
      first_json = false;
      all.add(t);
    }
  }
  json << ", \"total\": " << json_tally(all) << "}";
  return all;
}

// ---- part 2: timing ----

bool on_cuda(const torch::Device& dev) { return dev.is_cuda(); }

void sync(const torch::Device& dev) {
  if (on_cuda(dev)) torch::cuda::synchronize();
}

// Seconds per call of f, median of `reps` after one warm-up.
double median_s(int reps, const std::function<void()>& f) {
  f();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    f();
    ms.push_back(ms_since(t0));
  }
  return mmu::bench::stats_of(ms).median / 1e3;
}

// Device memory rate: bytes read plus bytes written per second by a large copy.
double copy_rate(const torch::Device& dev) {
  torch::InferenceMode guard;
  const int64_t n = on_cuda(dev) ? (int64_t{1} << 28) : (int64_t{1} << 26);  // 1 GiB on cuda
  const torch::Tensor src = torch::ones({n}, torch::TensorOptions().dtype(torch::kFloat32).device(dev));
  torch::Tensor dst = torch::empty_like(src);
  const double s = median_s(10, [&] {
    dst.copy_(src);
    sync(dev);
  });
  return 2.0 * 4.0 * static_cast<double>(n) / s;
}

// fp32 matmul flops/s at the plug-in's batch shape: (nq x d) x (d x block), TF32 off.
double sgemm_rate(const torch::Device& dev, int64_t nq, int64_t d, int64_t block) {
  torch::InferenceMode guard;
  at::globalContext().setAllowTF32CuBLAS(false);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(dev);
  const torch::Tensor q = torch::randn({nq, d}, f32), rows = torch::randn({block, d}, f32);
  torch::Tensor out;
  const double s = median_s(on_cuda(dev) ? 10 : 2, [&] {
    out = torch::mm(q, rows.t());
    sync(dev);
  });
  return 2.0 * static_cast<double>(nq) * static_cast<double>(d) * static_cast<double>(block) / s;
}

struct DeviceTimes {
  double upload_s = 0, one_s = 0, batch_s = 0;
  int one_reps = 0, batch_reps = 0;  // batch_reps 0: the batch was skipped
  Answers batch;                     // the last batch's answers
};

// How much to time: warm-up calls, then up to `one_reps` single queries while
// under `max_s` seconds (at least one), then `batch_reps` batches when
// `batch_allowed()` says there is time.
struct TimingPlan {
  int warmups, one_reps, batch_reps;
  double max_s;
  std::function<bool()> batch_allowed;
};

DeviceTimes time_device(const Base& b, mmu::SearchDevice device, const std::vector<float>& queries, int64_t nq,
                        int64_t k, const TimingPlan& plan) {
  DeviceTimes t;
  const auto t0 = Clock::now();
  const auto index = mmu::DeviceIndex::open(b.view(), device);
  t.upload_s = ms_since(t0) / 1e3;
  for (int i = 0; i < plan.warmups; ++i) index->top_k(&queries[(i % nq) * b.d], 1, k);
  std::vector<double> ms;
  const auto t1 = Clock::now();
  for (int i = 0; i < plan.one_reps && (i == 0 || ms_since(t1) < plan.max_s * 1e3); ++i) {
    const auto t2 = Clock::now();
    index->top_k(&queries[(i % nq) * b.d], 1, k);
    ms.push_back(ms_since(t2));
  }
  t.one_s = mmu::bench::stats_of(ms).median / 1e3;
  t.one_reps = static_cast<int>(ms.size());
  if (!plan.batch_allowed()) return t;
  ms.clear();
  if (plan.batch_reps > 1) t.batch = index->top_k(queries.data(), nq, k);  // warm-up
  for (int i = 0; i < plan.batch_reps; ++i) {
    const auto t2 = Clock::now();
    t.batch = index->top_k(queries.data(), nq, k);
    ms.push_back(ms_since(t2));
  }
  t.batch_s = mmu::bench::stats_of(ms).median / 1e3;
  t.batch_reps = plan.batch_reps;
  return t;
}

// The batch's first queries against the oracle, at full scale (real block boundaries).
Tally check_batch(const Base& b, const std::vector<float>& queries, int64_t k, const Answers& got, int64_t check,
                  const std::string& where) {
  Tally t;
  std::vector<int64_t> all(static_cast<size_t>(b.n));
  for (int64_t i = 0; i < b.n; ++i) all[i] = i;
  const std::vector<char> is_candidate(static_cast<size_t>(b.n), 1);
  for (int64_t j = 0; j < std::min<int64_t>(check, static_cast<int64_t>(got.size())); ++j) {
    const std::vector<double> s = exact_scores(b, &queries[j * b.d]);
    compare(got[j], s, exact_top(s, k, all), is_candidate, where + " query " + std::to_string(j), t);
  }
  return t;
}

// Part 2: returns the oracle tally of the timed answers.
Tally timing(const Args& a, mmu::SearchDevice device, std::ostringstream& json, Clock::time_point run_start) {
  const auto start = Clock::now();
  // torch-cpu runs only start while the whole run is within --budget-s.
  auto within_budget = [&] { return ms_since(run_start) / 1e3 < a.budget_s; };
  const torch::Device tdev = device == mmu::SearchDevice::kCuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  const int64_t n = a.rows, d = a.dim, nq = a.batch, k = a.k;
  torch::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  std::printf("\n== timing on %s: %lld x %lld clustered, k=%lld, batches of %lld; torch threads %d ==\n",
              mmu::search_device_name(device), static_cast<long long>(n), static_cast<long long>(d),
              static_cast<long long>(k), static_cast<long long>(nq), torch::get_num_threads());
  std::fflush(stdout);

  const double rate = copy_rate(tdev);
  // The plug-in's rows per block for an fp32 batch without subset (torch_search.cpp: 5 bytes per row and query).
  const int64_t block = std::min(n, std::max<int64_t>(1, mmu::kDefaultDeviceBlockBytes / (5 * nq)));
  const double flops = sgemm_rate(tdev, nq, d, block);
  std::printf("  device copy rate %.1f GB/s (read + write); fp32 matmul %lldx%lldx%lld, TF32 %s: %.3g TFLOP/s\n",
              rate / 1e9, static_cast<long long>(nq), static_cast<long long>(d), static_cast<long long>(block),
              at::globalContext().allowTF32CuBLAS() ? "ON (!)" : "off", flops / 1e12);
  std::fflush(stdout);

  const auto g0 = Clock::now();
  std::vector<float> values = clustered(n, d, 1000, 0.6, 101);
  std::vector<float> queries(static_cast<size_t>(nq * d));
  for (int64_t j = 0; j < nq; ++j)  // stored rows spread over the base, as bench/device_search.cpp
    std::copy_n(&values[(j * n / nq) * d], d, &queries[j * d]);
  std::printf("  data generated in %.1f s\n", ms_since(g0) / 1e3);

  Tally checked;
  json << "\"timing\": {\"device\": \"" << mmu::search_device_name(device) << "\", \"rows\": " << n
       << ", \"dim\": " << d << ", \"k\": " << k << ", \"batch\": " << nq << ", \"copy_rate_GBps\": " << rate / 1e9
       << ", \"sgemm_TFLOPs\": " << flops / 1e12 << ", \"sgemm_block_rows\": " << block;
  for (const mmu::VectorType type : {mmu::VectorType::kF32, mmu::VectorType::kF16}) {
    const Base b = make_base("clustered", type, values, n, d);
    const double floor_s = b.bytes() / rate;
    const double ceiling_s = 2.0 * static_cast<double>(nq) * static_cast<double>(n) * static_cast<double>(d) / flops;
    const DeviceTimes g = on_cuda(tdev) ? time_device(b, device, queries, nq, k, {3, 50, 3, 60, [] { return true; }})
                                        : time_device(b, device, queries, nq, k, {1, 50, 1, 5, [] { return true; }});
    std::printf("  %s %s: upload %.3f s (%.2f GB/s)\n", mmu::search_device_name(device), b.type_name(), g.upload_s,
                b.bytes() / g.upload_s / 1e9);
    std::printf("    one query   %.3f ms median of %d; floor %.3f ms (%.0f MB / copy rate): %.2fx the floor\n",
                g.one_s * 1e3, g.one_reps, floor_s * 1e3, b.bytes() / 1e6, g.one_s / floor_s);
    std::printf("    batch %lld   %.1f ms median of %d = %.0f queries/s; SGEMM ceiling %.1f ms: %.2fx the ceiling\n",
                static_cast<long long>(nq), g.batch_s * 1e3, g.batch_reps, static_cast<double>(nq) / g.batch_s,
                ceiling_s * 1e3, g.batch_s / ceiling_s);
    std::fflush(stdout);
    const Tally t = check_batch(b, queries, k, g.batch, 8, std::string("timed batch ") + b.type_name());
    print_tally(std::string("oracle, timed batch ") + b.type_name(), t);
    checked.add(t);

    json << ", \"" << b.type_name() << "\": {\"bytes\": " << b.bytes() << ", \"upload_s\": " << g.upload_s
         << ", \"one_query_ms\": " << g.one_s * 1e3 << ", \"one_query_floor_ms\": " << floor_s * 1e3
         << ", \"one_query_over_floor\": " << g.one_s / floor_s << ", \"batch_ms\": " << g.batch_s * 1e3
         << ", \"batch_qps\": " << static_cast<double>(nq) / g.batch_s << ", \"batch_ceiling_ms\": " << ceiling_s * 1e3
         << ", \"batch_over_ceiling\": " << g.batch_s / ceiling_s << ", \"oracle\": " << json_tally(t);

    // For scale: LibTorch's CPU device on all cores, fewer repetitions, within the budget.
    if (device == mmu::SearchDevice::kCuda) {
      if (!within_budget()) {
        std::printf("    torch-cpu skipped: %.0f s spent of --budget-s %.0f\n", ms_since(run_start) / 1e3, a.budget_s);
        json << ", \"torch_cpu\": null";
      } else {
        const DeviceTimes c =
            time_device(b, mmu::SearchDevice::kTorchCpu, queries, nq, k, {1, 5, 1, 5, within_budget});
        std::printf("    torch-cpu   one query %.2f ms (median of %d, %.1fx cuda)", c.one_s * 1e3, c.one_reps,
                    c.one_s / g.one_s);
        json << ", \"torch_cpu\": {\"one_query_ms\": " << c.one_s * 1e3;
        if (c.batch_reps == 0) {
          std::printf("; batch skipped: %.0f s spent of --budget-s %.0f\n", ms_since(run_start) / 1e3, a.budget_s);
        } else {
          int64_t same = 0;
          for (size_t j = 0; j < std::min(c.batch.size(), g.batch.size()); ++j) {
            bool eq = c.batch[j].size() == g.batch[j].size();
            for (size_t i = 0; eq && i < c.batch[j].size(); ++i) eq = c.batch[j][i].id == g.batch[j][i].id;
            same += eq;
          }
          std::printf("; batch %.0f ms = %.0f queries/s (%.1fx cuda)\n"
                      "    cuda and torch-cpu give the same rows in the same order for %lld of %lld queries\n",
                      c.batch_s * 1e3, static_cast<double>(nq) / c.batch_s, c.batch_s / g.batch_s,
                      static_cast<long long>(same), static_cast<long long>(nq));
          json << ", \"batch_ms\": " << c.batch_s * 1e3 << ", \"batch_qps\": " << static_cast<double>(nq) / c.batch_s
               << ", \"same_as_cuda\": " << same;
        }
        json << "}";
        std::fflush(stdout);
      }
    }
    json << "}";
  }
  json << ", \"seconds\": " << ms_since(start) / 1e3 << "}";
  return checked;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const auto start = Clock::now();
  // Each section joins the JSON only once complete, so an exception leaves it well-formed.
  std::vector<std::string> sections;
  auto section = [&](const std::function<void(std::ostringstream&)>& fill) {
    std::ostringstream o;
    o.precision(6);
    fill(o);
    sections.push_back(o.str());
  };
  int rc = 0;
  try {
    const bool cuda_built = mmu::built_with_cuda();
    const bool cuda = cuda_built && torch::cuda::is_available();
    std::printf("mmu_cuda_check: LibTorch %s, built with CUDA: %s, CUDA device visible: %s (%d), OpenMP threads %d\n",
                TORCH_VERSION, cuda_built ? "yes" : "no", cuda ? "yes" : "no",
                cuda ? static_cast<int>(torch::cuda::device_count()) : 0, omp_get_max_threads());
    section([&](std::ostringstream& o) {
      o << "\"torch\": \"" << TORCH_VERSION << "\", \"built_with_cuda\": " << (cuda_built ? "true" : "false")
        << ", \"cuda_visible\": " << (cuda ? "true" : "false") << ", \"quick\": " << (a.quick ? "true" : "false");
    });

    std::printf("\n== correctness vs a double-precision exact top-k (swaps allowed within %.0e, scores within %.0e) ==\n",
                kRankTolerance, kScoreTolerance);
    Tally total;
    section([&](std::ostringstream& o) { total.add(correctness(mmu::SearchDevice::kTorchCpu, a, o)); });
    if (cuda) section([&](std::ostringstream& o) { total.add(correctness(mmu::SearchDevice::kCuda, a, o)); });

    if (a.timing && (a.timing_device == "torch-cpu" || cuda)) {
      const auto device = a.timing_device == "cuda" ? mmu::SearchDevice::kCuda : mmu::SearchDevice::kTorchCpu;
      section([&](std::ostringstream& o) { total.add(timing(a, device, o, start)); });
    } else if (a.timing) {
      std::printf("\n== timing skipped: no CUDA device ==\n");
    }
    section([&](std::ostringstream& o) {
      o << "\"answers_checked\": " << total.answers << ", \"answers_failed\": " << total.failed;
    });

    std::printf("\n== %s: %lld answers checked, %lld identical to the oracle, %lld within tolerance, %lld FAILED "
                "(%.1f s) ==\n",
                total.failed == 0 ? "PASS" : "FAIL", static_cast<long long>(total.answers),
                static_cast<long long>(total.exact), static_cast<long long>(total.within_tolerance),
                static_cast<long long>(total.failed), ms_since(start) / 1e3);
    if (total.failed != 0) rc = 1;
    if (cuda_built && !cuda) {
      std::printf("ERROR: this build has CUDA but LibTorch sees no CUDA device (check nvidia-smi, CUDA_VISIBLE_DEVICES, "
                  "and that libtorch_cuda.so was linked)\n");
      if (rc == 0) rc = 3;
    }
  } catch (const std::exception& e) {
    std::printf("ERROR: %s\n", e.what());
    section([&](std::ostringstream& o) { o << "\"error\": \"an exception stopped the run: see the log\""; });
    rc = 1;
  }
  std::fflush(stdout);
  std::ofstream out(a.json);
  out << "{";
  for (const std::string& s : sections) out << s << ", ";
  out << "\"exit\": " << rc << ", \"seconds\": " << ms_since(start) / 1e3 << "}\n";
  if (!out) {
    std::fprintf(stderr, "mmu_cuda_check: cannot write '%s'\n", a.json.c_str());
    return 1;
  }
  return rc;
}
