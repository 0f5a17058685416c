// Exact search on a LibTorch device (issue 7): the same answer as exact_top_k,
// computed as a matrix product and torch::topk on a GPU, or on LibTorch's CPU
// device to check that very code path where there is no GPU (tests, CI).
//
// The vectors are put on the device once (a DeviceIndex per space and device,
// kept by the store's SpaceSearcher); each search scores row blocks of about
// block_bytes of device memory, keeps each block's candidates and merges them
// on the host with exact_top_k's rule (higher score, then lower row), so ties
// resolve as on the CPU path. Scores are fp32 (fp16 rows are widened per
// block, TF32 is off), LibTorch's own: they differ from the CPU scan's
// canonical scores only in the last bits of the sums, so two rows whose
// scores are within ~1e-6 may swap places.
//
// LibTorch lives in the plug-in libmmu_models.so (plugin/torch_search.cpp),
// opened on first use; a build configured without -DMMU_ENABLE_CUDA=ON has no
// cuda device.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mmu/exact_search.h"
#include "mmu/types.h"  // SearchDevice

namespace mmu {

// "cpu", "torch-cpu" or "cuda".
const char* search_device_name(SearchDevice d);
// Parses --device; throws InvalidArgument naming --device for an unknown name,
// and for cuda in a build without CUDA (naming -DMMU_ENABLE_CUDA=ON).
SearchDevice parse_search_device(const std::string& s);
// Whether this build was configured with -DMMU_ENABLE_CUDA=ON.
bool built_with_cuda();

// Device memory one block of a search may use by default (scores, widened or
// gathered rows): bounded whatever the space's size.
inline constexpr int64_t kDefaultDeviceBlockBytes = int64_t{256} << 20;

// A space's vectors resident on a LibTorch device.
class DeviceIndex {
 public:
  // Copies base (fp32 or fp16, as stored) to the device; on LibTorch's CPU
  // device the mapped rows are used in place. base.data must outlive the
  // index. Throws InvalidArgument for kCpu or an unavailable device, and
  // NotFound when the plug-in cannot be loaded.
  static std::unique_ptr<DeviceIndex> open(const VectorMatrix& base, SearchDevice device,
                                           int64_t block_bytes = kDefaultDeviceBlockBytes);
  virtual ~DeviceIndex() = default;

  // exact_top_k's contract: for each of nq queries (nq x dim floats), the
  // min(k, candidates) rows of largest inner product, best first, ties to the
  // lower row; `subset` (ascending, unique) limits the rows considered.
  // Safe to call from several threads at once.
  std::vector<std::vector<Hit>> top_k(const float* queries, int64_t nq, int64_t k,
                                      const std::vector<int64_t>* subset = nullptr) const;

  virtual int64_t rows() const = 0;
  virtual int64_t dim() const = 0;

 protected:
  // Called by top_k after its checks (k >= 1, finite queries, subset rows in range).
  virtual std::vector<std::vector<Hit>> search(const float* queries, int64_t nq, int64_t k,
                                               const std::vector<int64_t>* subset) const = 0;
};

}  // namespace mmu
