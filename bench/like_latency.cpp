// mmu_bench_like: warm, in-process latency of mmu::search_like.
//
//   mmu_bench_like --store DIR --ids FILE [--k 50] [--warmup 20] [--repeat 1] [--json]
//
// Opens the store once (mmu::Store::open), then runs search_like for every id of
// FILE (one per line: "object_id" or "object_id,survey"; blank lines and lines
// starting with '#' are skipped), timing each call alone. The first --warmup
// queries run once untimed so that page cache, SQLite cache and the OpenMP pool
// are warm. Reports median / p90 / mean / min / max per query in ms.
//
// It then times the parts of a query alone, so the report can say where the
// time goes: the Store calls search_like makes (find_by_id, spaces_of_row,
// vector_of, rows() of k rows), and on each space's index.faiss
// faiss::read_index (search_like reloads the index on every call) and a k+1
// search of an already loaded index.
#include <faiss/Index.h>
#include <faiss/index_io.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "bench_stats.h"
#include "mmu/error.h"
#include "mmu/query.h"
#include "mmu/store.h"

namespace {

using namespace mmu::bench;  // the bench programs' clock, stats and flag helpers

struct Args {
  std::string store, ids;
  int64_t k = 50;
  int warmup = 20;
  int repeat = 1;
  bool json = false;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "mmu_bench_like: " << why << "\n"
            << "usage: mmu_bench_like --store DIR --ids FILE [--k 50] [--warmup 20] [--repeat 1] [--json]\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  mmu::bench::walk_flags(argc, argv, usage, [&](const std::string& f, auto& value) {
    if (f == "--store") a.store = value();
    else if (f == "--ids") a.ids = value();
    else if (f == "--k") a.k = std::atoll(value().c_str());
    else if (f == "--warmup") a.warmup = std::atoi(value().c_str());
    else if (f == "--repeat") a.repeat = std::atoi(value().c_str());
    else if (f == "--json") a.json = true;
    else return false;
    return true;
  });
  if (a.store.empty() || a.ids.empty()) usage("--store and --ids are required");
  if (a.k < 1 || a.repeat < 1 || a.warmup < 0) usage("--k and --repeat must be >= 1, --warmup >= 0");
  return a;
}

std::vector<mmu::LikeQuery> read_queries(const std::string& path, int64_t k) {
  std::ifstream in(path);
  if (!in) usage("cannot read ids file '" + path + "'");
  std::vector<mmu::LikeQuery> out;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    mmu::LikeQuery q;
    q.k = k;
    const size_t comma = line.find(',');
    q.like = {line.substr(0, comma)};
    if (comma != std::string::npos) q.survey = line.substr(comma + 1);
    out.push_back(q);
  }
  if (out.empty()) usage("no ids in '" + path + "'");
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  const char* omp = std::getenv("OMP_NUM_THREADS");
  try {
    const std::vector<mmu::LikeQuery> queries = read_queries(a.ids, a.k);

    const auto t_open = Clock::now();
    auto store = mmu::Store::open(a.store);
    const double open_ms = ms_since(t_open);

    // Warm-up: page cache, SQLite page cache, OpenMP thread pool.
    const size_t nwarm = std::min(queries.size(), static_cast<size_t>(a.warmup));
    size_t checksum = 0;
    for (size_t i = 0; i < nwarm; ++i) checksum += mmu::search_like(*store, queries[i]).neighbors.size();

    std::vector<double> per_query;
    per_query.reserve(queries.size() * a.repeat);
    size_t short_results = 0;
    for (int r = 0; r < a.repeat; ++r) {
      for (const auto& q : queries) {
        const auto t0 = Clock::now();
        const mmu::LikeResult res = mmu::search_like(*store, q);
        per_query.push_back(ms_since(t0));
        checksum += res.neighbors.size();
        if (static_cast<int64_t>(res.neighbors.size()) < q.k) ++short_results;
      }
    }
    const Stats like = stats_of(per_query);

    // Store calls a query makes (see src/search/query.cpp), each timed alone over the
    // same ids: find_by_id, spaces_of_row, vector_of, and rows() for the k
    // neighbours (the k rows after the query's own row stand in for them).
    std::vector<double> t_find, t_spaces, t_vector, t_rows;
    for (const auto& q : queries) {
      auto t0 = Clock::now();
      const std::vector<mmu::CatalogRow> found = store->find_by_id(q.like.front());
      t_find.push_back(ms_since(t0));
      if (found.empty()) continue;
      const mmu::CatalogRow& obj = found.front();
      t0 = Clock::now();
      const std::vector<std::string> sp = store->spaces_of_row(obj.row);
      t_spaces.push_back(ms_since(t0));
      if (sp.empty()) continue;
      t0 = Clock::now();
      checksum += store->vector_of(sp.front(), obj.row).size();
      t_vector.push_back(ms_since(t0));
      std::vector<int64_t> rows;
      for (int64_t r = 0; r < a.k && r < store->num_objects(); ++r) rows.push_back((obj.row + 1 + r) % store->num_objects());
      t0 = Clock::now();
      checksum += store->rows(rows).size();
      t_rows.push_back(ms_since(t0));
    }
    const Stats s_find = stats_of(t_find), s_spaces = stats_of(t_spaces), s_vector = stats_of(t_vector),
                s_rows = stats_of(t_rows);

    // Components: reloading each space's index, and searching a loaded one.
    struct Part {
      std::string space;
      int64_t count = 0, dim = 0;
      Stats load, search;
    };
    std::vector<Part> parts;
    for (const mmu::SpaceInfo& info : store->spaces()) {
      Part p;
      p.space = info.name;
      p.count = info.count;
      p.dim = info.dim;
      const std::string path = store->space_dir(info.name) + "/index.faiss";
      std::vector<double> load_ms, search_ms;
      std::unique_ptr<faiss::Index> index;
      for (int i = 0; i < 30; ++i) {
        const auto t0 = Clock::now();
        index.reset(faiss::read_index(path.c_str()));
        load_ms.push_back(ms_since(t0));
      }
      const int64_t kk = std::min<int64_t>(a.k + 1, index->ntotal);
      std::vector<float> scores(kk);
      std::vector<faiss::Index::idx_t> ids(kk);
      // Query vectors: the space's own stored vectors (vectors.f32), at an even stride.
      const std::string vpath = store->space_dir(info.name) + "/vectors.f32";
      std::ifstream vf(vpath, std::ios::binary);
      std::vector<float> vectors(static_cast<size_t>(info.count * info.dim));
      vf.read(reinterpret_cast<char*>(vectors.data()), static_cast<std::streamsize>(vectors.size() * sizeof(float)));
      if (!vf) throw mmu::FormatError("cannot read " + std::to_string(vectors.size()) + " floats from '" + vpath + "'");
      const int64_t nq = std::min<int64_t>(200, info.count);
      for (int64_t i = 0; i < nq + 20; ++i) {  // the first 20 are warm-up
        const int64_t vrow = ((i % nq) * info.count) / nq;
        const auto t0 = Clock::now();
        index->search(1, vectors.data() + vrow * info.dim, kk, scores.data(), ids.data());
        if (i >= 20) search_ms.push_back(ms_since(t0));
      }
      p.load = stats_of(load_ms);
      p.search = stats_of(search_ms);
      parts.push_back(p);
    }

    if (a.json) {
      std::cout << "{\"store\": \"" << a.store << "\", \"k\": " << a.k << ", \"queries\": " << queries.size()
                << ", \"repeat\": " << a.repeat << ", \"warmup\": " << nwarm << ", \"open_ms\": " << open_ms
                << ", \"short_results\": " << short_results << ", \"checksum\": " << checksum
                << ", \"openblas_coretype\": \"" << (coretype ? coretype : "") << "\""
                << ", \"omp_num_threads\": \"" << (omp ? omp : "") << "\""
                << ", \"like\": " << stats_json(like) << ", \"store_calls\": {\"find_by_id\": "
                << stats_json(s_find) << ", \"spaces_of_row\": " << stats_json(s_spaces)
                << ", \"vector_of\": " << stats_json(s_vector) << ", \"rows_k\": " << stats_json(s_rows)
                << "}, \"components\": [";
      for (size_t i = 0; i < parts.size(); ++i) {
        const Part& p = parts[i];
        std::cout << (i ? ", " : "") << "{\"space\": \"" << p.space << "\", \"count\": " << p.count
                  << ", \"dim\": " << p.dim << ", \"read_index\": " << stats_json(p.load)
                  << ", \"search_loaded\": " << stats_json(p.search) << "}";
      }
      std::cout << "]}\n";
    } else {
      std::cout << "mmu_bench_like  store " << a.store << "  k=" << a.k << "  OPENBLAS_CORETYPE="
                << (coretype ? coretype : "(unset)") << "  OMP_NUM_THREADS=" << (omp ? omp : "(unset)") << "\n"
                << "  Store::open         " << open_ms << " ms (once)\n"
                << "  search_like (warm)  " << stats_text(like) << "\n"
                << "  its Store calls, each alone:\n"
                << "    find_by_id             " << stats_text(s_find) << "\n"
                << "    spaces_of_row          " << stats_text(s_spaces) << "\n"
                << "    vector_of              " << stats_text(s_vector) << "\n"
                << "    rows (k rows)          " << stats_text(s_rows) << "\n";
      for (const Part& p : parts) {
        std::cout << "  space " << p.space << " (" << p.count << " x " << p.dim << ")\n"
                  << "    faiss::read_index      " << stats_text(p.load) << "\n"
                  << "    search, loaded index   " << stats_text(p.search) << "\n";
      }
      if (short_results) std::cout << "  note: " << short_results << " queries returned fewer than k neighbours\n";
    }
    return 0;
  } catch (const mmu::Error& e) {
    std::cerr << "mmu_bench_like: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "mmu_bench_like: internal error: " << e.what() << "\n";
    return 70;
  }
}
