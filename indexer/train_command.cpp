#include "train_command.h"

#include <cstdio>
#include <iostream>

#include "store_flag.h"

namespace mmu::cli {

CLI::App* add_train_command(CLI::App& app, TrainFlags& f) {
  TrainOptions& opt = f.options;
  auto* t = app.add_subcommand("train", "train an AstroCLIP-style image-spectrum model on the store's linked pairs");
  add_store_flag(t, opt.store, "store directory with xmatch --link pairs");
  t->add_option("--pairs", opt.pairs, "the two modalities of each pair")->capture_default_str();
  t->add_option("--out", opt.out, "model folder: image/ and spectrum/ packages, train.json, checkpoint/")->required();
  t->add_option("--name", opt.name, "model name (the towers are NAME-image and NAME-spectrum)")->capture_default_str();
  t->add_option("--version", opt.version, "model version (spaces are NAME-image@VERSION, ...)")->capture_default_str();
  t->add_option("--epochs", opt.epochs, "at most this many passes over the training pairs")->capture_default_str();
  t->add_option("--batch-size", opt.batch_size, "pairs per step (the contrastive batch)")->capture_default_str();
  t->add_option("--lr", opt.lr, "peak AdamW learning rate (linear warm-up, cosine decay)")->capture_default_str();
  t->add_option("--weight-decay", opt.weight_decay, "AdamW weight decay")->capture_default_str();
  t->add_option("--seed", opt.seed, "seed of weights, split, order and augmentation")->capture_default_str();
  t->add_option("--embed-dim", opt.embed_dim, "dimension of the shared space")->capture_default_str();
  t->add_option("--logit-scale", opt.logit_scale, "fixed InfoNCE logit scale (AstroCLIP: 15.5)")->capture_default_str();
  t->add_option("--val-fraction", opt.val_fraction, "pairs held out, by whole HEALPix cells")->capture_default_str();
  t->add_option("--patience", opt.patience, "stop after this many epochs without a better validation loss")
      ->capture_default_str();
  t->add_option("--image-crop", opt.image_crop, "centre crop of the image tower's input (pixels)")->capture_default_str();
  t->add_option("--threads", opt.threads, "LibTorch threads (default: all cores)");
  t->add_flag("--resume", opt.resume, "continue the training in --out from its last checkpoint");
  return t;
}

int run_train(const TrainFlags& f) {
  TrainOptions opt = f.options;
  opt.log = [](const std::string& line) { std::cout << line << std::endl; };
  const TrainReport r = train_model(opt);
  char line[256];
  std::snprintf(line, sizeof(line), "trained in %.1f s; best epoch %lld of %zu (its weights are the packages)\n",
                r.seconds, static_cast<long long>(r.best_epoch), r.history.size());
  std::cout << line;
  std::cout << "shared space " << r.shared_space << "\n";
  std::cout << "  image tower:    " << r.image_package << "\n";
  std::cout << "  spectrum tower: " << r.spectrum_package << "\n";
  std::cout << "embed with: mmu-index build ROOTS --store " << opt.store << " --model " << r.image_package << " --model "
            << r.spectrum_package << "\n";
  return 0;
}

}  // namespace mmu::cli
