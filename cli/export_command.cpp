#include "export_command.h"

#include <iostream>

#include "mmu/store.h"
#include "store_flag.h"

namespace mmu::cli {

CLI::App* add_export_command(CLI::App& app, ExportFlags& f) {
  auto* e = app.add_subcommand("export", "write a space's embeddings with ids and positions to FITS, HDF5, CSV or .npy");
  e->add_option("--space", f.options.space, "space to export (see --list-spaces)")->required();
  e->add_option("--format", f.format, "fits, hdf5 (MMU layout, one file per HEALPix cell), csv or npy (+ <name>.ids.txt)")
      ->capture_default_str();
  e->add_option("--out", f.options.out, "file to write (hdf5: a new folder)")->required();
  e->add_option("--where", f.options.where, "export only the objects this expression over catalog columns selects");
  e->add_option("--with-predictions", f.options.probe_path, "add the prediction of this saved probe (mmu-search probe --save)");
  add_store_flag(e, f.store);
  return e;
}

int run_export(const ExportFlags& f) {
  const auto store = Store::open(f.store);
  ExportOptions options = f.options;
  options.format = parse_export_format(f.format);
  const ExportSummary s = export_space(*store, options);
  std::cerr << "exported " << s.rows << " objects x " << s.dim << " of space " << s.space << " to";
  for (const auto& p : s.files) std::cerr << " " << p;
  std::cerr << "\n";
  return 0;
}

}  // namespace mmu::cli
