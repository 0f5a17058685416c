#include "pairs_command.h"

#include <iostream>

#include "mmu/pairs.h"
#include "mmu/sky.h"

namespace mmu::cli {

CLI::App* add_pairs_command(CLI::App& app, PairsFlags& f) {
  auto* p = app.add_subcommand(
      "pairs", "cross-match two MMU surveys and write the matched examples as an MMU dataset (HDF5 per HEALPix cell)");
  p->add_option("--left", f.left, "MMU folder or file whose rows (e.g. images) each pair starts from")->required();
  p->add_option("--right", f.right, "MMU folder or file matched to it (e.g. spectra)")->required();
  p->add_option("--radius", f.radius, "match radius, e.g. 1arcsec, 0.5arcsec, 2arcmin")->capture_default_str();
  p->add_option("--out", f.out, "folder to write <out>/<name>/healpix=N/001-of-001.hdf5 into")->required();
  p->add_option("--name", f.name, "dataset folder name (default <left dataset>_x_<right dataset>)");
  p->add_flag("--all", f.all, "every pair within the radius, not only each left object's nearest");
  p->add_flag("--quiet", f.quiet, "no progress line");
  return p;
}

int run_pairs(const PairsFlags& f) {
  PairsOptions o;
  o.left = f.left;
  o.right = f.right;
  o.out = f.out;
  o.name = f.name;
  o.radius_deg = parse_angle_deg(f.radius, "--radius");
  o.all_pairs = f.all;
  o.progress = !f.quiet;
  const PairsSummary s = write_pairs(o);
  std::cerr << s.pairs << " pairs within " << o.radius_deg * 3600.0 << " arcsec (" << s.left_objects << " left, "
            << s.right_objects << " right objects): " << s.cells_written << " cells written ("
            << s.pairs_written << " pairs)";
  if (s.cells_kept > 0) std::cerr << ", " << s.cells_kept << " complete from an earlier run kept";
  std::cerr << ", in " << s.dataset_dir << "\n";
  return 0;
}

}  // namespace mmu::cli
