// Finds and opens the LibTorch plug-in (libmmu_models.so) on first use.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "mmu/error.h"
#include "mmu/model_package.h"

namespace fs = std::filesystem;

namespace mmu {

namespace {

constexpr const char* kPluginName = "libmmu_models.so";
using Factory = ModelEncoder* (*)(const ModelCard&, int, const char*);

Factory open_plugin() {
  std::vector<std::string> tried;
  if (const char* env = std::getenv("MMU_MODELS_LIB"); env && *env) tried.push_back(env);
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    tried.push_back((exe.parent_path() / kPluginName).string());               // build/ and bin/
    tried.push_back((exe.parent_path().parent_path() / kPluginName).string()); // build/tests/
    tried.push_back((exe.parent_path().parent_path() / "lib" / kPluginName).string());
  }
  std::string why;
  for (const std::string& path : tried) {
    if (!fs::exists(path, ec)) continue;
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      why = dlerror();
      continue;
    }
    if (auto f = reinterpret_cast<Factory>(dlsym(handle, "mmu_create_torch_encoder"))) return f;
    why = "'" + path + "' has no mmu_create_torch_encoder";
  }
  std::string list;
  for (const auto& p : tried) list += (list.empty() ? "" : ", ") + p;
  throw Error(ErrorKind::kNotFound, std::string("cannot load the model runtime ") + kPluginName + " (looked at: " + list +
                                        ")" + (why.empty() ? "" : ": " + why) + "; set MMU_MODELS_LIB to its path");
}

}  // namespace

std::unique_ptr<ModelEncoder> ModelEncoder::load(const ModelCard& card, int threads, const std::string& device) {
  static Factory factory = nullptr;
  static std::mutex mu;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (!factory) factory = open_plugin();
  }
  return std::unique_ptr<ModelEncoder>(factory(card, threads, device.c_str()));
}

}  // namespace mmu
