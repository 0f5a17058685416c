// mmu_bench_vectors: warm, in-process timings of one space's search at scale,
// with the machine's read bandwidth measured in the same run.
//
//   mmu_bench_vectors --store DIR --space NAME --query-rows FILE [--k 50] [--single 50]
//                     [--blocks 256,1000] [--ann-queries 200] [--nprobe 1,2,4] [--ef 64,128]
//                     [--truth-out FILE]
//
// FILE holds vector rows, one per line (the stored vectors are the queries, as
// for --like). All of them form the batch; the first --single are timed one
// at a time, the first --ann-queries against the space's ANN index.
//
//   1. bandwidth: the mapped vectors.f32 summed by all OpenMP threads and by
//      one, best of 5 passes after a warm-up pass; floor = file bytes / bandwidth,
//      the least time any exact scan of the file can take.
//   2. exact, one query: Store::search(nq = 1, exact).
//   3. exact, batched: all queries through Store::search in blocks of each
//      --blocks size; the first block size's answers are the recall truth.
//   4. ANN (when index.json names ivf or hnsw): for each --nprobe / --ef value,
//      one-query latency and recall@k over the first --ann-queries, and the
//      throughput of those queries in one call.
//
// --truth-out writes the exact answers' vector rows (queries x k int64, -1
// padded) for the Python peers' agreement and recall checks.
//
// Prints one JSON object on stdout (bench/vector_bench.py reads it) and a
// summary on stderr.
#include <fcntl.h>
#include <omp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "bench_stats.h"
#include "mmu/error.h"
#include "mmu/space_index.h"
#include "mmu/store.h"

namespace {

using namespace mmu::bench;  // the bench programs' clock, stats and flag helpers

struct Args {
  std::string store, space, query_rows, truth_out;
  int64_t k = 50, single = 50, ann_queries = 200;
  std::vector<int64_t> blocks{256, 1000}, nprobe, ef;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "mmu_bench_vectors: " << why << "\n"
            << "usage: mmu_bench_vectors --store DIR --space NAME --query-rows FILE [--k 50] [--single 50]\n"
            << "                         [--blocks 256,1000] [--ann-queries 200] [--nprobe 1,2,4] [--ef 64,128]\n"
            << "                         [--truth-out FILE]\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  mmu::bench::walk_flags(argc, argv, usage, [&](const std::string& f, auto& value) {
    if (f == "--store") a.store = value();
    else if (f == "--space") a.space = value();
    else if (f == "--query-rows") a.query_rows = value();
    else if (f == "--truth-out") a.truth_out = value();
    else if (f == "--k") a.k = std::atoll(value().c_str());
    else if (f == "--single") a.single = std::atoll(value().c_str());
    else if (f == "--ann-queries") a.ann_queries = std::atoll(value().c_str());
    else if (f == "--blocks") a.blocks = parse_list(value());
    else if (f == "--nprobe") a.nprobe = parse_list(value());
    else if (f == "--ef") a.ef = parse_list(value());
    else return false;
    return true;
  });
  if (a.store.empty() || a.space.empty() || a.query_rows.empty()) usage("--store, --space and --query-rows are required");
  if (a.k < 1 || a.single < 1 || a.ann_queries < 1 || a.blocks.empty()) usage("--k, --single, --ann-queries >= 1");
  for (int64_t b : a.blocks)
    if (b < 1) usage("--blocks sizes must be >= 1");
  return a;
}

std::vector<int64_t> read_rows(const std::string& path, int64_t count) {
  std::ifstream in(path);
  if (!in) usage("cannot read '" + path + "'");
  std::vector<int64_t> rows;
  for (int64_t r; in >> r;) {
    if (r < 0 || r >= count) usage("row " + std::to_string(r) + " of '" + path + "' is not a vector row");
    rows.push_back(r);
  }
  if (rows.empty()) usage("no rows in '" + path + "'");
  return rows;
}

// A read-only mapping of a whole file (the same page-cache pages the store maps).
class Mapping {
 public:
  explicit Mapping(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw mmu::IoError(path, "open", errno);
    struct stat st {};
    ::fstat(fd, &st);
    size_ = static_cast<size_t>(st.st_size);
    data_ = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (data_ == MAP_FAILED) throw mmu::IoError(path, "mmap", errno);
  }
  ~Mapping() { ::munmap(data_, size_); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  const float* floats() const { return static_cast<const float*>(data_); }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};


void write_ids(const std::string& path, const std::vector<std::vector<mmu::Hit>>& answers, int64_t k) {
  std::vector<int64_t> ids(answers.size() * static_cast<size_t>(k), -1);
  for (size_t i = 0; i < answers.size(); ++i)
    for (size_t j = 0; j < answers[i].size() && j < static_cast<size_t>(k); ++j) ids[i * k + j] = answers[i][j].id;
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(ids.data()), static_cast<std::streamsize>(ids.size() * sizeof(int64_t)));
  if (!out) throw mmu::IoError(path, "write", errno);
}

struct Bandwidth {
  int threads = 0;
  double best_gbs = 0, median_gbs = 0;
};

// Read bandwidth of summing the whole mapping with `threads` threads, each a
// contiguous share, as the exact scan's threads take row blocks.
Bandwidth read_bandwidth(const Mapping& m, int threads, int passes, double* checksum) {
  const size_t n = m.size() / sizeof(float);
  std::vector<double> gbs;
  for (int pass = 0; pass <= passes; ++pass) {  // pass 0 warms page tables and caches
    double total = 0;
    const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const size_t t = static_cast<size_t>(omp_get_thread_num()), nt = static_cast<size_t>(omp_get_num_threads());
      const size_t first = n * t / nt, last = n * (t + 1) / nt;
      total += sum_floats(m.floats() + first, last - first);
    }
    const double ms = ms_since(t0);
    *checksum += total;
    if (pass > 0) gbs.push_back(static_cast<double>(m.size()) / (ms * 1e6));
  }
  std::sort(gbs.begin(), gbs.end());
  return {threads, gbs.back(), gbs[gbs.size() / 2]};
}

std::string bandwidth_json(const Bandwidth& b) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "{\"threads\": %d, \"best_gbs\": %.3f, \"median_gbs\": %.3f}", b.threads,
                b.best_gbs, b.median_gbs);
  return buf;
}

// Mean fraction of truth[i]'s ids that got[i] also returns.
double recall(const std::vector<std::vector<mmu::Hit>>& truth, const std::vector<std::vector<mmu::Hit>>& got) {
  double hits = 0, want = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    std::unordered_set<int64_t> ids;
    for (const mmu::Hit& h : truth[i]) ids.insert(h.id);
    for (const mmu::Hit& h : got[i]) hits += static_cast<double>(ids.count(h.id));
    want += static_cast<double>(truth[i].size());
  }
  return hits / std::max(want, 1.0);
}

struct Timed {
  Stats one;                              // one query per call
  double batch_qps = 0;                   // all queries in one call
  std::vector<std::vector<mmu::Hit>> first_answers;  // answers of the one-query calls
};

// Times `n_single` one-query calls after a few untimed ones, and (when
// batch_nq > 0) one call with all batch_nq queries.
template <typename Search>
Timed time_search(const Search& search, const std::vector<float>& queries, int64_t dim, int64_t n_single,
                  int64_t batch_nq) {
  Timed t;
  for (int64_t i = 0; i < std::min<int64_t>(3, n_single); ++i) search(&queries[i * dim], 1);
  std::vector<double> ms;
  for (int64_t i = 0; i < n_single; ++i) {
    const auto t0 = Clock::now();
    auto hits = search(&queries[i * dim], 1);
    ms.push_back(ms_since(t0));
    t.first_answers.push_back(std::move(hits.at(0)));
  }
  t.one = stats_of(ms);
  if (batch_nq > 0) {
    const auto t0 = Clock::now();
    search(queries.data(), batch_nq);
    t.batch_qps = static_cast<double>(batch_nq) / (ms_since(t0) / 1e3);
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  try {
    auto store = mmu::Store::open(a.store);
    const std::string space = store->resolve_space_name(a.space);
    const mmu::SpaceInfo info = store->space(space);
    const int64_t dim = info.dim;
    const std::vector<int64_t> rows = read_rows(a.query_rows, info.count);
    const int64_t nq = static_cast<int64_t>(rows.size());
    const int64_t n_single = std::min(a.single, nq), n_ann = std::min(a.ann_queries, nq);

    const Mapping vectors(store->space_dir(space) + "/vectors.f32");
    std::vector<float> queries(static_cast<size_t>(nq * dim));
    for (int64_t i = 0; i < nq; ++i) std::copy_n(vectors.floats() + rows[i] * dim, dim, &queries[i * dim]);

    double checksum = 0;
    const int threads = omp_get_max_threads();
    const Bandwidth bw_all = read_bandwidth(vectors, threads, 5, &checksum);
    const Bandwidth bw_one = read_bandwidth(vectors, 1, 3, &checksum);
    const double floor_ms = static_cast<double>(vectors.size()) / (bw_all.best_gbs * 1e6);

    mmu::SearchOptions exact_opts;
    exact_opts.exact = true;
    auto exact = [&](const float* q, int64_t n) { return store->search(space, q, n, a.k, nullptr, exact_opts); };
    const Timed one = time_search(exact, queries, dim, n_single, 0);

    std::vector<std::vector<mmu::Hit>> truth;
    std::vector<std::pair<int64_t, double>> block_qps;
    for (int64_t block : a.blocks) {
      const auto t0 = Clock::now();
      std::vector<std::vector<mmu::Hit>> answers;
      for (int64_t first = 0; first < nq; first += block) {
        auto part = exact(&queries[first * dim], std::min(block, nq - first));
        for (auto& h : part) answers.push_back(std::move(h));
      }
      block_qps.emplace_back(block, static_cast<double>(nq) / (ms_since(t0) / 1e3));
      if (truth.empty()) truth = std::move(answers);
    }
    if (!a.truth_out.empty()) write_ids(a.truth_out, truth, a.k);
    // The one-query scan and the batched scan must agree (same engine, same order of ties).
    const std::vector<std::vector<mmu::Hit>> truth_single(truth.begin(), truth.begin() + n_single);
    const double single_vs_batch = recall(truth_single, one.first_answers);

    const mmu::IndexRecord rec = mmu::read_index_record(store->space_dir(space));
    const bool ivf = rec.spec.kind == mmu::IndexKind::kIvf, hnsw = rec.spec.kind == mmu::IndexKind::kHnsw;
    std::vector<int64_t> settings = ivf ? a.nprobe : hnsw ? a.ef : std::vector<int64_t>{};
    if ((ivf || hnsw) && settings.empty()) settings.push_back(ivf ? rec.spec.nprobe : rec.spec.ef_search);
    std::ostringstream ann_json;
    const std::vector<std::vector<mmu::Hit>> truth_ann(truth.begin(), truth.begin() + n_ann);
    std::cerr << "mmu_bench_vectors  " << space << " " << info.count << " x " << dim << "  k=" << a.k
              << "  threads=" << threads << "  OPENBLAS_CORETYPE=" << (coretype ? coretype : "(unset)") << "\n";
    char line[256];
    std::snprintf(line, sizeof(line),
                  "  read bandwidth %.1f GB/s (%d threads), %.1f GB/s (1 thread); floor %.1f ms per scan of %.0f MB\n",
                  bw_all.best_gbs, threads, bw_one.best_gbs, floor_ms, static_cast<double>(vectors.size()) / 1e6);
    std::cerr << line << "  exact, one query   " << stats_text(one.one) << "\n";
    for (const auto& [block, qps] : block_qps)
      std::cerr << "  exact, " << nq << " queries in blocks of " << block << ": " << qps << " queries/s\n";
    for (size_t i = 0; i < settings.size(); ++i) {
      mmu::SearchOptions o;
      (ivf ? o.nprobe : o.ef_search) = settings[i];
      auto ann = [&](const float* q, int64_t n) { return store->search(space, q, n, a.k, nullptr, o); };
      const Timed t = time_search(ann, queries, dim, n_ann, n_ann);
      const double r = recall(truth_ann, t.first_answers);
      ann_json << (i ? ", " : "") << "{\"" << (ivf ? "nprobe" : "ef_search") << "\": " << settings[i]
               << ", \"recall\": " << r << ", \"one\": " << stats_json(t.one) << ", \"batch_qps\": " << t.batch_qps
               << "}";
      std::snprintf(line, sizeof(line), "  %s %s=%lld: recall@%lld %.4f, one query median %.3f ms (%.1fx exact), %.0f queries/s batched\n",
                    ivf ? "ivf" : "hnsw", ivf ? "nprobe" : "efSearch", static_cast<long long>(settings[i]),
                    static_cast<long long>(a.k), r, t.one.median, one.one.median / std::max(t.one.median, 1e-9),
                    t.batch_qps);
      std::cerr << line;
    }

    std::cout << "{\"space\": \"" << space << "\", \"count\": " << info.count << ", \"dim\": " << dim
              << ", \"k\": " << a.k << ", \"queries\": " << nq << ", \"threads\": " << threads
              << ", \"openblas_coretype\": \"" << (coretype ? coretype : "") << "\", \"bytes\": " << vectors.size()
              << ", \"bandwidth\": " << bandwidth_json(bw_all) << ", \"bandwidth_1thread\": " << bandwidth_json(bw_one)
              << ", \"floor_ms\": " << floor_ms << ", \"exact_one\": " << stats_json(one.one)
              << ", \"single_vs_batch_agreement\": " << single_vs_batch << ", \"exact_batch\": [";
    for (size_t i = 0; i < block_qps.size(); ++i)
      std::cout << (i ? ", " : "") << "{\"block\": " << block_qps[i].first << ", \"qps\": " << block_qps[i].second << "}";
    std::cout << "], \"index\": \"" << mmu::describe_index(rec.spec) << "\", \"index_kind\": \""
              << mmu::index_kind_name(rec.spec.kind) << "\", \"ann_queries\": " << n_ann << ", \"ann\": ["
              << ann_json.str() << "], \"checksum\": " << checksum << "}\n";
    return 0;
  } catch (const mmu::Error& e) {
    std::cerr << "mmu_bench_vectors: " << e.what() << "\n";
    return 1;
  }
}
