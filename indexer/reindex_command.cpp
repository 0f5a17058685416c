#include "reindex_command.h"

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "mmu/progress.h"
#include "mmu/store.h"
#include "store_flag.h"

namespace mmu::cli {

CLI::App* add_reindex_command(CLI::App& app, ReindexFlags& f) {
  auto* r = app.add_subcommand("reindex", "build a space's index (flat, flat16, ivf, hnsw, sq8) and measure its recall");
  add_store_flag(r, f.store);
  r->add_option("--space", f.space, "space to index (see mmu-search --list-spaces)")->required();
  r->add_option("--index", f.kind, "flat (exact fp32), flat16 (exact over fp16), ivf, hnsw or sq8 (exact, reads 1/4 of the bytes)")->capture_default_str();
  r->add_option("--nlist", f.spec.nlist, "IVF lists (default 4*sqrt(n))");
  r->add_option("--nprobe", f.spec.nprobe, "IVF lists scanned per query")->capture_default_str();
  r->add_option("--M", f.spec.m, "HNSW links per node")->capture_default_str();
  r->add_option("--ef-construction", f.spec.ef_construction, "HNSW build candidate list")->capture_default_str();
  r->add_option("--ef-search", f.spec.ef_search, "HNSW search candidate list")->capture_default_str();
  r->add_option("--recall-k", f.opt.recall_k, "k of the recall measurement")->capture_default_str();
  r->add_option("--recall-queries", f.opt.recall_queries, "stored vectors used as recall queries")
      ->capture_default_str();
  r->add_option("--seed", f.opt.seed, "seed of the query sample and of IVF training")->capture_default_str();
  r->add_flag("--quiet", f.quiet, "no progress lines");
  return r;
}

int run_reindex(const ReindexFlags& f) {
  IndexSpec spec = f.spec;
  spec.kind = parse_index_kind(f.kind);
  ReindexOptions opt = f.opt;
  auto store = Store::open(f.store);
  const std::string space = store->resolve_space_name(f.space);
  if (!f.quiet && Progress::stderr_is_terminal()) opt.log = [](const std::string& s) { std::cerr << s << "\n"; };
  const IndexRecord r = reindex_space(*store, space, spec, opt);
  char line[256];
  std::cout << "space " << space << ": " << describe_index(r.spec) << "\n";
  std::snprintf(line, sizeof(line), "  recall@%lld %.4f over %lld stored vectors as queries\n",
                static_cast<long long>(r.recall_k), r.recall, static_cast<long long>(r.recall_queries));
  std::cout << line;
  std::snprintf(line, sizeof(line), "  one query: %.3f ms (exact fp32 scan %.3f ms, %.1fx)\n", r.index_ms, r.exact_ms,
                r.exact_ms / std::max(r.index_ms, 1e-9));
  std::cout << line;
  std::snprintf(line, sizeof(line), "  built in %.2f s; ", r.build_s);
  std::cout << line << "recorded in " << index_record_path(store->space_dir(space)) << "\n";
  return 0;
}

}  // namespace mmu::cli
