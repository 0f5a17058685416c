// mmu_bench_device: warm, in-process timings of exact search on a LibTorch
// device (--device cuda, or torch-cpu) against the own CPU scan, on the same
// store and queries, with the two answers compared (bench/gpu_search_bench.py
// drives it).
//
//   mmu_bench_device --store DIR --space NAME [--device cuda] [--k 50] [--queries 1000]
//                    [--single 50] [--blocks 1,256,1000] [--fp16]
//
// Queries are stored vectors at --queries rows spread evenly over the space.
//   1. first device call: puts the vectors on the device (once per process) and
//      runs one query; includes LibTorch's and CUDA's start-up.
//   2. exact, one query: --single one-query calls, CPU scan and device.
//   3. exact, batched: all queries in blocks of each --blocks size, both.
//   4. agreement: for the first block size's answers, the fraction of the CPU
//      scan's top-k rows the device also returns, and the largest score
//      difference at equal rank.
// --fp16 searches the flat16 copy (the space must be reindexed --kind flat16).
//
// Prints one JSON object on stdout and a summary on stderr.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "bench_stats.h"
#include "mmu/device_search.h"
#include "mmu/error.h"
#include "mmu/store.h"

namespace {

using namespace mmu::bench;  // the bench programs' clock, stats and flag helpers

struct Args {
  std::string store, space, device = "cuda";
  int64_t k = 50, queries = 1000, single = 50;
  std::vector<int64_t> blocks{1, 256, 1000};
  bool fp16 = false;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "mmu_bench_device: " << why << "\n"
            << "usage: mmu_bench_device --store DIR --space NAME [--device cuda|torch-cpu] [--k 50] [--queries 1000]\n"
            << "                        [--single 50] [--blocks 1,256,1000] [--fp16]\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--fp16") {
      a.fp16 = true;
      std::swap(argv[i], argv[argc - 1]);  // walk_flags sees flags with values only
      --argc;
      --i;
    }
  mmu::bench::walk_flags(argc, argv, usage, [&](const std::string& f, auto& value) {
    if (f == "--store") a.store = value();
    else if (f == "--space") a.space = value();
    else if (f == "--device") a.device = value();
    else if (f == "--k") a.k = std::atoll(value().c_str());
    else if (f == "--queries") a.queries = std::atoll(value().c_str());
    else if (f == "--single") a.single = std::atoll(value().c_str());
    else if (f == "--blocks") a.blocks = parse_list(value());
    else return false;
    return true;
  });
  if (a.store.empty() || a.space.empty()) usage("--store and --space are required");
  if (a.k < 1 || a.queries < 1 || a.single < 1 || a.blocks.empty()) usage("--k, --queries, --single >= 1");
  for (int64_t b : a.blocks)
    if (b < 1) usage("--blocks sizes must be >= 1");
  return a;
}

using Answers = std::vector<std::vector<mmu::Hit>>;

struct Timed {
  Stats one;
  std::vector<std::pair<int64_t, double>> block_qps;
  Answers batch;  // answers of the first block size
};

template <typename Search>
Timed time_search(const Search& search, const std::vector<float>& queries, int64_t dim, int64_t nq, const Args& a) {
  Timed t;
  const int64_t n_single = std::min(a.single, nq);
  for (int64_t i = 0; i < std::min<int64_t>(3, n_single); ++i) search(&queries[i * dim], 1);  // warm-up
  std::vector<double> ms;
  for (int64_t i = 0; i < n_single; ++i) {
    const auto t0 = Clock::now();
    search(&queries[i * dim], 1);
    ms.push_back(ms_since(t0));
  }
  t.one = stats_of(ms);
  for (int64_t block : a.blocks) {
    Answers answers;
    const auto t0 = Clock::now();
    for (int64_t first = 0; first < nq; first += block) {
      auto part = search(&queries[first * dim], std::min(block, nq - first));
      for (auto& h : part) answers.push_back(std::move(h));
    }
    t.block_qps.emplace_back(block, static_cast<double>(nq) / (ms_since(t0) / 1e3));
    if (t.batch.empty()) t.batch = std::move(answers);
  }
  return t;
}

std::string qps_json(const std::vector<std::pair<int64_t, double>>& v) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < v.size(); ++i) o << (i ? ", " : "") << "{\"block\": " << v[i].first << ", \"qps\": " << v[i].second << "}";
  return o.str() + "]";
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    auto store = mmu::Store::open(a.store);
    const std::string space = store->resolve_space_name(a.space);
    const mmu::SpaceInfo info = store->space(space);
    const int64_t dim = info.dim, nq = std::min(a.queries, info.count);
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < nq; ++i) rows.push_back(i * info.count / nq);
    const std::vector<float> queries = store->vectors_at(space, rows);

    mmu::SearchOptions cpu;
    cpu.exact = !a.fp16;  // exact: fp32 rows even under an ANN index; fp16: the flat16 copy
    mmu::SearchOptions dev = cpu;
    dev.device = mmu::parse_search_device(a.device);
    auto search = [&](const mmu::SearchOptions& o) {
      return [&store, &space, &a, o](const float* q, int64_t n) { return store->search(space, q, n, a.k, nullptr, o); };
    };
    const std::string cpu_method = store->search_method(space, false, cpu);
    const std::string dev_method = store->search_method(space, false, dev);

    const auto t0 = Clock::now();
    search(dev)(queries.data(), 1);
    const double first_ms = ms_since(t0);
    const Timed c = time_search(search(cpu), queries, dim, nq, a);
    const Timed d = time_search(search(dev), queries, dim, nq, a);

    double found = 0, want = 0, max_diff = 0;
    for (size_t i = 0; i < c.batch.size(); ++i) {
      std::unordered_set<int64_t> ids;
      for (const mmu::Hit& h : c.batch[i]) ids.insert(h.id);
      for (const mmu::Hit& h : d.batch[i]) found += static_cast<double>(ids.count(h.id));
      want += static_cast<double>(c.batch[i].size());
      for (size_t j = 0; j < std::min(c.batch[i].size(), d.batch[i].size()); ++j)
        max_diff = std::max(max_diff, static_cast<double>(std::fabs(c.batch[i][j].score - d.batch[i][j].score)));
    }
    const double agreement = found / std::max(want, 1.0);

    std::cerr << "mmu_bench_device  " << space << " " << info.count << " x " << dim << "  k=" << a.k
              << "  queries=" << nq << "\n  cpu:    " << cpu_method << "\n  device: " << dev_method << "\n";
    char line[256];
    std::snprintf(line, sizeof(line), "  first device call (upload + one query) %.1f ms\n", first_ms);
    std::cerr << line << "  cpu, one query      " << stats_text(c.one) << "\n"
              << "  device, one query   " << stats_text(d.one) << "\n";
    for (size_t i = 0; i < a.blocks.size(); ++i) {
      std::snprintf(line, sizeof(line), "  blocks of %lld: cpu %.1f queries/s, device %.1f queries/s (%.1fx)\n",
                    static_cast<long long>(a.blocks[i]), c.block_qps[i].second, d.block_qps[i].second,
                    d.block_qps[i].second / std::max(c.block_qps[i].second, 1e-9));
      std::cerr << line;
    }
    std::snprintf(line, sizeof(line), "  agreement with the cpu scan: %.6f of top-%lld rows, max score difference %.2e\n",
                  agreement, static_cast<long long>(a.k), max_diff);
    std::cerr << line;

    std::cout << "{\"space\": \"" << space << "\", \"count\": " << info.count << ", \"dim\": " << dim
              << ", \"k\": " << a.k << ", \"queries\": " << nq << ", \"device\": \"" << a.device
              << "\", \"cpu_method\": \"" << cpu_method << "\", \"device_method\": \"" << dev_method
              << "\", \"first_device_call_ms\": " << first_ms << ", \"cpu_one\": " << stats_json(c.one)
              << ", \"device_one\": " << stats_json(d.one) << ", \"cpu_batch\": " << qps_json(c.block_qps)
              << ", \"device_batch\": " << qps_json(d.block_qps) << ", \"agreement\": " << agreement
              << ", \"max_score_diff\": " << max_diff << "}\n";
    return 0;
  } catch (const mmu::Error& e) {
    std::cerr << "mmu_bench_device: " << e.what() << "\n";
    return 1;
  }
}
