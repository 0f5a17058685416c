// Timing helpers shared by the bench programs: a steady clock in ms and
// nearest-rank summaries of per-call times, as text and as JSON; and the
// bench programs' flag walk.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <string>
#include <vector>

namespace mmu::bench {

// "1,256,1000" -> {1, 256, 1000}: the bench programs' list flags.
inline std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> out;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    if (comma > at) out.push_back(std::atoll(text.substr(at, comma - at).c_str()));
    at = comma + 1;
  }
  return out;
}

using Clock = std::chrono::steady_clock;

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Stats {
  size_t n = 0;
  double median = 0, p90 = 0, mean = 0, min = 0, max = 0;
};

// Nearest-rank percentiles (p in [0,1]) over a copy of v.
inline Stats stats_of(std::vector<double> v) {
  Stats s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto pct = [&](double p) {
    const size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
  };
  s.median = pct(0.5);
  s.p90 = pct(0.9);
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  s.min = v.front();
  s.max = v.back();
  return s;
}

inline std::string stats_json(const Stats& s) {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "{\"n\": %zu, \"median_ms\": %.4f, \"p90_ms\": %.4f, \"mean_ms\": %.4f, \"min_ms\": %.4f, "
                "\"max_ms\": %.4f}",
                s.n, s.median, s.p90, s.mean, s.min, s.max);
  return buf;
}

inline std::string stats_text(const Stats& s) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "n=%zu  median %.3f ms  p90 %.3f ms  mean %.3f ms  min %.3f ms  max %.3f ms", s.n,
                s.median, s.p90, s.mean, s.min, s.max);
  return buf;
}

// Walks argv as flags: calls on(flag, value) for each, where value() takes the
// next argument (usage(...) when there is none); "-h"/"--help" call usage("help").
template <typename Usage, typename On>
void walk_flags(int argc, char** argv, Usage usage, On on) {
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "-h" || f == "--help") usage("help");
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(f + " needs a value");
      return argv[++i];
    };
    if (!on(f, value)) usage("unknown argument '" + f + "'");
  }
}

// The flags every exact-scan bench takes: the shape of its synthetic scan.
struct ScanFlags {
  int64_t rows = 1000000, dim = 512, queries = 1000, k = 50, runs = 3;

  // Reads --rows, --dim, --queries, --k or --runs (walk_flags' value); false for any other flag.
  template <typename Value>
  bool take(const std::string& f, Value& value) {
    int64_t* to = f == "--rows" ? &rows : f == "--dim" ? &dim : f == "--queries" ? &queries : f == "--k" ? &k
                : f == "--runs" ? &runs : nullptr;
    if (to != nullptr) *to = std::atoll(value().c_str());
    return to != nullptr;
  }
  bool valid() const { return rows >= 1 && dim >= 1 && queries >= 1 && queries <= rows && k >= 1 && runs >= 1; }
};

// Sum of n floats with 32 independent accumulators, so the loop is limited by
// loads, not by the latency of one add chain.
inline float sum_floats(const float* p, size_t n) {
  float acc[32] = {};
  size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int j = 0; j < 32; ++j) acc[j] += p[i + j];
  float s = 0;
  for (; i < n; ++i) s += p[i];
  for (float a : acc) s += a;
  return s;
}

}  // namespace mmu::bench
