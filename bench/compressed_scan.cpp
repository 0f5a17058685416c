// mmu_bench_compressed_scan: one exact query over an sq8 copy (issue 19 point 2)
// against the fp32 scan and the fp32 bandwidth floor, all in this process.
//
//   mmu_bench_compressed_scan [--n 1000000] [--dim 512] [--kinds uniform,clustered]
//                             [--queries 1000] [--timed 50] [--k 50] [--seed 1] [--warm 0]
//
// Per kind (vectors generated in memory as mmu_bench_make_store makes them:
// uniform = normalised gaussians; clustered = 1000 gaussian clusters of varied
// spread and weight, normalised):
//   1. floor: the fp32 matrix summed by all OpenMP threads, best of 5 passes
//      after a warm-up; floor = its bytes / that bandwidth.
//   2. fp32: exact_top_k, one query per call (what a query without sq8 runs).
//   3. sq8: Sq8Copy::top_k, one query per call (with how many rows passed its
//      8-bit filter to the 16-bit bounds).
// The queries are --queries stored rows (seeded), as for --like; the first
// --timed of them are timed for both, all of them are compared (same rows,
// same scores, same order). --warm R also runs each timed sq8 query R more
// times back to back and reports their median CPU time (sq8_warm_cpu): with a
// small --n and OMP_NUM_THREADS=1 the codes stay in cache, so it is the scan's
// compute alone. Prints one line per kind and a JSON object per kind on stdout. Peak memory: the fp32 matrix plus a quarter of it.
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "bench_stats.h"
#include "synthetic_vectors.h"
#include "mmu/exact_search.h"
#include "vector/compressed_scan.h"

namespace {

using namespace mmu::bench;

struct Args {
  int64_t n = 1000000, dim = 512, queries = 1000, timed = 50, k = 50, warm = 0;
  uint64_t seed = 1;
  std::string kinds = "uniform,clustered";
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "mmu_bench_compressed_scan: " << why << "\n"
            << "usage: mmu_bench_compressed_scan [--n 1000000] [--dim 512] [--kinds uniform,clustered]\n"
            << "                                 [--queries 1000] [--timed 50] [--k 50] [--seed 1] [--warm 0]\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  walk_flags(argc, argv, usage, [&](const std::string& f, auto& value) {
    if (f == "--n") a.n = std::atoll(value().c_str());
    else if (f == "--dim") a.dim = std::atoll(value().c_str());
    else if (f == "--kinds") a.kinds = value();
    else if (f == "--queries") a.queries = std::atoll(value().c_str());
    else if (f == "--timed") a.timed = std::atoll(value().c_str());
    else if (f == "--k") a.k = std::atoll(value().c_str());
    else if (f == "--warm") a.warm = std::atoll(value().c_str());
    else if (f == "--seed") a.seed = std::strtoull(value().c_str(), nullptr, 10);
    else return false;
    return true;
  });
  if (a.n < 1 || a.dim < 2 || a.queries < 1 || a.timed < 1 || a.k < 1 || a.warm < 0) usage("sizes must be >= 1");
  a.timed = std::min(a.timed, a.queries);
  return a;
}

// Best read bandwidth (GB/s) of all threads summing the buffer, each a contiguous share.
double read_bandwidth(const std::vector<float>& v, double* checksum) {
  double best = 0;
  for (int pass = 0; pass <= 5; ++pass) {
    double total = 0;
    const auto t0 = Clock::now();
#pragma omp parallel reduction(+ : total)
    {
      const size_t t = static_cast<size_t>(omp_get_thread_num()), nt = static_cast<size_t>(omp_get_num_threads());
      const size_t first = v.size() * t / nt, last = v.size() * (t + 1) / nt;
      total += sum_floats(v.data() + first, last - first);
    }
    const double ms = ms_since(t0);
    *checksum += total;
    if (pass > 0) best = std::max(best, static_cast<double>(v.size() * sizeof(float)) / (ms * 1e6));
  }
  return best;
}

// CPU time of the whole process (all threads), ms: on a loaded machine the
// wall time includes waiting for a core, the CPU time does not.
double cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

bool identical(const std::vector<mmu::Hit>& a, const std::vector<mmu::Hit>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].id != b[i].id || std::memcmp(&a[i].score, &b[i].score, sizeof(float)) != 0) return false;
  return true;
}

void run_kind(const Args& a, const std::string& kind) {
  const auto t_gen = Clock::now();
  const std::vector<float> v = synthetic_vectors(a.n, a.dim, kind == "clustered", 1000, a.seed);
  const double gen_s = ms_since(t_gen) / 1e3;
  const mmu::VectorMatrix m{v.data(), mmu::VectorType::kF32, a.n, a.dim};
  const auto t_enc = Clock::now();
  const std::vector<uint8_t> image = mmu::encode_sq8(m, std::string(64, '0'));
  const double encode_s = ms_since(t_enc) / 1e3;
  const mmu::Sq8Copy copy(image.data(), image.size(), "in-memory sq8");

  double checksum = 0;
  const double gbs = read_bandwidth(v, &checksum);
  const double floor_ms = static_cast<double>(v.size() * sizeof(float)) / (gbs * 1e6);

  std::mt19937_64 rng(a.seed + 7);
  std::uniform_int_distribution<int64_t> pick(0, a.n - 1);
  std::vector<int64_t> qrows;
  for (int64_t i = 0; i < a.queries; ++i) qrows.push_back(pick(rng));

  std::vector<double> t32, t8, c32, c8, c8warm;
  std::vector<int64_t> cands, passed;
  int64_t same = 0;
  for (int64_t i = 0; i < a.queries; ++i) {
    const float* q = &v[static_cast<size_t>(qrows[i] * a.dim)];
    double cpu0 = cpu_ms();
    auto t0 = Clock::now();
    const auto want = mmu::exact_top_k(m, q, 1, a.k)[0];
    const double ms32 = ms_since(t0), cpu32 = cpu_ms() - cpu0;
    int64_t c = 0, f = 0;
    cpu0 = cpu_ms();
    t0 = Clock::now();
    mmu::Sq8Scan how;
    how.candidates = &c;
    how.filtered = &f;
    const auto got = copy.top_k(m, q, a.k, nullptr, how);
    const double ms8 = ms_since(t0), cpu8 = cpu_ms() - cpu0;
    for (int64_t r = 0; r < a.warm && i < a.timed; ++r) {
      cpu0 = cpu_ms();
      same -= !identical(copy.top_k(m, q, a.k, nullptr), want);
      c8warm.push_back(cpu_ms() - cpu0);
    }
    if (i < a.timed) {
      t32.push_back(ms32);
      t8.push_back(ms8);
      c32.push_back(cpu32);
      c8.push_back(cpu8);
    }
    cands.push_back(c);
    passed.push_back(f);
    same += identical(got, want);
  }
  const Stats s32 = stats_of(t32), s8 = stats_of(t8), p32 = stats_of(c32), p8 = stats_of(c8);
  const Stats pw = stats_of(c8warm.empty() ? std::vector<double>{0.0} : c8warm);
  std::vector<double> cd(cands.begin(), cands.end());
  const Stats sc = stats_of(cd);
  std::vector<double> pd(passed.begin(), passed.end());
  const Stats sp = stats_of(pd);
  std::fprintf(stderr,
               "%s %lld x %lld, k=%lld: floor %.1f ms (%.2f GB/s, %d threads); fp32 exact median %.1f ms (%.2fx floor); "
               "sq8 exact median %.1f ms (%.3fx floor, %.2fx fp32); identical %lld of %lld; candidates median %.0f, "
               "max %.0f; past the 8-bit filter median %.0f, max %.0f; CPU ms per query (all threads) fp32 %.1f, sq8 %.1f (warm %.3f); encode %.1f s (generate %.1f s)\n",
               kind.c_str(), static_cast<long long>(a.n), static_cast<long long>(a.dim), static_cast<long long>(a.k),
               floor_ms, gbs, omp_get_max_threads(), s32.median, s32.median / floor_ms, s8.median, s8.median / floor_ms,
               s8.median / s32.median, static_cast<long long>(same), static_cast<long long>(a.queries), sc.median,
               sc.max, sp.median, sp.max, p32.median, p8.median, pw.median, encode_s, gen_s);
  std::printf(
      "{\"kind\": \"%s\", \"n\": %lld, \"dim\": %lld, \"k\": %lld, \"threads\": %d, \"bandwidth_gbs\": %.3f, "
      "\"floor_ms\": %.3f, \"fp32\": %s, \"sq8\": %s, \"sq8_over_floor\": %.4f, \"fp32_over_floor\": %.4f, "
      "\"identical\": %lld, \"queries\": %lld, \"candidates\": %s, \"filtered\": %s, \"fp32_cpu\": %s, \"sq8_cpu\": %s, "
      "\"sq8_warm_cpu\": %s, \"checksum\": %g}\n",
      kind.c_str(), static_cast<long long>(a.n), static_cast<long long>(a.dim), static_cast<long long>(a.k),
      omp_get_max_threads(), gbs, floor_ms, stats_json(s32).c_str(), stats_json(s8).c_str(), s8.median / floor_ms,
      s32.median / floor_ms, static_cast<long long>(same), static_cast<long long>(a.queries), stats_json(sc).c_str(),
      stats_json(sp).c_str(), stats_json(p32).c_str(), stats_json(p8).c_str(), stats_json(pw).c_str(), checksum);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  for (const auto& k : {std::string("uniform"), std::string("clustered")})
    if (a.kinds.find(k) != std::string::npos) run_kind(a, k);
  return 0;
}
