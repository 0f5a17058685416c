#include "mmu/space_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_io.h>


#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>
#include <unordered_set>

#include "base/file_util.h"
#include "mmu/error.h"
#include "mmu/store.h"
#include "vector/compressed_scan.h"
#include "vector/space_searcher.h"
#include "store/layout.h"
#include "base/utc_time.h"

namespace fs = std::filesystem;

namespace mmu {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void write_faiss_atomic(const faiss::Index& index, const std::string& path) {
  const std::string tmp = path + ".tmp";
  try {
    faiss::write_index(&index, tmp.c_str());
  } catch (const faiss::FaissException& e) {
    throw Error(ErrorKind::kIo, "cannot write index '" + tmp + "': " + e.what());
  }
  files::fsync_path(tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw IoError(path, "rename into place", errno);
}

// Rows [0, n) in chunks, so a log line can show progress on big spaces.
template <typename F>
void in_chunks(int64_t n, const std::function<void(const std::string&)>& log, const std::string& what, F add) {
  const int64_t chunk = 100000;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < n; i += chunk) {
    add(i, std::min(chunk, n - i));
    if (log && n > chunk)
      log(what + " " + std::to_string(std::min(n, i + chunk)) + "/" + std::to_string(n) + " (" +
          std::to_string(static_cast<int64_t>(std::min(n, i + chunk) / std::max(1e-9, seconds_since(t0)))) +
          " vectors/s)");
  }
}

std::unique_ptr<faiss::Index> build_ann(const VectorMatrix& v, IndexSpec* spec, const ReindexOptions& opt) {
  const int d = static_cast<int>(v.dim);
  const float* x = static_cast<const float*>(v.data);
  if (spec->kind == IndexKind::kHnsw) {
    auto index = std::make_unique<faiss::IndexHNSWFlat>(d, static_cast<int>(spec->m), faiss::METRIC_INNER_PRODUCT);
    index->hnsw.efConstruction = static_cast<int>(spec->ef_construction);
    index->hnsw.efSearch = static_cast<int>(spec->ef_search);
    in_chunks(v.rows, opt.log, "hnsw: added", [&](int64_t i, int64_t n) { index->add(n, x + i * v.dim); });
    return index;
  }
  // IVF: FAISS wants >= 39 training points per list; cap the lists so that a
  // small space still trains, and train on a seeded sample of at most 64 per list.
  if (spec->nlist <= 0) spec->nlist = static_cast<int64_t>(4 * std::sqrt(static_cast<double>(v.rows)));
  spec->nlist = std::clamp<int64_t>(spec->nlist, 1, std::max<int64_t>(1, v.rows / 39));
  spec->nprobe = std::min(spec->nprobe, spec->nlist);
  auto quantizer = new faiss::IndexFlatIP(d);
  auto index = std::make_unique<faiss::IndexIVFFlat>(quantizer, d, static_cast<size_t>(spec->nlist),
                                                     faiss::METRIC_INNER_PRODUCT);
  index->own_fields = true;
  index->nprobe = static_cast<size_t>(spec->nprobe);
  index->cp.seed = static_cast<int>(opt.seed);
  const int64_t n_train = std::min(v.rows, spec->nlist * 64);
  std::vector<int64_t> rows(static_cast<size_t>(v.rows));
  for (int64_t i = 0; i < v.rows; ++i) rows[i] = i;
  std::mt19937_64 rng(opt.seed);
  std::shuffle(rows.begin(), rows.end(), rng);
  rows.resize(static_cast<size_t>(n_train));
  std::sort(rows.begin(), rows.end());
  std::vector<float> train(static_cast<size_t>(n_train * v.dim));
  for (int64_t i = 0; i < n_train; ++i) std::copy_n(x + rows[i] * v.dim, v.dim, &train[i * v.dim]);
  if (opt.log) opt.log("ivf: training " + std::to_string(spec->nlist) + " lists on " + std::to_string(n_train) + " vectors");
  index->train(n_train, train.data());
  in_chunks(v.rows, opt.log, "ivf: added", [&](int64_t i, int64_t n) { index->add(n, x + i * v.dim); });
  return index;
}

// Distinct stored vector rows, seeded: the recall queries.
std::vector<int64_t> sample_rows(int64_t n, int64_t want, uint64_t seed) {
  want = std::min(want, n);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  std::unordered_set<int64_t> seen;
  std::vector<int64_t> out;
  while (static_cast<int64_t>(out.size()) < want) {
    const int64_t r = pick(rng);
    if (seen.insert(r).second) out.push_back(r);
  }
  return out;
}

}  // namespace

IndexRecord reindex_space(const Store& store, const std::string& space, const IndexSpec& spec_in,
                          const ReindexOptions& opt) {
  if (spec_in.nprobe <= 0 || spec_in.m < 2 || spec_in.ef_construction <= 0 || spec_in.ef_search <= 0 || spec_in.nlist < 0)
    throw InvalidArgument("index parameters must be positive (--nprobe, --M, --ef-construction, --ef-search)");
  if (opt.recall_k <= 0 || opt.recall_queries <= 0)
    throw InvalidArgument("--recall-k and --recall-queries must be at least 1");
  const StoreLock lock(store.path());
  const SpaceInfo info = store.space(space);
  const std::string dir = store.space_dir(space);
  std::string vectors_sha256;
  for (const SpaceFileHash& h : store.space_file_hashes(space))
    if (h.file == layout::kVectorsFile) vectors_sha256 = h.sha256;
  const SpaceSearcher exact(dir, info, vectors_sha256);
  const VectorMatrix v = exact.fp32();

  IndexRecord rec;
  rec.spec = spec_in;
  const auto t_build = std::chrono::steady_clock::now();
  const std::string stamp = std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  std::unique_ptr<faiss::Index> ann;
  try {
    if (rec.spec.kind == IndexKind::kFlat16) {
      rec.file = layout::kHalfVectorsFile;
      std::vector<uint16_t> half(static_cast<size_t>(v.rows * v.dim));
      const float* x = static_cast<const float*>(v.data);
      for (size_t i = 0; i < half.size(); ++i) half[i] = float_to_half(x[i]);
      files::write_atomic(layout::space_file(dir, rec.file), half.data(), half.size() * sizeof(uint16_t));
    } else if (rec.spec.kind == IndexKind::kSq8) {
      // The copy records the catalog's SHA-256 of the vectors it encodes, and
      // the file is checked against it first: a search uses the copy only
      // while both still agree.
      if (vectors_sha256.empty())
        throw InvalidArgument("store '" + store.path() + "' records no checksum of '" + layout::vectors_file(dir) +
                              "' (built by an older mmu-index): rebuild it before `reindex --index sq8`");
      store.verify_space_files(space);
      rec.file = layout::kSq8VectorsFile;
      const std::vector<uint8_t> image = encode_sq8(v, vectors_sha256);
      files::write_atomic(layout::space_file(dir, rec.file), image.data(), image.size());
    } else if (rec.spec.kind != IndexKind::kFlat) {
      ann = build_ann(v, &rec.spec, opt);
      rec.file = layout::ann_file_name(index_kind_name(rec.spec.kind), stamp);
      write_faiss_atomic(*ann, layout::space_file(dir, rec.file));
    }
  } catch (const faiss::FaissException& e) {
    throw Error(ErrorKind::kInternal, std::string("FAISS failed while building the index: ") + e.what());
  }
  rec.build_s = seconds_since(t_build);

  // Recall and latency against the exact scan, with stored vectors as queries.
  const std::vector<int64_t> qrows = sample_rows(v.rows, opt.recall_queries, opt.seed);
  const int64_t nq = static_cast<int64_t>(qrows.size()), k = std::min(opt.recall_k, v.rows);
  std::vector<float> queries(static_cast<size_t>(nq * v.dim));
  for (int64_t i = 0; i < nq; ++i) std::copy_n(exact.vector(qrows[i]), v.dim, &queries[i * v.dim]);
  const auto truth = exact_top_k(v, queries.data(), nq, k);
  if (opt.log) opt.log("measuring recall@" + std::to_string(k) + " on " + std::to_string(nq) + " queries");
  const int64_t n_timed_exact = std::min<int64_t>(nq, 20);
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < n_timed_exact; ++i) exact_top_k(v, &queries[i * v.dim], 1, k);
  rec.exact_ms = 1e3 * seconds_since(t0) / static_cast<double>(n_timed_exact);

  // The new index as a searcher will open it, before the record goes live.
  rec.recall_k = k;
  rec.recall_queries = nq;
  rec.built = utc_now();
  const SpaceSearcher candidate(dir, info, rec, vectors_sha256);
  double hits = 0;
  t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < nq; ++i) {
    const auto got = candidate.search(&queries[i * v.dim], 1, k, nullptr, SearchOptions{})[0];
    std::unordered_set<int64_t> want;
    for (const Hit& h : truth[i]) want.insert(h.id);
    for (const Hit& h : got) hits += want.count(h.id);
  }
  rec.index_ms = 1e3 * seconds_since(t0) / static_cast<double>(nq);
  rec.recall = hits / static_cast<double>(nq * k);

  // The switch: one atomic rename; then files no record names are removed.
  write_index_record(dir, rec);
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    const bool ours =
        layout::is_ann_file_name(name) || name == layout::kHalfVectorsFile || name == layout::kSq8VectorsFile;
    std::error_code ec;
    if (ours && name != rec.file) fs::remove(e.path(), ec);
  }
  return rec;
}

ReindexOutcome reindex_committed(const std::string& store_path,
                                 const std::vector<std::pair<std::string, IndexSpec>>& todo) {
  ReindexOutcome out;
  if (todo.empty()) return out;
  const auto store = Store::open(store_path);
  for (const auto& [name, spec] : todo) {
    try {
      const IndexRecord r = reindex_space(*store, name, spec, ReindexOptions{});
      out.built.push_back(name + ": " + describe_index(r.spec) + ", recall@" + std::to_string(r.recall_k) + " " +
                          std::to_string(r.recall).substr(0, 5));
    } catch (const Error& e) {
      out.failed.emplace_back(name, e.what());
    }
  }
  return out;
}

}  // namespace mmu
