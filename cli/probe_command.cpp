#include "probe_command.h"

#include <cerrno>
#include <fstream>
#include <set>
#include <iostream>
#include <nlohmann/json.hpp>

#include "mmu/error.h"
#include "mmu/store.h"
#include "mmu/text.h"
#include "store_flag.h"

namespace mmu::cli {

using text::format_double;

namespace {

std::string pad(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

void print_table(const ProbeData& d, const ProbeReport& r, const ProbeOptions& o, std::ostream& out) {
  std::set<int64_t> cells(d.cells.begin(), d.cells.end());
  out << "space " << d.space << ", target " << d.target << " (" << probe_task_name(d.task) << "): " << d.size()
      << " labelled objects in " << cells.size() << " HEALPix cells, " << o.folds << " folds grouped by cell (seed "
      << o.seed << ")\n";
  out << "task " << probe_task_name(d.task) << ": " << d.task_reason << "\n";
  if (d.task == ProbeTask::kRegression) {
    out << "method    R2       RMSE        outliers(|d|/(1+true)>0.15)\n";
    for (const MethodScores* m : {&r.linear, &r.knn})
      out << pad(m->method, 8) << "  " << format_double("%-7.4f", m->r2) << "  " << format_double("%-10.5g", m->rmse) << "  "
          << format_double("%.4f", m->outlier_fraction) << "\n";
    out << "ridge alpha by inner CV per fold:";
    for (double a : r.fold_alpha) out << " " << format_double("%g", a);
    out << "; on all: " << format_double("%g", r.alpha) << "\n";
  } else {
    out << "method    accuracy  recall per class\n";
    for (const MethodScores* m : {&r.linear, &r.knn}) {
      out << pad(m->method, 8) << "  " << format_double("%-8.4f", m->accuracy) << " ";
      for (size_t c = 0; c < d.class_names.size(); ++c) out << " " << d.class_names[c] << "=" << format_double("%.3f", m->recall[c]);
      out << "\n";
    }
    for (const MethodScores* m : {&r.linear, &r.knn}) {
      out << "confusion (" << m->method << "; rows true, columns predicted):";
      for (const auto& name : d.class_names) out << " " << name;
      out << "\n";
      for (size_t t = 0; t < d.class_names.size(); ++t) {
        out << "  " << pad(d.class_names[t], 12);
        for (int64_t v : m->confusion[t]) out << " " << v;
        out << "\n";
      }
    }
  }
}

nlohmann::json method_json(const ProbeData& d, const MethodScores& m) {
  nlohmann::json j;
  j["method"] = m.method;
  if (d.task == ProbeTask::kRegression) {
    j["r2"] = m.r2;
    j["rmse"] = m.rmse;
    j["outlier_fraction"] = m.outlier_fraction;
  } else {
    j["accuracy"] = m.accuracy;
    j["recall"] = m.recall;
    j["confusion"] = m.confusion;
  }
  return j;
}

// Every number of the report plus, per object, its fold and out-of-fold
// predictions: what an independent check needs to redo the same folds.
nlohmann::json report_json(const ProbeData& d, const ProbeReport& r, const ProbeOptions& o) {
  nlohmann::json j;
  j["space"] = d.space;
  j["target"] = d.target;
  j["task"] = probe_task_name(d.task);
  j["task_reason"] = d.task_reason;
  j["folds"] = o.folds;
  j["seed"] = o.seed;
  j["knn_k"] = o.knn_k;
  j["alphas"] = o.alphas;
  j["fold_alpha"] = r.fold_alpha;
  j["alpha"] = r.alpha;
  j["classes"] = d.class_names;
  j["linear"] = method_json(d, r.linear);
  j["knn"] = method_json(d, r.knn);
  nlohmann::json objects = nlohmann::json::array();
  for (int64_t i = 0; i < d.size(); ++i) {
    nlohmann::json o_;
    o_["object_id"] = d.ids[i];
    o_["fold"] = r.fold[i];
    if (d.task == ProbeTask::kRegression) {
      o_["true"] = d.values[i];
      o_["linear"] = r.linear.predicted[i];
      o_["knn"] = r.knn.predicted[i];
    } else {
      o_["true"] = d.class_names[d.classes[i]];
      o_["linear"] = d.class_names[r.linear.predicted_class[i]];
      o_["knn"] = d.class_names[r.knn.predicted_class[i]];
    }
    objects.push_back(std::move(o_));
  }
  j["objects"] = std::move(objects);
  return j;
}

}  // namespace

CLI::App* add_probe_command(CLI::App& app, ProbeFlags& f) {
  auto* p = app.add_subcommand("probe", "cross-validated linear probe and zero-shot k-NN of a label on a space's embeddings");
  p->add_option("--space", f.space, "space whose embeddings are probed")->required();
  p->add_option("--target", f.target, "label column: of --labels, else a stored catalog column")->required();
  p->add_option("--labels", f.labels, "CSV with object_id (optionally survey) and the --target column");
  p->add_option("--task", f.task, "regression or classification (default: classification for text labels and for integers with at most 20 distinct values, else regression)");
  p->add_option("--folds", f.options.folds, "cross-validation folds, grouped by HEALPix cell")->capture_default_str();
  p->add_option("--seed", f.options.seed, "which cells go to which fold")->capture_default_str();
  p->add_option("--save", f.save, "write the probe fitted on all labelled objects (JSON) for mmu-search predict");
  p->add_option("--plot", f.plot, "write an SVG: predicted vs true, or the confusion matrix");
  p->add_option("--format", f.format, "table or json (json adds every object's fold and predictions)")->capture_default_str();
  add_store_flag(p, f.store);
  return p;
}

int run_probe(const ProbeFlags& f) {
  const auto store = Store::open(f.store);
  if (f.format != "table" && f.format != "json") throw InvalidArgument("--format must be table or json, got '" + f.format + "'");
  std::optional<ProbeTask> task;
  if (!f.task.empty()) task = parse_probe_task(f.task);
  const ProbeData d = load_probe_data(*store, f.space, f.target, f.labels, task);
  const ProbeReport r = cross_validate(d, f.options);
  if (f.format == "json") std::cout << report_json(d, r, f.options).dump(1) << "\n";
  else print_table(d, r, f.options, std::cout);
  if (!f.plot.empty()) {
    std::ofstream svg(f.plot);
    svg << probe_plot_svg(d, r.linear);
    if (!svg.flush()) throw IoError(f.plot, "--plot: cannot write", errno);
  }
  if (!f.save.empty()) save_probe(fit_probe(d, f.options, r.alpha), f.save);
  return 0;
}

}  // namespace mmu::cli
