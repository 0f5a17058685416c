// The model encoder of the LibTorch plug-in (only the plug-in's files include LibTorch: ~25 s each to compile).
#include <torch/script.h>
#include <torch/torch.h>
#include <c10/core/CPUAllocator.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "mmu/error.h"
#include "mmu/model_package.h"
#include "torch_device.h"

namespace mmu {

namespace {

class TorchScriptEncoder : public ModelEncoder {
 public:
  TorchScriptEncoder(const ModelCard& card, torch::jit::script::Module module, torch::Device device, int workers,
                     int threads_per_worker)
      : card_(card), module_(std::move(module)), device_(device), workers_(workers),
        threads_per_worker_(threads_per_worker) {
    module_.eval();
    module_.to(device_);
  }

  int workers() const override { return workers_; }
  int64_t call_size() const override { return model_batch_; }

  void encode(const float* inputs, int64_t n, float* out) override {
    use_threads_here();
    const int64_t step = model_batch_ > 0 ? model_batch_ : std::max<int64_t>(n, 1);
    for (int64_t s = 0; s < n; s += step)
      encode_slice(inputs + s * card_.input_size(), std::min(step, n - s), out + s * card_.output_dim);
  }

  // Objects per model call (0: the whole batch).
  void set_model_batch(int64_t objects) { model_batch_ = objects; }

 private:
  void encode_slice(const float* inputs, int64_t n, float* out) {
    std::vector<int64_t> shape = {n};
    shape.insert(shape.end(), card_.input_shape.begin(), card_.input_shape.end());
    torch::InferenceMode guard;
    // from_blob does not copy: the caller's buffer outlives the call.
    torch::Tensor x = torch::from_blob(const_cast<float*>(inputs), shape, torch::kFloat32).to(device_);
    torch::Tensor y;
    try {
      y = module_.forward({x}).toTensor();
    } catch (const std::exception& e) {
      throw FormatError("model '" + card_.name + "' failed on a batch of " + std::to_string(n) + " of shape " +
                        shape_text(shape) + ": " + useful_lines(e.what()));
    }
    // Models that squeeze the batch axis away return [dim] for one object.
    if (y.dim() == 1 && n == 1) y = y.unsqueeze(0);
    if (y.dim() != 2 || y.size(0) != n || y.size(1) != card_.output_dim)
      throw FormatError("model '" + card_.name + "' returned shape " + shape_text(y.sizes().vec()) + " for " +
                        std::to_string(n) + " objects; its card says [" + std::to_string(n) + ", " +
                        std::to_string(card_.output_dim) + "]");
    y = y.to(torch::kCPU).to(torch::kFloat32).contiguous();
    if (!torch::isfinite(y).all().item<bool>())
      throw FormatError("model '" + card_.name + "' produced NaN or Inf embeddings");
    if (!card_.l2_normalized) y = torch::nn::functional::normalize(y, torch::nn::functional::NormalizeFuncOptions().dim(1));
    std::memcpy(out, y.data_ptr<float>(), sizeof(float) * static_cast<size_t>(n * card_.output_dim));
  }

  // LibTorch's intra-op thread count is an OpenMP setting of the calling
  // thread, so each worker sets its own before its first batch. The call
  // also sets LibTorch's global default (what its threads fall back to), which
  // every worker of one stage sets alike; the lock keeps them from racing.
  void use_threads_here() const {
    thread_local int threads_here = 0;
    if (threads_here == threads_per_worker_) return;
    static std::mutex mu;
    std::lock_guard<std::mutex> lock(mu);
    torch::set_num_threads(threads_per_worker_);
    threads_here = threads_per_worker_;
  }

 public:
  static std::string shape_text(const std::vector<int64_t>& s) {
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
    return out + "]";
  }
  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
  // TorchScript errors say what failed on their last line; the middle is a traceback.
  static std::string useful_lines(const std::string& s) {
    std::string last, line;
    for (char c : s + "\n") {
      if (c != '\n') {
        line += c;
        continue;
      }
      if (line.find_first_not_of(" \t") != std::string::npos) last = line;
      line.clear();
    }
    const std::string first = first_line(s);
    return last.empty() || last == first ? first : first + " ... " + last.substr(last.find_first_not_of(" \t"));
  }

 private:
  ModelCard card_;
  torch::jit::script::Module module_;
  torch::Device device_;
  int workers_, threads_per_worker_;
  int64_t model_batch_ = 0;
};

// Records the largest CPU allocation while installed. LibTorch's allocator is
// process-wide: install it only while nothing else runs a model.
class LargestAllocation : public c10::Allocator {
 public:
  LargestAllocation() : inner_(c10::GetCPUAllocator()) { c10::SetCPUAllocator(this); }
  ~LargestAllocation() override { c10::SetCPUAllocator(inner_); }
  LargestAllocation(const LargestAllocation&) = delete;
  LargestAllocation& operator=(const LargestAllocation&) = delete;
  c10::DataPtr allocate(size_t n) const override {
    largest_ = std::max(largest_, n);
    return inner_->allocate(n);
  }
  c10::DeleterFnPtr raw_deleter() const override { return inner_->raw_deleter(); }
  // 0 when another allocator of higher priority kept its place.
  size_t largest() const { return c10::GetCPUAllocator() == this ? largest_ : 0; }

 private:
  c10::Allocator* inner_;
  mutable size_t largest_ = 0;
};

// The L3 cache one core shares, as the kernel describes it (glibc's
// sysconf sums every L3 of the host's CPU, 256 MB on an EPYC whose cores see 32).
int64_t last_level_cache_bytes() {
  std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index3/size");
  int64_t kib = 0;
  if (in >> kib && kib > 0) return kib << 10;  // "32768K"
  return int64_t{8} << 20;
}

// Objects per model call for batches run side by side: attention-like
// activations grow with the square of a sequence (a 778-token spectrum's
// scores are 10 MB per object), and a batch of them streams through memory
// several times per layer (scores, scaled, softmax), three times slower than
// one object's that stay in cache. So each worker's calls keep their largest
// activation, three times over, within its share of the last-level cache.
// Like the worker count, this depends on the model alone (never on timings).
int64_t cache_sized_batch(size_t largest_per_object, int workers) {
  if (largest_per_object == 0) return 0;
  return std::max<int64_t>(1, last_level_cache_bytes() / (3 * static_cast<int64_t>(largest_per_object) * workers));
}

// Below this many bytes of weights a model's matrix products are too small to
// split well over cores (each thread's share is a few microseconds, and the
// threads wait on each other after every operation): its batches then run
// side by side, one thread each. Larger models (a ViT-L is 1.2 GB) keep one
// batch at a time on every core, where intra-op threads reach ~85% of the
// SGEMM peak (docs/BENCHMARKS.md, encoder stage (b)). The choice depends
// on the model only, never on timings, so a resumed build encodes the rest
// exactly as the killed one would have.
constexpr int64_t kSideBySideMaxWeightBytes = 64 << 20;

int64_t weight_bytes(const torch::jit::script::Module& module) {
  int64_t bytes = 0;
  for (const at::Tensor& p : module.parameters()) bytes += p.numel() * static_cast<int64_t>(p.element_size());
  return bytes;
}

}  // namespace

namespace {

std::unique_ptr<ModelEncoder> load_torch_encoder(const ModelCard& card, int threads, const std::string& device) {
  const torch::Device dev = torch_device(device, "cpu");
  // LibTorch's own default here is 1 thread (it counts physical cores, and a
  // VM's vCPUs may not look like any): use every core unless told otherwise.
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  const int cores = threads > 0 ? threads : std::max(1, hw);
  const std::string path = (std::filesystem::path(card.dir) / card.file).string();
  torch::jit::script::Module module;
  try {
    module = torch::jit::load(path, torch::kCPU);
  } catch (const std::exception& e) {
    throw FormatError("cannot load TorchScript model '" + path + "': " + TorchScriptEncoder::first_line(e.what()));
  }
  const bool side_by_side = dev.is_cpu() && weight_bytes(module) < kSideBySideMaxWeightBytes;
  auto enc = std::make_unique<TorchScriptEncoder>(card, std::move(module), dev, side_by_side ? cores : 1,
                                                  side_by_side ? 1 : cores);
  // Probe with one object: a wrong input shape or output size fails here, by name.
  std::vector<float> probe(static_cast<size_t>(card.input_size())), out(static_cast<size_t>(card.output_dim));
  for (size_t i = 0; i < probe.size(); ++i) probe[i] = 0.5f + 0.4f * static_cast<float>(std::sin(0.37 * i));
  try {
    size_t largest = 0;
    {
      LargestAllocation measure;
      enc->encode(probe.data(), 1, out.data());
      largest = measure.largest();
    }
    if (side_by_side) enc->set_model_batch(cache_sized_batch(largest, enc->workers()));
  } catch (const Error& e) {
    throw FormatError("model package '" + card.dir + "' fails its probe batch (card input shape " +
                      TorchScriptEncoder::shape_text(card.input_shape) + ", output dim " +
                      std::to_string(card.output_dim) + "): " + e.what());
  }
  return enc;
}

}  // namespace

}  // namespace mmu

// The plug-in's one entry point (see model_loader.cpp).
extern "C" __attribute__((visibility("default"))) mmu::ModelEncoder* mmu_create_torch_encoder(
    const mmu::ModelCard& card, int threads, const char* device) {
  return mmu::load_torch_encoder(card, threads, device).release();
}
