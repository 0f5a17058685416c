// The searchable form of one space, opened once and shared by every query of a
// Store: the memory-mapped vectors and, when index.json names one, the fp16
// copy or the FAISS index. Private to mmu_core.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/file_util.h"
#include "mmu/device_search.h"
#include "mmu/exact_search.h"
#include "mmu/index_record.h"
#include "mmu/types.h"  // SpaceInfo, SearchOptions
#include "vector/compressed_scan.h"

namespace faiss {
struct Index;
}

namespace mmu {

class SpaceSearcher {
 public:
  // Maps the space's files and checks them against the catalog's count x dim.
  // `vectors_sha256` is the catalog's SHA-256 of vectors.f32 ("" when the
  // store predates checksums): an sq8 copy that records another is stale and
  // is not used (a warning on stderr names it; queries scan fp32).
  SpaceSearcher(const std::string& space_dir, const SpaceInfo& info, const std::string& vectors_sha256 = "");
  // The same with the index described by `record` instead of index.json's.
  SpaceSearcher(const std::string& space_dir, const SpaceInfo& info, IndexRecord record,
                const std::string& vectors_sha256 = "");
  ~SpaceSearcher();

  const SpaceInfo& info() const { return info_; }
  const IndexRecord& record() const { return record_; }
  const float* vector(int64_t vrow) const;
  VectorMatrix fp32() const;

  // Top-k vector rows for nq queries. With a subset, or with opts.exact, or
  // with a LibTorch opts.device, or when the space has no approximate index,
  // the search is exact (on opts.device). One query on the CPU of a space with
  // a current sq8 copy scans that copy: the same answer, a quarter of the bytes.
  std::vector<std::vector<Hit>> search(const float* queries, int64_t nq, int64_t k,
                                       const std::vector<int64_t>* subset, const SearchOptions& opts) const;
  // How search() will run for these options, e.g. "exact fp32 scan".
  std::string method(bool filtered, const SearchOptions& opts) const;

 private:
  bool uses_ann(bool filtered, const SearchOptions& opts) const;
  // The FAISS index, read on first use: exact and filtered queries never pay
  // for loading it (at 10^6 x 512 it is a 2 GB read).
  faiss::Index& ann() const;
  // The scanned vectors (fp16 for a flat16 space unless opts.exact) on a
  // LibTorch device, copied there on first use and kept.
  const DeviceIndex& on_device(SearchDevice device, bool half) const;

  std::string dir_;
  SpaceInfo info_;
  IndexRecord record_;
  bool uses_sq8(int64_t nq, const SearchOptions& opts) const;
  // The sq8 copy when index.json names one and it encodes these vectors.f32.
  void open_sq8(const std::string& vectors_sha256);

  std::unique_ptr<files::MappedFile> f32_, f16_, sq8_file_;
  std::unique_ptr<Sq8Copy> sq8_;
  mutable std::mutex ann_mu_;  // guards loading, and HNSW's efSearch, which is index state
  mutable std::unique_ptr<faiss::Index> ann_;
  mutable std::mutex device_mu_;  // guards creating device_ entries (entries are never removed)
  mutable std::map<std::pair<SearchDevice, bool>, std::unique_ptr<DeviceIndex>> device_;
};

// Opens an index file written by reindex_space; throws FormatError naming it.
std::unique_ptr<faiss::Index> read_ann_index(const std::string& path, int64_t dim, int64_t count);

}  // namespace mmu
