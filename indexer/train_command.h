// `mmu-index train`: an image-spectrum model of one's own from the store's
// cross-match links (see mmu/train.h).
#pragma once

#include <CLI/CLI.hpp>

#include "mmu/train.h"

namespace mmu::cli {

struct TrainFlags {
  TrainOptions options;  // every flag is one of the library's options
};

CLI::App* add_train_command(CLI::App& app, TrainFlags& f);
int run_train(const TrainFlags& f);

}  // namespace mmu::cli
