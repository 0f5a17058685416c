// `mmu-index preprocess`: the exact model inputs of a file's first objects,
// written to a .npy (what the model sees).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace mmu::cli {

struct PreprocessFlags {
  std::string file, model, out;
  int64_t limit = 64;
};

CLI::App* add_preprocess_command(CLI::App& app, PreprocessFlags& f);
int run_preprocess(const PreprocessFlags& f);

}  // namespace mmu::cli
