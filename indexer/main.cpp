// mmu-index: ingest MMU files into a store.
#include <iostream>

#include "../cli/cli_common.h"
#include "mmu/build.h"
#include "mmu/store.h"
#include "mmu/version.h"

int main(int argc, char** argv) {
  CLI::App app{"mmu-index: build an embedding store from Multimodal Universe HDF5 files"};
  app.set_version_flag("--version", std::string("mmu-index ") + mmu::kVersion);
  app.require_subcommand(1);

  mmu::BuildOptions build;
  build.store = mmu::default_store_path();
  bool quiet = false;
  auto* b = app.add_subcommand("build", "read MMU files, embed them (baseline PCA) and write a store");
  b->add_option("roots", build.roots, "folders (or files) of MMU data: <dataset>/<subset>/healpix=N/*.hdf5")
      ->required();
  b->add_option("--store", build.store, "store directory (default: $MMU_STORE or ./mmu-store)");
  b->add_option("--batch-size", build.batch_size, "objects read and preprocessed at a time")->capture_default_str();
  b->add_option("--dim", build.dim, "baseline embedding dimension per space")->capture_default_str();
  b->add_flag("--quiet", quiet, "no progress lines");

  return mmu::cli::run_main(app, argc, argv, [&] {
    if (b->parsed()) {
      build.progress = !quiet;
      const mmu::BuildReport report = mmu::build_store(build);
      if (!quiet) mmu::print_build_report(report, build.store, std::cout);
    }
    return 0;
  });
}
