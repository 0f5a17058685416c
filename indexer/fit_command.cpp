#include "fit_command.h"

#include <iostream>

namespace mmu::cli {

CLI::App* add_fit_command(CLI::App& app, FitFlags& f) {
  FitOptions& o = f.options;
  auto* c = app.add_subcommand("fit", "fit the baseline PCA of every baseline space on a seeded sample of HEALPix cells, "
                                      "for sharded builds (build --fit)");
  c->add_option("roots", o.roots, "folders (or files) of MMU data: <dataset>/<subset>/healpix=N/*.hdf5")->required();
  c->add_option("--out", o.out, "fit folder to write (fit.json + <space>/fit.bin); replaces an older fit there")
      ->required();
  c->add_option("--sample-cells", o.sample_cells,
                "HEALPix cells read per space, chosen by --seed (0 = every cell)")
      ->capture_default_str();
  c->add_option("--seed", o.seed, "seed of the cell sample")->capture_default_str();
  c->add_option("--dim", o.dim, "baseline embedding dimension per space")->capture_default_str();
  c->add_flag("--quiet", f.quiet, "no progress lines, no report");
  return c;
}

int run_fit(const FitFlags& f) {
  FitOptions o = f.options;
  o.progress = !f.quiet;
  const FitReport report = fit_baseline(o);
  for (const auto& w : report.warnings) std::cerr << "warning: " << w << "\n";
  if (!f.quiet) print_fit_report(report, o.out, std::cout);
  return 0;
}

}  // namespace mmu::cli
