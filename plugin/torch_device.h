// The LibTorch device a --device name asks for. Plug-in only: includes LibTorch.
#pragma once

#include <torch/torch.h>

#include <string>

#include "mmu/error.h"

namespace mmu {

// cpu_name is what the caller calls LibTorch's CPU device ("cpu" for models,
// "torch-cpu" for search, where "cpu" is our own scan).
inline torch::Device torch_device(const std::string& name, const std::string& cpu_name) {
  if (name == cpu_name) return torch::Device(torch::kCPU);
  if (name != "cuda") throw InvalidArgument("--device must be " + cpu_name + " or cuda, got '" + name + "'");
#ifdef MMU_WITH_CUDA
  if (!torch::cuda::is_available()) throw InvalidArgument("--device cuda: LibTorch sees no CUDA device");
  return torch::Device(torch::kCUDA);
#else
  throw InvalidArgument("--device cuda: this build has no CUDA support; configure it with -DMMU_ENABLE_CUDA=ON "
                        "against a CUDA-enabled LibTorch (Torch_DIR)");
#endif
}

}  // namespace mmu
