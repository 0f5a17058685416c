// The mmu_core side of device search: flag parsing, argument checks, and the
// way into the LibTorch plug-in (plugin/torch_search.cpp).
#include "mmu/device_search.h"

#include <cmath>

#include "mmu/error.h"
#include "encode/model_plugin.h"

namespace mmu {

namespace {

using Factory = DeviceIndex* (*)(const VectorMatrix&, const char*, int64_t);

}  // namespace

const char* search_device_name(SearchDevice d) {
  switch (d) {
    case SearchDevice::kCpu: return "cpu";
    case SearchDevice::kTorchCpu: return "torch-cpu";
    case SearchDevice::kCuda: return "cuda";
  }
  return "?";
}

bool built_with_cuda() {
#ifdef MMU_WITH_CUDA
  return true;
#else
  return false;
#endif
}

SearchDevice parse_search_device(const std::string& s) {
  if (s == "cpu") return SearchDevice::kCpu;
  if (s == "torch-cpu") return SearchDevice::kTorchCpu;
  if (s == "cuda") {
    if (!built_with_cuda())
      throw InvalidArgument(
          "--device cuda: this build has no CUDA support; configure it with -DMMU_ENABLE_CUDA=ON against a "
          "CUDA-enabled LibTorch (Torch_DIR), or search with --device cpu");
    return SearchDevice::kCuda;
  }
  throw InvalidArgument("--device must be cpu, torch-cpu or cuda, got '" + s + "'");
}

std::unique_ptr<DeviceIndex> DeviceIndex::open(const VectorMatrix& base, SearchDevice device, int64_t block_bytes) {
  if (device == SearchDevice::kCpu)
    throw InvalidArgument("DeviceIndex is for LibTorch devices (torch-cpu, cuda); cpu searches with exact_top_k");
  if (device == SearchDevice::kCuda && !built_with_cuda()) parse_search_device("cuda");  // throws, naming the flag
  if (block_bytes <= 0) throw InvalidArgument("device block size must be positive, got " + std::to_string(block_bytes));
  const auto factory = reinterpret_cast<Factory>(model_plugin_symbol("mmu_create_torch_index"));
  return std::unique_ptr<DeviceIndex>(factory(base, search_device_name(device), block_bytes));
}

std::vector<std::vector<Hit>> DeviceIndex::top_k(const float* queries, int64_t nq, int64_t k,
                                                 const std::vector<int64_t>* subset) const {
  // The same checks, in the same order and words, as exact_top_k.
  if (nq <= 0) return {};
  if (k <= 0) throw InvalidArgument("k must be at least 1, got " + std::to_string(k));
  const int64_t d = dim();
  for (int64_t i = 0; i < nq * d; ++i)
    if (!std::isfinite(queries[i]))
      throw InvalidArgument("query vector " + std::to_string(i / d) + " has a non-finite value at position " +
                            std::to_string(i % d));
  if (subset && !subset->empty() && (subset->front() < 0 || subset->back() >= rows()))
    throw InternalError("device search: a subset row is outside the space's " + std::to_string(rows()) + " rows");
  return search(queries, nq, k, subset);
}

}  // namespace mmu
