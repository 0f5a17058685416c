// Contrastive training of two towers (LibTorch; part of the mmu_models plug-in).
// The towers are torch::jit::Modules whose forward is TorchScript source
// compiled here and whose weights are registered parameters: autograd runs
// through the interpreter, and save() writes the TorchScript file that
// `build --model` and Python's torch.jit.load read, with no Python involved.
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "mmu/error.h"
#include "mmu/train.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mmu {

namespace {

// Kaiming-uniform weights (fan-in), zero biases: what torch.nn's layers start from.
torch::Tensor weight(std::vector<int64_t> shape) {
  int64_t fan_in = 1;
  for (size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
  const double bound = std::sqrt(6.0 / static_cast<double>(fan_in));
  return torch::empty(shape).uniform_(-bound, bound);
}

void add(torch::jit::Module& m, const std::string& name, torch::Tensor t) {
  m.register_parameter(name, t.requires_grad_(true), false);
}

// The last lines of both towers: projection head and L2 normalisation.
constexpr const char* kHead = R"(
    x = torch.relu(torch.linear(x, self.h_w, self.h_b))
    x = torch.linear(x, self.p_w, self.p_b)
    return x / torch.sqrt(torch.sum(x * x, [1], True) + 1e-12)
)";

void add_head(torch::jit::Module& m, int64_t features, int64_t dim) {
  add(m, "h_w", weight({128, features}));
  add(m, "h_b", torch::zeros({128}));
  add(m, "p_w", weight({dim, 128}));
  add(m, "p_b", torch::zeros({dim}));
}

// Image tower: (B, C, S, S) -> 2x2 average (the cutouts are oversampled for
// our galaxies), three 3x3 conv + ReLU + 2x2 max-pool stages, mean and max
// over positions (orientation-free, as rotations are augmented), head.
torch::jit::Module image_tower(const std::vector<int64_t>& shape, int64_t dim) {
  torch::jit::Module m("MmuImageTower");
  const int64_t c = shape.at(0);
  add(m, "c1_w", weight({32, c, 3, 3}));
  add(m, "c1_b", torch::zeros({32}));
  add(m, "c2_w", weight({64, 32, 3, 3}));
  add(m, "c2_b", torch::zeros({64}));
  add(m, "c3_w", weight({64, 64, 3, 3}));
  add(m, "c3_b", torch::zeros({64}));
  add_head(m, 128, dim);
  m.define(std::string(R"(
def forward(self, x):
    x = torch.avg_pool2d(x, [2, 2])
    x = torch.max_pool2d(torch.relu(torch.conv2d(x, self.c1_w, self.c1_b, [1, 1], [1, 1])), [2, 2])
    x = torch.max_pool2d(torch.relu(torch.conv2d(x, self.c2_w, self.c2_b, [1, 1], [1, 1])), [2, 2])
    x = torch.relu(torch.conv2d(x, self.c3_w, self.c3_b, [1, 1], [1, 1]))
    x = torch.cat([torch.mean(x, [2, 3]), torch.amax(x, [2, 3])], 1)
)") + kHead);
  return m;
}

int64_t conv_length(int64_t n, int64_t k, int64_t s, int64_t p) { return (n + 2 * p - k) / s + 1; }

// Spectrum tower: (B, tokens, features) -> three strided 1-D convolutions
// along the wavelength axis, flattened (where a line sits is the redshift, so
// position is kept), head.
torch::jit::Module spectrum_tower(const std::vector<int64_t>& shape, int64_t dim) {
  torch::jit::Module m("MmuSpectrumTower");
  const int64_t features = shape.at(1);
  add(m, "c1_w", weight({32, features, 7}));
  add(m, "c1_b", torch::zeros({32}));
  add(m, "c2_w", weight({32, 32, 5}));
  add(m, "c2_b", torch::zeros({32}));
  add(m, "c3_w", weight({32, 32, 5}));
  add(m, "c3_b", torch::zeros({32}));
  const int64_t len = conv_length(conv_length(conv_length(shape.at(0), 7, 4, 3), 5, 2, 2), 5, 2, 2);
  add_head(m, 32 * len, dim);
  m.define(std::string(R"(
def forward(self, x):
    x = x.transpose(1, 2)
    x = torch.relu(torch.conv1d(x, self.c1_w, self.c1_b, [4], [3]))
    x = torch.relu(torch.conv1d(x, self.c2_w, self.c2_b, [2], [2]))
    x = torch.relu(torch.conv1d(x, self.c3_w, self.c3_b, [2], [2]))
    x = torch.flatten(x, 1)
)") + kHead);
  return m;
}

std::vector<torch::Tensor> parameters_of(const torch::jit::Module& m) {
  std::vector<torch::Tensor> out;
  for (const auto& p : m.parameters()) out.push_back(p);
  return out;
}

// Symmetric InfoNCE (CLIP): each image's own spectrum among the batch's, and back.
torch::Tensor info_nce(const torch::Tensor& a, const torch::Tensor& b, double scale) {
  const torch::Tensor logits = scale * torch::matmul(a, b.t());
  const torch::Tensor target = torch::arange(a.size(0), torch::kLong);
  return 0.5 * (torch::nn::functional::cross_entropy(logits, target) +
                torch::nn::functional::cross_entropy(logits.t(), target));
}

torch::Tensor rows_of(const std::vector<float>& data, const std::vector<int64_t>& shape,
                      const std::vector<int64_t>& idx) {
  int64_t per = 1;
  for (int64_t v : shape) per *= v;
  std::vector<int64_t> full = {static_cast<int64_t>(idx.size())};
  full.insert(full.end(), shape.begin(), shape.end());
  torch::Tensor out = torch::empty(full);
  float* o = out.data_ptr<float>();
  for (size_t i = 0; i < idx.size(); ++i)
    std::copy_n(data.data() + idx[i] * per, per, o + static_cast<int64_t>(i) * per);
  return out;
}

// Standard galaxy-image augmentation, drawn from `rng`: flips, 90° rotations,
// shifts of up to 2 pixels (zero-filled: the transform's sky level) and
// Gaussian noise of 0.01 (the stretch maps the sky to ~0 and cores to ~1).
torch::Tensor augment(torch::Tensor x, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> coin(0, 1), quarter(0, 3), shift(-2, 2);
  std::normal_distribution<float> noise(0.f, 0.01f);
  const int64_t s = x.size(2);
  for (int64_t i = 0; i < x.size(0); ++i) {
    torch::Tensor img = x[i];
    if (coin(rng)) img = img.flip({2});
    img = torch::rot90(img, quarter(rng), {1, 2});
    const int dy = shift(rng), dx = shift(rng);
    torch::Tensor shifted = torch::zeros_like(img);
    shifted.slice(1, std::max(0, dy), s + std::min(0, dy))
        .slice(2, std::max(0, dx), s + std::min(0, dx))
        .copy_(img.slice(1, std::max(0, -dy), s + std::min(0, -dy)).slice(2, std::max(0, -dx), s + std::min(0, -dx)));
    float* p = shifted.data_ptr<float>();
    for (int64_t k = 0; k < shifted.numel(); ++k) p[k] += noise(rng);
    x[i].copy_(shifted);
  }
  return x;
}

torch::Tensor embed(torch::jit::Module& tower, const torch::Tensor& x) { return tower.forward({x}).toTensor(); }

struct Validation {
  double loss = 0, top1 = 0, top10 = 0;
};

Validation validate(torch::jit::Module& img, torch::jit::Module& spec, const TrainInputs& in,
                    const std::vector<int64_t>& val, int64_t batch, double scale) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> a, b;
  double loss = 0;
  int64_t batches = 0;
  for (size_t s = 0; s < val.size(); s += static_cast<size_t>(batch)) {
    const std::vector<int64_t> idx(val.begin() + s, val.begin() + std::min(val.size(), s + batch));
    a.push_back(embed(img, rows_of(in.images, in.image_shape, idx)));
    b.push_back(embed(spec, rows_of(in.spectra, in.spectrum_shape, idx)));
    if (idx.size() > 1) {
      loss += info_nce(a.back(), b.back(), scale).item<double>();
      ++batches;
    }
  }
  const torch::Tensor sim = torch::matmul(torch::cat(a), torch::cat(b).t());
  const torch::Tensor own = sim.diagonal().unsqueeze(1);
  // Rank of each image's own spectrum among all held-out spectra (0 = first).
  const torch::Tensor rank = (sim > own).sum(1);
  Validation v;
  v.loss = loss / std::max<int64_t>(batches, 1);
  v.top1 = (rank < 1).to(torch::kDouble).mean().item<double>();
  v.top10 = (rank < 10).to(torch::kDouble).mean().item<double>();
  return v;
}

double learning_rate(const TrainOptions& o, int64_t step, int64_t total) {
  const int64_t warm = std::max<int64_t>(1, static_cast<int64_t>(o.warmup_fraction * total));
  if (step < warm) return o.lr * static_cast<double>(step + 1) / warm;
  const double t = static_cast<double>(step - warm) / std::max<int64_t>(1, total - warm);
  return o.lr * 0.5 * (1.0 + std::cos(M_PI * t));
}

json stats_json(const EpochStats& s) {
  return {{"epoch", s.epoch}, {"train_loss", s.train_loss}, {"val_loss", s.val_loss}, {"val_top1", s.val_top1},
          {"val_top10", s.val_top10}, {"examples_per_s", s.examples_per_s}};
}

EpochStats stats_of(const json& j) {
  EpochStats s;
  s.epoch = j.at("epoch");
  s.train_loss = j.at("train_loss");
  s.val_loss = j.at("val_loss");
  s.val_top1 = j.at("val_top1");
  s.val_top10 = j.at("val_top10");
  s.examples_per_s = j.at("examples_per_s");
  return s;
}

// Saves to a temporary name, then renames: a kill leaves the old file or the new one.
void save_module(torch::jit::Module& m, const std::string& path) {
  m.save(path + ".tmp");
  fs::rename(path + ".tmp", path);
}

struct Checkpoint {
  int64_t epoch = 0, step = 0, best_epoch = 0, bad_epochs = 0;
  double best_val = INFINITY;
  std::vector<EpochStats> history;
};

// checkpoint/ is replaced as a whole (written as checkpoint.tmp/, then renamed).
void write_checkpoint(const std::string& dir, torch::jit::Module& img, torch::jit::Module& spec,
                      torch::optim::AdamW& optim, const Checkpoint& c) {
  const fs::path tmp = dir + ".tmp", old = dir + ".old";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  img.save((tmp / "image.pt").string());
  spec.save((tmp / "spectrum.pt").string());
  torch::save(optim, (tmp / "optimizer.pt").string());
  json hist = json::array();
  for (const auto& s : c.history) hist.push_back(stats_json(s));
  json state = {{"epoch", c.epoch}, {"step", c.step}, {"best_epoch", c.best_epoch}, {"bad_epochs", c.bad_epochs},
                {"best_val", c.best_val}, {"history", hist}};
  std::ofstream((tmp / "state.json").string()) << state.dump(1) << "\n";
  fs::remove_all(old);
  if (fs::exists(dir)) fs::rename(dir, old);
  fs::rename(tmp, dir);
  fs::remove_all(old);
}

void run_training(TrainRun& run) {
  const TrainOptions& o = *run.options;
  const TrainInputs& in = *run.inputs;
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  torch::set_num_threads(o.threads > 0 ? static_cast<int>(o.threads) : std::max(1, hw));
  torch::manual_seed(static_cast<uint64_t>(o.seed));
  // The profiling executor swaps in fused kernels (rounding differently) after
  // a process's first calls: a resumed run would switch at another step than
  // the uninterrupted one. Plain graphs keep every step's arithmetic the same.
  torch::jit::setGraphExecutorOptimize(false);

  std::vector<int64_t> train, val;
  for (size_t i = 0; i < in.held_out.size(); ++i) (in.held_out[i] ? val : train).push_back(static_cast<int64_t>(i));
  const int64_t steps_per_epoch = static_cast<int64_t>(train.size()) / o.batch_size;  // last short batch dropped
  const int64_t total_steps = steps_per_epoch * o.epochs;

  torch::jit::Module img = image_tower(in.image_shape, o.embed_dim);
  torch::jit::Module spec = spectrum_tower(in.spectrum_shape, o.embed_dim);
  Checkpoint ck;
  const std::string state_path = (fs::path(run.checkpoint_dir) / "state.json").string();
  const bool resuming = o.resume && fs::exists(state_path);
  if (resuming) {
    // The saved modules' weights replace the fresh ones, parameter by parameter
    // in the same order, so the optimiser's saved state lines up with them.
    auto load_into = [&](torch::jit::Module& m, const std::string& file) {
      torch::jit::Module saved = torch::jit::load((fs::path(run.checkpoint_dir) / file).string());
      auto dst = parameters_of(m);
      auto src = parameters_of(saved);
      if (dst.size() != src.size()) throw FormatError("checkpoint '" + run.checkpoint_dir + "/" + file + "' has other towers");
      torch::NoGradGuard g;
      for (size_t i = 0; i < dst.size(); ++i) {
        if (!dst[i].sizes().equals(src[i].sizes()))
          throw FormatError("checkpoint '" + run.checkpoint_dir + "/" + file +
                            "' has towers of another shape (another --embed-dim or input?)");
        dst[i].copy_(src[i]);
      }
    };
    load_into(img, "image.pt");
    load_into(spec, "spectrum.pt");
    std::ifstream f(state_path);
    const json s = json::parse(f);
    ck.epoch = s.at("epoch");
    ck.step = s.at("step");
    ck.best_epoch = s.at("best_epoch");
    ck.bad_epochs = s.at("bad_epochs");
    ck.best_val = s.at("best_val").is_null() ? INFINITY : s.at("best_val").get<double>();
    for (const auto& h : s.at("history")) ck.history.push_back(stats_of(h));
  }
  std::vector<torch::Tensor> params = parameters_of(img);
  for (const auto& p : parameters_of(spec)) params.push_back(p);
  torch::optim::AdamW optim(params, torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  if (resuming) {
    torch::load(optim, (fs::path(run.checkpoint_dir) / "optimizer.pt").string());
    // Loaded tensors may sit at any offset of the archive's buffer, and
    // vectorised kernels round differently at other alignments: fresh copies
    // make a resumed run compute exactly what the uninterrupted one did.
    for (auto& [key, state] : optim.state()) {
      auto& s = static_cast<torch::optim::AdamWParamState&>(*state);
      s.exp_avg(s.exp_avg().clone());
      s.exp_avg_sq(s.exp_avg_sq().clone());
      if (s.max_exp_avg_sq().defined()) s.max_exp_avg_sq(s.max_exp_avg_sq().clone());
    }
  }
  for (const auto& s : ck.history) run.on_epoch(s);

  const bool stopped_early = ck.bad_epochs >= o.patience;
  for (int64_t epoch = ck.epoch + 1; epoch <= o.epochs && !stopped_early; ++epoch) {
    // Order and augmentation depend only on (seed, epoch): a resumed epoch is the one it replaces.
    std::mt19937_64 rng(static_cast<uint64_t>(o.seed) * 1000003u + static_cast<uint64_t>(epoch));
    std::vector<int64_t> order = train;
    std::shuffle(order.begin(), order.end(), rng);
    const auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0;
    for (int64_t b = 0; b < steps_per_epoch; ++b) {
      const std::vector<int64_t> idx(order.begin() + b * o.batch_size, order.begin() + (b + 1) * o.batch_size);
      const double lr = learning_rate(o, ck.step, total_steps);
      for (auto& group : optim.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      const torch::Tensor x_img = augment(rows_of(in.images, in.image_shape, idx), rng);
      const torch::Tensor x_spec = rows_of(in.spectra, in.spectrum_shape, idx);
      optim.zero_grad();
      torch::Tensor loss = info_nce(embed(img, x_img), embed(spec, x_spec), o.logit_scale);
      loss.backward();
      optim.step();
      loss_sum += loss.item<double>();
      ++ck.step;
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const Validation v = validate(img, spec, in, val, o.batch_size, o.logit_scale);
    EpochStats s;
    s.epoch = epoch;
    s.train_loss = loss_sum / std::max<int64_t>(steps_per_epoch, 1);
    s.val_loss = v.loss;
    s.val_top1 = v.top1;
    s.val_top10 = v.top10;
    s.examples_per_s = static_cast<double>(steps_per_epoch * o.batch_size) / std::max(secs, 1e-9);
    ck.epoch = epoch;
    ck.history.push_back(s);
    // Early stopping on the validation loss; the packages hold the best epoch.
    if (v.loss < ck.best_val - 1e-4) {
      ck.best_val = v.loss;
      ck.best_epoch = epoch;
      ck.bad_epochs = 0;
      save_module(img, run.image_model);
      save_module(spec, run.spectrum_model);
    } else {
      ++ck.bad_epochs;
    }
    write_checkpoint(run.checkpoint_dir, img, spec, optim, ck);
    run.on_epoch(s);
    if (ck.bad_epochs >= o.patience) break;
  }
  run.history = ck.history;
  run.best_epoch = ck.best_epoch;
}

}  // namespace

}  // namespace mmu

// The plug-in's training entry point (see src/learn/train.cpp). Errors of LibTorch
// (c10::Error) become mmu::Error here, where their type is known.
extern "C" __attribute__((visibility("default"))) void mmu_train_towers(mmu::TrainRun& run) {
  try {
    mmu::run_training(run);
  } catch (const c10::Error& e) {
    throw mmu::InternalError(std::string("training failed in LibTorch: ") + e.what_without_backtrace());
  }
}
