// mmu_bench_make_store: a store of synthetic L2-normalised vectors, for timing
// search at scale (bench/vector_bench.py) without an ingest of real files.
//
//   mmu_bench_make_store --out DIR [--n 1000000] [--dim 512] [--kind uniform|clustered]
//                        [--clusters 1000] [--seed 1] [--space vec]
//
// uniform:   directions uniform on the sphere (normalised gaussians). In high
//            dimensions every pair is nearly orthogonal and the neighbours of a
//            point are barely nearer than the rest: the worst case for ANN indexes.
// clustered: gaussian clusters around random centres, with spreads varied over a
//            factor 4 and sizes varied (log-normal weights), so some clusters are
//            tight and dense, others wide and sparse; closer to real embeddings.
//
// Object i (catalog row i, vector row i) has id "obj<i>", a random sky
// position (rows sorted by sky key, as a build orders them) and one fake
// source file. Generation is seeded per block of rows, so the vectors do not depend on
// the number of threads.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench_stats.h"
#include "synthetic_vectors.h"
#include "mmu/error.h"
#include "mmu/sky.h"
#include "mmu/store.h"

namespace {

struct Args {
  std::string out, kind = "uniform", space = "vec";
  int64_t n = 1000000, dim = 512, clusters = 1000;
  uint64_t seed = 1;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "mmu_bench_make_store: " << why << "\n"
            << "usage: mmu_bench_make_store --out DIR [--n 1000000] [--dim 512] [--kind uniform|clustered]\n"
            << "                            [--clusters 1000] [--seed 1] [--space vec]\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  mmu::bench::walk_flags(argc, argv, usage, [&](const std::string& f, auto& value) {
    if (f == "--out") a.out = value();
    else if (f == "--n") a.n = std::atoll(value().c_str());
    else if (f == "--dim") a.dim = std::atoll(value().c_str());
    else if (f == "--kind") a.kind = value();
    else if (f == "--clusters") a.clusters = std::atoll(value().c_str());
    else if (f == "--seed") a.seed = std::strtoull(value().c_str(), nullptr, 10);
    else if (f == "--space") a.space = value();
    else return false;
    return true;
  });
  if (a.out.empty()) usage("--out is required");
  if (a.n < 1 || a.dim < 2 || a.clusters < 1) usage("--n >= 1, --dim >= 2 and --clusters >= 1 are required");
  if (a.kind != "uniform" && a.kind != "clustered") usage("--kind must be uniform or clustered");
  return a;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Random sky positions, sorted by their order-29 key as a real build orders rows.
std::vector<mmu::NewObject> make_objects(const Args& a, int64_t file_id) {
  std::mt19937_64 rng(a.seed ^ 0x5c7u);
  std::uniform_real_distribution<double> unit;
  std::vector<mmu::NewObject> objs(static_cast<size_t>(a.n));
  for (auto& o : objs) {
    o.ra = 360.0 * unit(rng);
    o.dec = std::asin(2.0 * unit(rng) - 1.0) * 180.0 / M_PI;
  }
#pragma omp parallel for
  for (int64_t i = 0; i < a.n; ++i) {
    objs[i].healpix = mmu::healpix_cell(objs[i].ra, objs[i].dec);
    objs[i].hpx_fine = mmu::healpix_fine(objs[i].ra, objs[i].dec);
  }
  std::sort(objs.begin(), objs.end(), [](const auto& x, const auto& y) { return x.hpx_fine < y.hpx_fine; });
  for (int64_t i = 0; i < a.n; ++i) {
    mmu::NewObject& o = objs[i];
    o.object_id = "obj" + std::to_string(i);
    o.survey = "synthetic";
    o.subset = a.kind;
    o.file_id = file_id;
    o.index_in_file = i;
    o.modality = mmu::Modality::kSpectrum;
  }
  return objs;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    auto t0 = std::chrono::steady_clock::now();
    const std::vector<float> vectors = mmu::bench::synthetic_vectors(a.n, a.dim, a.kind == "clustered", a.clusters, a.seed);
    std::printf("generated %lld x %lld %s vectors in %.1f s\n", static_cast<long long>(a.n),
                static_cast<long long>(a.dim), a.kind.c_str(), seconds_since(t0));

    t0 = std::chrono::steady_clock::now();
    mmu::StoreWriter w(a.out);
    mmu::SourceFile f;
    f.path = a.out + "/synthetic-" + a.kind + ".hdf5";  // never read: the catalog only names it
    f.dataset = "synthetic";
    f.subset = a.kind;
    const int64_t fid = w.add_file(f, mmu::Modality::kSpectrum, a.n);
    const int64_t first = w.add_objects(make_objects(a, fid));
    std::printf("catalog of %lld objects in %.1f s\n", static_cast<long long>(a.n), seconds_since(t0));

    t0 = std::chrono::steady_clock::now();
    std::vector<int64_t> rows(static_cast<size_t>(a.n));
    std::iota(rows.begin(), rows.end(), first);
    mmu::SpaceInfo info;
    info.name = a.space;
    info.modality = "spectrum";
    info.model = "synthetic-" + a.kind;
    info.version = "seed" + std::to_string(a.seed);
    info.dim = a.dim;
    w.add_space(info, rows, vectors.data(), "synthetic " + a.kind + " vectors, seed " + std::to_string(a.seed));
    w.commit();
    std::printf("space '%s' (vectors.f32 + index.faiss) written and committed in %.1f s\n", a.space.c_str(),
                seconds_since(t0));
    return 0;
  } catch (const mmu::Error& e) {
    std::cerr << "mmu_bench_make_store: " << e.what() << "\n";
    return 1;
  }
}
