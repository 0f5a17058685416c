#include "predict_command.h"

#include "mmu/export.h"
#include "mmu/probe.h"
#include "mmu/store.h"
#include "store_flag.h"

namespace mmu::cli {

CLI::App* add_predict_command(CLI::App& app, PredictFlags& f) {
  auto* p = app.add_subcommand("predict", "apply a saved probe to every object of its space (CSV)");
  p->add_option("--probe", f.probe, "probe file written by mmu-search probe --save")->required();
  p->add_option("--out", f.out, "CSV file to write (- = standard output)")->capture_default_str();
  p->add_option("--where", f.where, "predict only for the objects this expression selects");
  add_store_flag(p, f.store);
  return p;
}

int run_predict(const PredictFlags& f) {
  const auto store = Store::open(f.store);
  ExportOptions o;
  o.space = load_probe(f.probe).space;
  o.format = ExportFormat::kCsv;
  o.out = f.out;
  o.where = f.where;
  o.probe_path = f.probe;
  o.with_embedding = false;
  export_space(*store, o);
  return 0;
}

}  // namespace mmu::cli
