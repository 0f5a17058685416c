#include "vector/space_searcher.h"

#include <faiss/Index.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/FaissException.h>
#include <faiss/index_io.h>

#include <omp.h>

#include <algorithm>
#include <iostream>

#include "mmu/error.h"
#include "store/layout.h"

namespace mmu {

namespace {

std::unique_ptr<files::MappedFile> map_checked(const std::string& path, const SpaceInfo& info, size_t elem_size) {
  // Mapped lazily: faulting the pages in as the scan reads them measured faster
  // (0.23 s cold at 10^6 x 512) than MAP_POPULATE (0.32 s).
  auto map = std::make_unique<files::MappedFile>(path);
  const size_t want = static_cast<size_t>(info.count * info.dim) * elem_size;
  if (map->size() != want)
    throw FormatError("'" + path + "' has " + std::to_string(map->size()) + " bytes, but the catalog says " +
                      std::to_string(info.count) + " x " + std::to_string(info.dim) + " values (" +
                      std::to_string(want) + " bytes)");
  return map;
}

}  // namespace

std::unique_ptr<faiss::Index> read_ann_index(const std::string& path, int64_t dim, int64_t count) {
  std::unique_ptr<faiss::Index> index;
  try {
    // IVF lists are memory-mapped, not read: a query touches only the lists it probes.
    index.reset(faiss::read_index(path.c_str(), faiss::IO_FLAG_MMAP));
  } catch (const faiss::FaissException& e) {
    throw FormatError("cannot read index '" + path + "': " + e.what());
  }
  if (index->d != dim || index->ntotal != count)
    throw FormatError("index '" + path + "' holds " + std::to_string(index->ntotal) + " x " +
                      std::to_string(index->d) + " vectors, the catalog says " + std::to_string(count) + " x " +
                      std::to_string(dim) + ": rebuild it with mmu-index reindex");
  return index;
}

SpaceSearcher::SpaceSearcher(const std::string& space_dir, const SpaceInfo& info, const std::string& vectors_sha256)
    : SpaceSearcher(space_dir, info, read_index_record(space_dir), vectors_sha256) {}

SpaceSearcher::SpaceSearcher(const std::string& space_dir, const SpaceInfo& info, IndexRecord record,
                             const std::string& vectors_sha256)
    : dir_(space_dir), info_(info), record_(std::move(record)) {
  f32_ = map_checked(layout::vectors_file(space_dir), info, sizeof(float));
  if (record_.spec.kind == IndexKind::kFlat16)
    f16_ = map_checked(layout::space_file(space_dir, record_.file), info, sizeof(uint16_t));
  if (record_.spec.kind == IndexKind::kSq8) open_sq8(vectors_sha256);
}

void SpaceSearcher::open_sq8(const std::string& vectors_sha256) {
  // Fp32 answers are the same, only slower: a copy that cannot be shown to
  // encode these vectors is set aside with a warning, not an error.
  const std::string path = layout::space_file(dir_, record_.file);
  const auto skip = [&](const std::string& why) {
    std::cerr << "warning: not using '" << path << "' (" << why << "); scanning '" << layout::vectors_file(dir_)
              << "' instead: rebuild it with mmu-index reindex --index sq8\n";
    sq8_.reset();
    sq8_file_.reset();
  };
  try {
    sq8_file_ = std::make_unique<files::MappedFile>(path);
    sq8_ = std::make_unique<Sq8Copy>(sq8_file_->data(), sq8_file_->size(), path);
  } catch (const Error& e) {
    return skip(e.what());
  }
  if (sq8_->rows() != info_.count || sq8_->dim() != info_.dim)
    return skip("it holds " + std::to_string(sq8_->rows()) + " x " + std::to_string(sq8_->dim()) +
                " codes, the catalog says " + std::to_string(info_.count) + " x " + std::to_string(info_.dim));
  if (sq8_->vectors_bytes() != f32_->size()) return skip("it encodes a vectors.f32 of another size: stale");
  if (vectors_sha256.empty()) return skip("the catalog records no SHA-256 of vectors.f32 to check it against");
  if (sq8_->vectors_sha256() != vectors_sha256) return skip("it encodes another vectors.f32 (SHA-256 differs): stale");
}

bool SpaceSearcher::uses_sq8(int64_t nq, const SearchOptions& opts) const {
  // Batches stay on the fp32 path: one BLAS product over the shared rows beats
  // a scan of the codes per query.
  return sq8_ && nq == 1 && opts.device == SearchDevice::kCpu;
}

faiss::Index& SpaceSearcher::ann() const {
  // Callers hold ann_mu_.
  if (!ann_) ann_ = read_ann_index(layout::space_file(dir_, record_.file), info_.dim, info_.count);
  return *ann_;
}

SpaceSearcher::~SpaceSearcher() = default;

const float* SpaceSearcher::vector(int64_t vrow) const {
  return static_cast<const float*>(f32_->data()) + vrow * info_.dim;
}

VectorMatrix SpaceSearcher::fp32() const { return {f32_->data(), VectorType::kF32, info_.count, info_.dim}; }

bool SpaceSearcher::uses_ann(bool filtered, const SearchOptions& opts) const {
  // Filters are applied inside an exact scan of the allowed rows: an ANN graph
  // or list structure with most rows masked out loses recall unpredictably.
  // A LibTorch device scans exactly (a GPU scans 10^6 x 512 in milliseconds).
  return (record_.spec.kind == IndexKind::kIvf || record_.spec.kind == IndexKind::kHnsw) && !filtered &&
         !opts.exact && opts.device == SearchDevice::kCpu;
}

const DeviceIndex& SpaceSearcher::on_device(SearchDevice device, bool half) const {
  std::lock_guard<std::mutex> lock(device_mu_);
  auto& slot = device_[{device, half}];
  if (!slot) {
    const VectorMatrix m = half ? VectorMatrix{f16_->data(), VectorType::kF16, info_.count, info_.dim} : fp32();
    slot = DeviceIndex::open(m, device);
  }
  return *slot;
}

std::string SpaceSearcher::method(bool filtered, const SearchOptions& opts) const {
  if (uses_ann(filtered, opts)) {
    IndexSpec s = record_.spec;
    if (opts.nprobe > 0) s.nprobe = opts.nprobe;
    if (opts.ef_search > 0) s.ef_search = opts.ef_search;
    return "approximate: " + describe_index(s);
  }
  if (sq8_ && opts.device == SearchDevice::kCpu)
    return std::string("exact sq8 scan") + (filtered ? " of the filtered rows" : "") +
           ", candidates re-scored in fp32 (fp32 scan for a batch)";
  const bool half = f16_ && !opts.exact;
  const std::string on =
      opts.device == SearchDevice::kCpu ? "" : std::string(" on ") + search_device_name(opts.device) + " (LibTorch)";
  return std::string("exact ") + (half ? "fp16" : "fp32") + " scan" + (filtered ? " of the filtered rows" : "") + on;
}

std::vector<std::vector<Hit>> SpaceSearcher::search(const float* queries, int64_t nq, int64_t k,
                                                    const std::vector<int64_t>* subset,
                                                    const SearchOptions& opts) const {
  if (!uses_ann(subset != nullptr, opts)) {
    if (uses_sq8(nq, opts)) {
      Sq8Scan how;
      if (opts.read_once && !subset) {
        how.codes_file = sq8_file_.get();
        how.vectors_file = f32_.get();
      }
      return {sq8_->top_k(fp32(), queries, k, subset, how)};
    }
    const bool half = f16_ && !opts.exact;
    if (opts.device != SearchDevice::kCpu) return on_device(opts.device, half).top_k(queries, nq, k, subset);
    const VectorMatrix m = half ? VectorMatrix{f16_->data(), VectorType::kF16, info_.count, info_.dim} : fp32();
    return exact_top_k(m, queries, nq, k, subset);
  }
  k = std::min(k, info_.count);
  std::vector<float> scores(static_cast<size_t>(nq * k));
  std::vector<faiss::Index::idx_t> labels(static_cast<size_t>(nq * k));
  // FAISS parallelises over queries: one query would wake every OpenMP thread
  // (each allocating an ntotal-byte visited table) for one thread's work.
  const int threads_before = omp_get_max_threads();
  if (nq < threads_before) omp_set_num_threads(static_cast<int>(std::max<int64_t>(1, nq)));
  struct RestoreThreads {
    int n;
    ~RestoreThreads() { omp_set_num_threads(n); }
  } restore{threads_before};
  try {
    std::lock_guard<std::mutex> lock(ann_mu_);
    faiss::Index& index = ann();
    if (record_.spec.kind == IndexKind::kHnsw) {
      // FAISS 1.7.3 ignores SearchParametersHNSW::efSearch beyond the index's
      // own value (measured), so the index's setting is changed, under the lock.
      auto& hnsw = dynamic_cast<faiss::IndexHNSW&>(index).hnsw;
      const int64_t ef = opts.ef_search > 0 ? opts.ef_search : record_.spec.ef_search;
      hnsw.efSearch = static_cast<int>(std::max(ef, k));  // HNSW returns at most efSearch hits
      index.search(nq, queries, k, scores.data(), labels.data());
    } else {
      faiss::SearchParametersIVF p;
      p.nprobe = static_cast<size_t>(opts.nprobe > 0 ? opts.nprobe : record_.spec.nprobe);
      index.search(nq, queries, k, scores.data(), labels.data(), &p);
    }
  } catch (const faiss::FaissException& e) {
    throw Error(ErrorKind::kInternal, std::string("FAISS search failed: ") + e.what());
  }
  std::vector<std::vector<Hit>> out(static_cast<size_t>(nq));
  for (int64_t j = 0; j < nq; ++j)
    for (int64_t i = 0; i < k; ++i)
      if (labels[j * k + i] >= 0) out[j].push_back({labels[j * k + i], scores[j * k + i]});
  return out;
}

}  // namespace mmu
