// The only translation unit that includes LibTorch (it costs ~25 s to compile).
#include <torch/script.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <thread>

#include "mmu/error.h"
#include "mmu/model_package.h"

namespace mmu {

namespace {

class TorchScriptEncoder : public ModelEncoder {
 public:
  TorchScriptEncoder(const ModelCard& card, torch::jit::script::Module module, torch::Device device)
      : card_(card), module_(std::move(module)), device_(device) {
    module_.eval();
    module_.to(device_);
  }

  void encode(const float* inputs, int64_t n, float* out) override {
    if (n == 0) return;
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
};

torch::Device parse_device(const std::string& device) {
  if (device == "cpu") return torch::Device(torch::kCPU);
  if (device != "cuda") throw InvalidArgument("--device must be cpu or cuda, got '" + device + "'");
#ifdef MMU_WITH_CUDA
  if (!torch::cuda::is_available()) throw InvalidArgument("--device cuda: LibTorch sees no CUDA device");
  return torch::Device(torch::kCUDA);
#else
  throw InvalidArgument("--device cuda: this build has no CUDA support (configure with -DMMU_ENABLE_CUDA=ON "
                        "against a CUDA LibTorch)");
#endif
}

}  // namespace

namespace {

std::unique_ptr<ModelEncoder> load_torch_encoder(const ModelCard& card, int threads, const std::string& device) {
  const torch::Device dev = parse_device(device);
  // LibTorch's own default here is 1 thread (it counts physical cores, and a
  // VM's vCPUs may not look like any): use every core unless told otherwise.
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  torch::set_num_threads(threads > 0 ? threads : std::max(1, hw));
  const std::string path = (std::filesystem::path(card.dir) / card.file).string();
  torch::jit::script::Module module;
  try {
    module = torch::jit::load(path, torch::kCPU);
  } catch (const std::exception& e) {
    throw FormatError("cannot load TorchScript model '" + path + "': " + TorchScriptEncoder::first_line(e.what()));
  }
  auto enc = std::make_unique<TorchScriptEncoder>(card, std::move(module), dev);
  // Probe with one object: a wrong input shape or output size fails here, by name.
  std::vector<float> probe(static_cast<size_t>(card.input_size())), out(static_cast<size_t>(card.output_dim));
  for (size_t i = 0; i < probe.size(); ++i) probe[i] = 0.5f + 0.4f * static_cast<float>(std::sin(0.37 * i));
  try {
    enc->encode(probe.data(), 1, out.data());
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
