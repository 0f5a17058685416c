// mmu-index: ingest MMU files into a store.
#include <iostream>

#include "cli_common.h"
#include "process_defaults.h"
#include "mmu/build.h"
#include "mmu/inspect.h"
#include "mmu/model_package.h"
#include "mmu/npy.h"
#include "mmu/store.h"
#include "mmu/version.h"
#include "reindex_command.h"
#include "train_command.h"
#include "xmatch_command.h"

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
  b->add_option("--batch-size", build.batch_size,
                "objects per batch (default: 64 for the baseline; for models the fastest of 8/16/32/64, measured)");
  b->add_option("--dim", build.dim, "baseline embedding dimension per space")->capture_default_str();
  b->add_flag("--quiet", quiet, "no progress lines");
  b->add_option("--model", build.models, "model package folder (repeatable): adds one embedding space each");
  b->add_option("--threads", build.threads, "LibTorch threads for models (default: all cores)");
  b->add_option("--device", build.device, "where models run: cpu, or cuda (needs a -DMMU_ENABLE_CUDA=ON build)")
      ->capture_default_str();
  b->add_flag("--refit", build.refit,
              "read every file again and refit the baseline (default: reuse the objects and vectors of unchanged files)");
  b->add_flag("--resume", build.resume, "continue an interrupted build, reusing its finished partitions");
  b->add_flag("--skip-bad", build.skip_bad, "leave out files that cannot be read (each is reported) instead of stopping");

  std::vector<std::string> inspect_paths;
  std::string inspect_format = "text";
  auto* ins = app.add_subcommand("inspect", "describe MMU files: keys, dtypes, shapes, compression, what is read");
  ins->add_option("paths", inspect_paths, "files or folders")->required();
  ins->add_option("--format", inspect_format, "text or json")->check(CLI::IsMember({"text", "json"}));

  std::string pre_path, pre_model, pre_out;
  int64_t pre_limit = 64;
  auto* pre = app.add_subcommand("preprocess", "write the exact model inputs of a file's objects to a .npy (what the model sees)");
  pre->add_option("file", pre_path, "one MMU file")->required();
  pre->add_option("--model", pre_model, "model package folder (its card names the transform)")->required();
  pre->add_option("--out", pre_out, "output .npy: objects x input shape, in file row order")->required();
  pre->add_option("--limit", pre_limit, "at most this many objects (from the first row)")->capture_default_str();

  mmu::cli::XmatchOptions xmatch;
  xmatch.store = mmu::default_store_path();
  auto* xm = mmu::cli::setup_xmatch(app, xmatch);

  mmu::cli::ReindexCommand reindex;
  reindex.store = mmu::default_store_path();
  auto* ri = mmu::cli::setup_reindex(app, reindex);

  mmu::TrainOptions train;
  train.store = mmu::default_store_path();
  auto* tr = mmu::cli::setup_train(app, train);

  // CLI11 reports a misspelt subcommand as "a subcommand is required": name it.
  if (argc > 1 && argv[1][0] != '-') {
    std::string known;
    bool found = false;
    for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      known += (known.empty() ? "" : ", ") + sub->get_name();
      found = found || sub->get_name() == argv[1];
    }
    if (!found) {
      std::cerr << "error: unknown command '" << argv[1] << "' (known: " << known << ")\n";
      return 2;
    }
  }

  return mmu::cli::run_main(app, argc, argv, [&] {
    if (xm->parsed()) return mmu::cli::run_xmatch(xmatch);
    if (ri->parsed()) return mmu::cli::run_reindex(reindex);
    if (tr->parsed()) return mmu::cli::run_train(train);
    if (pre->parsed()) {
      if (pre_limit <= 0) throw mmu::InvalidArgument("--limit must be >= 1");
      const mmu::ModelCard card = mmu::load_model_card(pre_model);
      mmu::SourceFile f;
      f.path = pre_path;
      mmu::MmuFileReader reader(f);
      const int64_t n = std::min(pre_limit, reader.rows());
      std::vector<float> inputs;
      mmu::ImageBatch images;
      mmu::SpectrumBatch spectra;
      if (card.modality == "image" && reader.modality() == mmu::Modality::kImage) {
        reader.read_images(0, n, &images);
        mmu::prepare_model_inputs(card, &images, nullptr, &inputs);
      } else if (card.modality == "spectrum" && reader.modality() == mmu::Modality::kSpectrum) {
        reader.read_spectra(0, n, &spectra);
        mmu::prepare_model_inputs(card, nullptr, &spectra, &inputs);
      } else {
        throw mmu::InvalidArgument("'" + pre_path + "' holds " + mmu::modality_name(reader.modality()) +
                                   " data, model '" + card.name + "' takes " + card.modality);
      }
      std::vector<int64_t> shape = {n};
      shape.insert(shape.end(), card.input_shape.begin(), card.input_shape.end());
      mmu::write_npy_f32(pre_out, shape, inputs.data());
      return 0;
    }
    if (ins->parsed()) {
      const auto files = mmu::inspect_paths(inspect_paths);
      if (inspect_format == "json")
        mmu::write_inspection_json(files, std::cout);
      else
        mmu::write_inspection_text(files, std::cout);
      for (const auto& f : files)
        if (!f.error.empty()) return 1;
      return 0;
    }
    if (b->parsed()) {
      build.progress = !quiet;
      const mmu::BuildReport report = mmu::build_store(build);
      if (!quiet) mmu::print_build_report(report, build.store, std::cout);
      else
        for (const auto& why : report.skipped) std::cerr << "skipped (--skip-bad): " << why << "\n";
      if (quiet)
        for (const auto& why : report.model_skips) std::cerr << "not in model space " << why << "\n";
    }
    return 0;
  });
}
