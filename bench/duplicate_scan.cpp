// mmu_bench_duplicates: a batch of exact queries over data where many rows
// are one identical vector (blank or fully masked cutouts give the same
// baseline feature vector; objects duplicated across files), against the same
// batch over the same data without the duplicates, in one run.
//
//   mmu_bench_duplicates [--rows 100000] [--dim 512] [--queries 1000] [--k 50] [--runs 3]
//                        [--fractions 10,30] [--near 100]
//
// The clean rows are random unit vectors (bench/synthetic_vectors.h). For each
// fraction f (percent), f% of the rows (every row whose hash falls below f%)
// are replaced by one vector v, and --near further rows by v with one
// coordinate one float ulp away (near-identical, scored a hair apart). The
// queries are the stored rows spread over the duplicated matrix, as
// --like-file sends them: about f% of them are v itself, whose top k is all
// ties. Each run times exact_top_k on the clean matrix, then on each
// duplicated one, with the same query vectors; the ratio is duplicated / clean
// (best of --runs each).
//
// Prints one JSON object on stdout and a summary on stderr.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "bench_stats.h"
#include "mmu/exact_search.h"
#include "synthetic_vectors.h"

namespace {

using namespace mmu::bench;

struct Args : mmu::bench::ScanFlags {
  Args() { rows = 100000; }
  int64_t near = 100;
  std::vector<int64_t> fractions = {10, 30};
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "mmu_bench_duplicates: " << why << "\n"
            << "usage: mmu_bench_duplicates [--rows 100000] [--dim 512] [--queries 1000] [--k 50] [--runs 3] "
               "[--fractions 10,30] [--near 100]\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  walk_flags(argc, argv, usage, [&](const std::string& f, auto& value) {
    if (a.take(f, value)) return true;
    if (f == "--near") a.near = std::atoll(value().c_str());
    else if (f == "--fractions") a.fractions = parse_list(value());
    else return false;
    return true;
  });
  if (!a.valid() || a.near < 0 || a.near > a.rows / 100)
    usage("--rows, --dim, --queries, --k, --runs must be >= 1, --queries <= --rows, --near in [0, rows / 100]");
  for (int64_t f : a.fractions)
    if (f < 0 || f > 99) usage("--fractions are percents from 0 to 99");
  return a;
}

uint64_t mix(uint64_t x) {
  x ^= x >> 33, x *= 0xff51afd7ed558ccdull, x ^= x >> 33, x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

// `clean` with f% of its rows replaced by v = clean row 0, and `near` rows by v nudged one ulp.
std::vector<float> with_duplicates(const std::vector<float>& clean, int64_t rows, int64_t dim, int64_t percent,
                                   int64_t near) {
  std::vector<float> out = clean;
  const float* v = clean.data();
  int64_t nudged = 0;
  for (int64_t r = 1; r < rows; ++r) {
    const uint64_t h = mix(static_cast<uint64_t>(r)) % 10000;
    float* x = &out[static_cast<size_t>(r * dim)];
    if (h < static_cast<uint64_t>(percent * 100)) {
      std::memcpy(x, v, static_cast<size_t>(dim) * sizeof(float));
    } else if (nudged < near && h >= 9999 - static_cast<uint64_t>(near * 10000 / rows + 1)) {
      std::memcpy(x, v, static_cast<size_t>(dim) * sizeof(float));
      const int64_t j = static_cast<int64_t>(mix(h) % static_cast<uint64_t>(dim));
      x[j] = std::nextafter(x[j], 2.0f);
      ++nudged;
    }
  }
  return out;
}

double best_ms(const mmu::VectorMatrix& m, const std::vector<float>& queries, int64_t nq, int64_t k, int64_t* check) {
  const auto t0 = Clock::now();
  const auto hits = mmu::exact_top_k(m, queries.data(), nq, k);
  const double ms = ms_since(t0);
  for (const auto& h : hits) *check += h.empty() ? -1 : h.back().id;  // keeps the call, shows the answer
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const std::vector<float> clean = synthetic_vectors(a.rows, a.dim, false, 0, 2027);
  const mmu::VectorMatrix clean_m{clean.data(), mmu::VectorType::kF32, a.rows, a.dim};
  std::fprintf(stderr, "exact batch of %lld queries x %lld rows x %lld dims, k %lld, %d threads, OPENBLAS_CORETYPE=%s, "
               "best of %lld\n",
               static_cast<long long>(a.queries), static_cast<long long>(a.rows), static_cast<long long>(a.dim),
               static_cast<long long>(a.k), omp_get_max_threads(),
               std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "(unset)",
               static_cast<long long>(a.runs));
  std::string json = "{\"rows\": " + std::to_string(a.rows) + ", \"dim\": " + std::to_string(a.dim) +
                     ", \"queries\": " + std::to_string(a.queries) + ", \"k\": " + std::to_string(a.k) +
                     ", \"threads\": " + std::to_string(omp_get_max_threads()) + ", \"fractions\": [";
  int64_t check = 0;
  for (size_t fi = 0; fi < a.fractions.size(); ++fi) {
    const int64_t f = a.fractions[fi];
    const std::vector<float> dup = with_duplicates(clean, a.rows, a.dim, f, a.near);
    const mmu::VectorMatrix dup_m{dup.data(), mmu::VectorType::kF32, a.rows, a.dim};
    std::vector<float> queries(static_cast<size_t>(a.queries * a.dim));
    int64_t equal_v = 0;
    for (int64_t j = 0; j < a.queries; ++j) {
      const float* row = &dup[static_cast<size_t>(j * (a.rows / a.queries) * a.dim)];
      std::copy(row, row + a.dim, &queries[static_cast<size_t>(j * a.dim)]);
      equal_v += std::memcmp(row, dup.data(), static_cast<size_t>(a.dim) * sizeof(float)) == 0;
    }
    std::vector<double> t_clean, t_dup;
    for (int64_t run = 0; run < a.runs; ++run) {
      t_clean.push_back(best_ms(clean_m, queries, a.queries, a.k, &check));
      t_dup.push_back(best_ms(dup_m, queries, a.queries, a.k, &check));
    }
    const double c = stats_of(t_clean).min, d = stats_of(t_dup).min;
    std::fprintf(stderr, "  %2lld%% duplicates (%lld queries equal to the duplicated vector): clean %.0f ms, "
                 "duplicated %.0f ms, ratio %.2f\n",
                 static_cast<long long>(f), static_cast<long long>(equal_v), c, d, d / c);
    json += std::string(fi ? ", " : "") + "{\"percent\": " + std::to_string(f) +
            ", \"queries_equal_to_duplicate\": " + std::to_string(equal_v) + ", \"clean\": " +
            stats_json(stats_of(t_clean)) + ", \"duplicated\": " + stats_json(stats_of(t_dup)) +
            ", \"ratio\": " + std::to_string(d / c) + "}";
  }
  std::printf("%s], \"checksum\": %lld}\n", json.c_str(), static_cast<long long>(check));
  return 0;
}
