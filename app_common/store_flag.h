// The --store flag, declared alike by every command that opens a store.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "mmu/store.h"

namespace mmu::cli {

// Adds --store to `command`, bound to `store`, which starts as the default
// store ($MMU_STORE or ./mmu-store). `what` says what the store is for.
inline CLI::Option* add_store_flag(CLI::App* command, std::string& store, const std::string& what = "store directory") {
  store = default_store_path();
  return command->add_option("--store", store, what + " (default: $MMU_STORE or ./mmu-store)");
}

}  // namespace mmu::cli
