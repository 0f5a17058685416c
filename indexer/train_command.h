// `mmu-index train`: an image-spectrum model of one's own from the store's
// cross-match links (see mmu/train.h).
#pragma once

#include <CLI/CLI.hpp>

#include "mmu/train.h"

namespace mmu::cli {

CLI::App* setup_train(CLI::App& app, TrainOptions& opt);
int run_train(TrainOptions& opt);

}  // namespace mmu::cli
