// `mmu-index train`: an AstroCLIP-style contrastive model of our own. Pairs of
// cross-matched objects (an image and a spectrum of one galaxy, found by
// `xmatch --link`) train two small towers into one L2-normalised space with
// the symmetric InfoNCE loss (docs/MODELS.md §1). The result is two model packages
// (TorchScript + card, one per tower) that `build --model` loads like any other.
//
//   <out>/train.json            ours: format "mmu-train/1", the options, per-epoch history
//   <out>/image/model.{pt,json}  the image tower's package (best validation epoch)
//   <out>/spectrum/model.{pt,json}
//   <out>/checkpoint/           the last finished epoch (towers, optimiser, state), for --resume
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mmu {

struct TrainOptions {
  std::string store, out;
  std::string pairs = "image:spectrum";  // the two modalities, "first:second"
  std::string name = "mmu-clip", version = "1";
  int64_t epochs = 20, batch_size = 64, embed_dim = 64, patience = 3, seed = 0, threads = 0;
  int64_t image_crop = 64;    // astroclip-image crop of the image tower's input
  double lr = 1e-3, weight_decay = 1e-4, logit_scale = 15.5, val_fraction = 0.2;
  double warmup_fraction = 0.1;  // of all steps, linear from 0 to lr, then cosine to 0
  bool resume = false;
  std::function<void(const std::string&)> log;  // one line per epoch and stage
};

struct EpochStats {
  int64_t epoch = 0;  // 1-based
  double train_loss = 0, val_loss = 0, val_top1 = 0, val_top10 = 0, examples_per_s = 0;
};

struct TrainReport {
  int64_t train_pairs = 0, val_pairs = 0, best_epoch = 0;
  std::vector<int64_t> val_cells;  // nside-16 cells of the held-out pairs (recorded in train.json)
  std::vector<EpochStats> history;
  double seconds = 0;
  std::string image_package, spectrum_package, shared_space;
};

// Throws InvalidArgument naming the flag (too few pairs, bad modalities, an
// --out that holds something else), NotFound for a missing store.
TrainReport train_model(const TrainOptions& opt);

// "epoch 3/20: train loss ... val loss ... val top-1 ... top-10 ... (chance ...) ... examples/s"
std::string format_epoch(const EpochStats& s, int64_t epochs, int64_t val_pairs);

// What the core hands the LibTorch plug-in (plugin/torch_train.cpp): prepared
// inputs of every pair, in pair order, and which pairs are held out.
struct TrainInputs {
  std::vector<int64_t> image_shape, spectrum_shape;  // per object, without the batch axis
  std::vector<float> images, spectra;                // pairs x shape, row-major
  std::vector<uint8_t> held_out;                     // per pair
};

struct TrainRun {
  const TrainOptions* options = nullptr;
  const TrainInputs* inputs = nullptr;
  std::string image_model, spectrum_model;  // where the best towers are saved (model.pt)
  std::string checkpoint_dir;
  std::function<void(const EpochStats&)> on_epoch;
  // Out: history of every epoch (resumed ones included), best epoch.
  std::vector<EpochStats> history;
  int64_t best_epoch = 0;
};

}  // namespace mmu
