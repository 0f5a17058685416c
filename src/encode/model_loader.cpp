// Finds and opens the LibTorch plug-in (libmmu_models.so) on first use.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "mmu/error.h"
#include "mmu/model_package.h"
#include "encode/model_plugin.h"

namespace fs = std::filesystem;

namespace mmu {

namespace {

constexpr const char* kPluginName = "libmmu_models.so";
using Factory = ModelEncoder* (*)(const ModelCard&, int, const char*);

void* open_plugin() {
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
    if (void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL)) return handle;
    why = dlerror();
  }
  std::string list;
  for (const auto& p : tried) list += (list.empty() ? "" : ", ") + p;
  throw Error(ErrorKind::kNotFound, std::string("cannot load the model runtime ") + kPluginName + " (looked at: " + list +
                                        ")" + (why.empty() ? "" : ": " + why) + "; set MMU_MODELS_LIB to its path");
}

}  // namespace

void* model_plugin_symbol(const char* name) {
  static void* handle = nullptr;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (!handle) handle = open_plugin();
  if (void* f = dlsym(handle, name)) return f;
  throw Error(ErrorKind::kNotFound, std::string("the model runtime ") + kPluginName + " has no " + name +
                                        " (an older build? rebuild it)");
}

std::unique_ptr<ModelEncoder> ModelEncoder::load(const ModelCard& card, int threads, const std::string& device) {
  const auto factory = reinterpret_cast<Factory>(model_plugin_symbol("mmu_create_torch_encoder"));
  return std::unique_ptr<ModelEncoder>(factory(card, threads, device.c_str()));
}

}  // namespace mmu
