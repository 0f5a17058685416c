// mmu_bench_batch_scan: batched exact queries against the machine's SGEMM
// rate (issue 19 point 1), in one run, on synthetic vectors held in memory.
//
//   mmu_bench_batch_scan [--rows 1000000] [--dim 512] [--queries 1000] [--k 50] [--runs 3] [--f16]
//
// The vectors are random unit rows (a fixed seed); the queries are stored rows
// spread over the matrix, as --like-file sends them. Each run times, one after
// the other so that load drifts touch all of them alike:
//   1. sgemm at the scan's shape: the product exact_top_k computes, in the
//      blocks it uses (exact_scan_shape), on the same OpenMP threads with
//      OpenBLAS single-threaded inside, no selection, no widening, no
//      canonical re-scoring;
//   2. sgemm on OpenBLAS's own threads: the same product in slices of
//      16,384 rows, one call each (the other way to spend the cores);
//   3. ours: exact_top_k over all queries, top-k selection and the canonical
//      re-score of the rows that can reach the top k included.
// Each figure is the best of --runs; the bound is the faster of 1 and 2 and
// the ratio is ours / bound, in GFLOP/s = 2 * queries * rows * dim / time.
// On a loaded machine wall time is shared with other processes, so each is
// also given per CPU second (process CPU time / threads), the same ratio
// seen from inside the cores we got.
// With --f16 the rows are stored as fp16 (as flat16 serves them): 1 and 2
// still multiply fp32 rows, so the ratio includes the widening.
//
// Prints one JSON object on stdout and a summary on stderr.
#include <dlfcn.h>
#include <omp.h>

#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "bench_stats.h"
#include "mmu/exact_search.h"

extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc);

namespace {

using namespace mmu::bench;

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Args : mmu::bench::ScanFlags {
  bool f16 = false;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "mmu_bench_batch_scan: " << why << "\n"
            << "usage: mmu_bench_batch_scan [--rows 1000000] [--dim 512] [--queries 1000] [--k 50] [--runs 3] [--f16]\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  walk_flags(argc, argv, usage, [&](const std::string& f, auto& value) {
    if (f == "--f16") return a.f16 = true;
    return a.take(f, value);
  });
  if (!a.valid())
    usage("--rows, --dim, --queries, --k, --runs must be >= 1 and --queries <= --rows");
  return a;
}

// Random unit rows, row r from its own generator so threads fill in any order.
void fill_unit_rows(float* out, int64_t rows, int64_t dim) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    uint64_t s = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(r + 1);
    float* row = out + r * dim;
    double norm = 0;
    for (int64_t j = 0; j < dim; ++j) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      row[j] = static_cast<float>(static_cast<double>(s >> 11) * 0x1.0p-53 * 2.0 - 1.0);
      norm += static_cast<double>(row[j]) * row[j];
    }
    const float inv = static_cast<float>(1.0 / std::sqrt(norm));
    for (int64_t j = 0; j < dim; ++j) row[j] *= inv;
  }
}

// C (nb x nq, column-major: query j's scores contiguous) = rows * queries^T, as the scan calls it.
void scores(const float* rows, int64_t nb, int64_t dim, const float* queries, int64_t nq, float* c) {
  const int m = static_cast<int>(nb), n = static_cast<int>(nq), kk = static_cast<int>(dim);
  const float one = 1.0f, zero = 0.0f;
  sgemm_("T", "N", &m, &n, &kk, &one, rows, &kk, queries, &kk, &zero, c, &m);
}

// 1: the scan's blocks and query tiles over our OpenMP threads, OpenBLAS on one thread each.
double sgemm_scan_shape_ms(const float* base, int64_t rows, int64_t dim, const float* queries, int64_t nq) {
  const mmu::ScanShape shape = mmu::exact_scan_shape(nq, dim);
  const int64_t n_blocks = (rows + shape.block_rows - 1) / shape.block_rows;
  const auto t0 = Clock::now();
#pragma omp parallel
  {
    omp_set_num_threads(1);
    std::vector<float> c(static_cast<size_t>(shape.block_rows * std::min(nq, 2 * shape.query_tile)));
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const int64_t first = b * shape.block_rows, nb = std::min(shape.block_rows, rows - first);
      // Tiles as the scan cuts them: the last one takes the remainder.
      const int64_t n_tiles = std::max<int64_t>(1, nq / shape.query_tile);
      for (int64_t tile = 0; tile < n_tiles; ++tile) {
        const int64_t q0 = tile * shape.query_tile, qn = tile + 1 < n_tiles ? shape.query_tile : nq - q0;
        scores(base + first * dim, nb, dim, queries + q0 * dim, qn, c.data());
      }
    }
  }
  return ms_since(t0);
}

// 2: OpenBLAS's own threads, one call per slice of rows.
double sgemm_openblas_threads_ms(const float* base, int64_t rows, int64_t dim, const float* queries, int64_t nq,
                                 std::vector<float>& c) {
  constexpr int64_t kSlice = 16384;
  c.resize(static_cast<size_t>(kSlice * nq));
  const auto t0 = Clock::now();
  for (int64_t first = 0; first < rows; first += kSlice)
    scores(base + first * dim, std::min(kSlice, rows - first), dim, queries, nq, c.data());
  return ms_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  // OpenBLAS names the kernels it chose (loaded behind libblas; absent from another BLAS).
  const auto corename = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  const std::string kernels = corename ? corename() : "not OpenBLAS";
  std::vector<float> base(static_cast<size_t>(a.rows * a.dim));
  fill_unit_rows(base.data(), a.rows, a.dim);
  std::vector<float> queries(static_cast<size_t>(a.queries * a.dim));
  for (int64_t j = 0; j < a.queries; ++j) {
    const int64_t r = j * (a.rows / a.queries);
    std::copy(&base[r * a.dim], &base[(r + 1) * a.dim], &queries[j * a.dim]);
  }
  std::vector<uint16_t> halves;
  mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, a.rows, a.dim};
  if (a.f16) {
    halves.resize(base.size());
    for (size_t i = 0; i < base.size(); ++i) halves[i] = mmu::float_to_half(base[i]);
    m = {halves.data(), mmu::VectorType::kF16, a.rows, a.dim};
  }

  const double gflop = 2.0 * static_cast<double>(a.queries) * static_cast<double>(a.rows) *
                       static_cast<double>(a.dim) * 1e-9;
  std::vector<double> t_shape, t_blas, t_ours, cpu_shape, cpu_blas, cpu_ours;
  std::vector<float> c;
  int64_t checksum = 0;
  for (int64_t run = 0; run < a.runs; ++run) {
    double c0 = cpu_seconds();
    t_shape.push_back(sgemm_scan_shape_ms(base.data(), a.rows, a.dim, queries.data(), a.queries));
    cpu_shape.push_back(cpu_seconds() - c0);
    c0 = cpu_seconds();
    t_blas.push_back(sgemm_openblas_threads_ms(base.data(), a.rows, a.dim, queries.data(), a.queries, c));
    cpu_blas.push_back(cpu_seconds() - c0);
    c0 = cpu_seconds();
    const auto t0 = Clock::now();
    const auto hits = mmu::exact_top_k(m, queries.data(), a.queries, a.k);
    t_ours.push_back(ms_since(t0));
    cpu_ours.push_back(cpu_seconds() - c0);
    for (const auto& h : hits) checksum += h.empty() ? -1 : h.front().id;  // keeps the call, shows the answer
  }
  const mmu::ScanShape shape = mmu::exact_scan_shape(a.queries, a.dim);
  // Queries per call as the scan cuts them: tiles of query_tile, the last one taking the remainder.
  const int64_t n_tiles = std::max<int64_t>(1, a.queries / shape.query_tile);
  const int64_t tile = n_tiles == 1 ? a.queries : shape.query_tile, last_tile = a.queries - (n_tiles - 1) * tile;
  const double shape_ms = stats_of(t_shape).min, blas_ms = stats_of(t_blas).min, ours_ms = stats_of(t_ours).min;
  const double shape_gf = gflop / (shape_ms * 1e-3), blas_gf = gflop / (blas_ms * 1e-3), ours_gf = gflop / (ours_ms * 1e-3);
  const double bound = std::max(shape_gf, blas_gf);
  const double threads = omp_get_max_threads();
  const double cpu_shape_gf = gflop * threads / stats_of(cpu_shape).min;
  const double cpu_blas_gf = gflop * threads / stats_of(cpu_blas).min;
  const double cpu_ours_gf = gflop * threads / stats_of(cpu_ours).min;
  const double cpu_bound = std::max(cpu_shape_gf, cpu_blas_gf);

  std::fprintf(stderr,
               "batch scan %lld queries x %lld rows x %lld dims (%s), k %lld, %d threads, OPENBLAS_CORETYPE=%s (kernels: %s), "
               "best of %lld\n"
               "  sgemm at the scan's shape (%lld rows x %lld queries per call, last %lld): %.0f ms, %.1f GFLOP/s\n"
               "  sgemm on OpenBLAS's threads (16384 rows per call):            %.0f ms, %.1f GFLOP/s\n"
               "  ours (exact_top_k, selection included):  %.0f ms, %.1f queries/s, %.1f GFLOP/s = %.1f%% of the "
               "bound\n"
               "  per CPU second: sgemm at the scan's shape %.1f, on OpenBLAS's threads %.1f, ours %.1f GFLOP/s = "
               "%.1f%% of the bound\n",
               static_cast<long long>(a.queries), static_cast<long long>(a.rows), static_cast<long long>(a.dim),
               a.f16 ? "fp16" : "fp32", static_cast<long long>(a.k), omp_get_max_threads(),
               coretype ? coretype : "(unset)", kernels.c_str(), static_cast<long long>(a.runs),
               static_cast<long long>(shape.block_rows), static_cast<long long>(tile),
               static_cast<long long>(last_tile), shape_ms, shape_gf,
               blas_ms, blas_gf, ours_ms, a.queries / (ours_ms * 1e-3), ours_gf, 100.0 * ours_gf / bound, cpu_shape_gf,
               cpu_blas_gf, cpu_ours_gf, 100.0 * cpu_ours_gf / cpu_bound);
  std::printf(
      "{\"rows\": %lld, \"dim\": %lld, \"queries\": %lld, \"k\": %lld, \"f16\": %s, \"threads\": %d, "
      "\"openblas_coretype\": \"%s\", \"openblas_kernels\": \"%s\", \"block_rows\": %lld, \"query_tile\": %lld, \"sgemm_scan_shape\": %s, "
      "\"sgemm_openblas_threads\": %s, \"ours\": %s, \"sgemm_scan_shape_gflops\": %.2f, "
      "\"sgemm_openblas_threads_gflops\": %.2f, \"ours_gflops\": %.2f, \"ours_queries_per_s\": %.2f, "
      "\"ratio_to_bound\": %.4f, \"cpu_sgemm_scan_shape_gflops\": %.2f, "
      "\"cpu_sgemm_openblas_threads_gflops\": %.2f, \"cpu_ours_gflops\": %.2f, \"cpu_ratio_to_bound\": %.4f, \"checksum\": %lld}\n",
      static_cast<long long>(a.rows), static_cast<long long>(a.dim), static_cast<long long>(a.queries),
      static_cast<long long>(a.k), a.f16 ? "true" : "false", omp_get_max_threads(), coretype ? coretype : "", kernels.c_str(),
      static_cast<long long>(shape.block_rows), static_cast<long long>(tile),
      stats_json(stats_of(t_shape)).c_str(), stats_json(stats_of(t_blas)).c_str(), stats_json(stats_of(t_ours)).c_str(),
      shape_gf, blas_gf, ours_gf, a.queries / (ours_ms * 1e-3), ours_gf / bound, cpu_shape_gf, cpu_blas_gf,
      cpu_ours_gf, cpu_ours_gf / cpu_bound, static_cast<long long>(checksum));
  return 0;
}
