#include "hunt_command.h"

#include <iostream>

#include "mmu/error.h"
#include "mmu/hunt.h"
#include "mmu/progress.h"
#include "mmu/result_format.h"
#include "mmu/store.h"
#include "store_flag.h"

namespace mmu::cli {

CLI::App* add_hunt_command(CLI::App& app, HuntFlags& f) {
  auto* h = app.add_subcommand("hunt", "rank objects like a few examples (rare-object hunt), or find outliers");
  h->add_option("--positives", f.positives_file, "file of object_ids of the wanted kind, one per line");
  h->add_option("--negatives", f.negatives_file, "file of object_ids known not to be of that kind");
  h->add_option("--method", f.method, "classifier (logistic regression against a random background) or mean (cosine to the positives' mean)")
      ->capture_default_str();
  h->add_option("--background", f.background, "random background objects for the classifier (default max(1000, 20 x positives))");
  h->add_option("--l2", f.l2, "classifier's L2 penalty")->capture_default_str();
  h->add_option("--seed", f.seed, "seed of the background sample")->capture_default_str();
  h->add_flag("--outliers", f.outliers, "rank every object by its distance to its --neighbours-th nearest neighbour");
  h->add_option("--neighbours", f.neighbours, "which neighbour measures isolation (with --outliers)")->capture_default_str();
  f.query.q.k = 100;
  add_filter_flags(*h, f.query);
  add_store_flag(h, f.store);
  return h;
}

int run_hunt(const HuntFlags& f) {
  const auto store = Store::open(f.store);
  const OutputFormat fmt = parse_output_format(f.query.format);
  QueryFlags query = f.query;  // finish_query_flags fills in what the text flags say
  finish_query_flags(query);
  LikeResult r;
  if (f.outliers) {
    if (!f.positives_file.empty() || !f.negatives_file.empty())
      throw InvalidArgument("--outliers needs no examples: drop --positives/--negatives");
    OutlierQuery q;
    q.neighbours = f.neighbours;
    q.search = query.q;
    q.progress = Progress::stderr_is_terminal();
    r = find_outliers(*store, q);
  } else {
    if (f.positives_file.empty()) throw InvalidArgument("hunt needs --positives ids.txt (or --outliers)");
    HuntQuery q;
    q.positives = read_id_file(f.positives_file, "--positives");
    if (!f.negatives_file.empty()) q.negatives = read_id_file(f.negatives_file, "--negatives");
    if (f.method == "classifier") q.method = HuntMethod::kClassifier;
    else if (f.method == "mean") q.method = HuntMethod::kMean;
    else throw InvalidArgument("--method must be classifier or mean, got '" + f.method + "'");
    q.background = f.background;
    q.l2 = f.l2;
    q.seed = f.seed;
    q.search = query.q;
    r = hunt(*store, q);
  }
  write_like_result(r, fmt, std::cout);
  if (!r.note.empty()) std::cerr << "note: " << r.note << "\n";
  return 0;
}

}  // namespace mmu::cli
