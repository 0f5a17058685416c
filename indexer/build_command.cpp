#include "build_command.h"

#include <signal.h>

#include <atomic>
#include <iostream>

#include "mmu/error.h"
#include "store_flag.h"

namespace mmu::cli {

namespace {

// SIGINT/SIGTERM ask the build to stop at its next safe point, so that it
// unwinds and removes its unfinished generation; the default action would
// kill it without unwinding. A second signal kills at once.
std::atomic<bool> g_interrupted{false};

extern "C" void on_interrupt(int sig) {
  g_interrupted.store(true);
  ::signal(sig, SIG_DFL);
}

void stop_on_interrupt() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a --wait for the lock ends on Ctrl-C too
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

}  // namespace

CLI::App* add_build_command(CLI::App& app, BuildFlags& f) {
  BuildOptions& o = f.options;
  auto* b = app.add_subcommand("build", "read MMU files, embed them (baseline PCA) and write a store");
  b->add_option("roots", o.roots, "folders (or files) of MMU data: <dataset>/<subset>/healpix=N/*.hdf5")->required();
  add_store_flag(b, o.store);
  b->add_option("--batch-size", o.batch_size,
                "objects per batch (default: 64 for the baseline; for models the fastest of 8/16/32/64, measured)");
  b->add_option("--dim", o.dim, "baseline embedding dimension per space")->capture_default_str();
  b->add_flag("--quiet", f.quiet, "no progress lines");
  b->add_option("--model", o.models, "model package folder (repeatable): adds one embedding space each");
  b->add_option("--threads", o.threads, "LibTorch threads for models (default: all cores)");
  b->add_option("--device", o.device, "where models run: cpu, or cuda (needs a -DMMU_ENABLE_CUDA=ON build)")
      ->capture_default_str();
  b->add_flag("--refit", o.refit,
              "read every file again and refit the baseline (default: reuse the objects and vectors of unchanged files)");
  b->add_flag("--resume", o.resume, "continue an interrupted build, reusing its finished partitions");
  b->add_flag("--wait", f.wait, "wait while another process writes the store (default: fail at once, naming it)");
  b->add_flag("--skip-bad", o.skip_bad, "leave out files that cannot be read (each is reported) instead of stopping");
  b->add_option("--fit", o.fit_dir,
                 "fit folder made by `mmu-index fit`: project every baseline space with its PCA (sharded builds)");
  b->add_option("--shard", o.shard,
                "I/N: read only the files of the HEALPix cells c with c mod N == I (needs --fit)");
  b->add_option("--cells", o.cells, "LIST: read only the files of these nside-16 cells, e.g. 3,7,9-12 (needs --fit)");
  b->add_option("--sq8-from-rows", o.sq8_from_rows,
                "spaces of at least this many vectors get the sq8 copy (exact, a quarter of the bytes scanned); 0 = never")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  return b;
}

int run_build(const BuildFlags& f) {
  BuildOptions o = f.options;
  o.progress = !f.quiet;
  o.wait_for_lock = f.wait;
  o.cancel = &g_interrupted;
  stop_on_interrupt();
  BuildReport report;
  try {
    report = build_store(o);
  } catch (const Error&) {
    if (!g_interrupted.load()) throw;
    std::cerr << "interrupted: store '" << o.store << "' is as it was before the build\n";
    return 130;  // 128 + SIGINT, as a shell reports a process that a signal stopped
  }
  for (const auto& what : report.warnings) std::cerr << "warning: " << what << "\n";
  if (!f.quiet) print_build_report(report, o.store, std::cout);
  else
    for (const auto& why : report.skipped) std::cerr << "skipped (--skip-bad): " << why << "\n";
  if (f.quiet)
    for (const auto& why : report.model_skips) std::cerr << "not in model space " << why << "\n";
  return 0;
}

}  // namespace mmu::cli
