#include "query_command.h"

#include <fstream>
#include <iostream>

#include "mmu/device_search.h"
#include "mmu/sky.h"
#include "mmu/error.h"
#include "mmu/npy.h"
#include "mmu/result_format.h"
#include "mmu/store.h"
#include "mmu/store_set.h"
#include "list_spaces.h"
#include "store_flag.h"

namespace mmu::cli {

void add_filter_flags(CLI::App& app, QueryFlags& f) {
  app.add_option("--k", f.q.k, "number of results")->capture_default_str();
  app.add_option("--space", f.q.space, "embedding space (image, spectrum, ...) when the query has several");
  app.add_option("--survey", f.q.survey, "survey of the ids given, when an id exists in several");
  app.add_option("--in", f.q.filter.surveys, "only return objects of this survey (repeatable; dataset or dataset/subset)");
  app.add_option("--cells", f.cells, "only return objects in these nside-16 NESTED HEALPix cells")->delimiter(',');
  app.add_option("--cone", f.cone, "only return objects within a cone: RA,DEC,RADIUS (e.g. 150.1,2.2,30arcmin)");
  app.add_option("--where", f.q.filter.where,
                 "only return objects whose catalog columns pass, e.g. \"Z < 0.3 and SPECTYPE = 'GALAXY'\"");
  app.add_option("--dedup", f.q.dedup_arcsec,
                 "drop a result closer than this many arcsec on the sky to a better one (shredded sources)");
  app.add_flag("--exact", f.q.search.exact, "scan exactly even when the space has an approximate index");
  app.add_option("--nprobe", f.q.search.nprobe, "IVF lists to scan (default: the index's setting)");
  app.add_option("--ef-search", f.q.search.ef_search, "HNSW candidate list (default: the index's setting)");
  app.add_option("--device", f.device,
                 "where exact scans run: cpu (own scan), cuda (LibTorch on the GPU; builds with -DMMU_ENABLE_CUDA=ON), "
                 "or torch-cpu (the GPU code path on the CPU, a check); cuda and torch-cpu always scan exactly")
      ->capture_default_str();
  app.add_option("--format", f.format, "table, csv or json")->capture_default_str();
}

void add_query_flags(CLI::App& app, QueryFlags& f) {
  app.add_option("--like", f.q.like, "object_id to find neighbours of (repeatable: their vectors are averaged)");
  app.add_option("--unlike", f.q.unlike, "object_id to steer away from (repeatable)");
  app.add_option("--unlike-weight", f.q.unlike_weight, "weight of the --unlike mean")->capture_default_str();
  app.add_option("--near", f.near, "RA,DEC: use the nearest catalogued object (within --radius) as the query");
  app.add_option("--radius", f.radius, "search radius of --near, e.g. 10arcsec, 1arcmin")->capture_default_str();
  app.add_option("--vector", f.vector_file, "a .npy file holding one query vector (float32 or float64)");
  app.add_option("--like-file", f.like_file, "a file of object_ids, one per line: one result block per id (batched)");
  app.add_option("--from", f.q.from,
                 "cross-modal: the query objects' tower of a trained shared space: image, spectrum, or both (averaged)");
  app.add_option("--to", f.q.to, "cross-modal: the tower searched: image or spectrum");
  add_filter_flags(app, f);
}

void finish_query_flags(QueryFlags& f) {
  f.q.search.device = parse_search_device(f.device);
  if (!f.near.empty()) {
    const auto [ra, dec] = parse_sky_position(f.near, "--near");
    f.q.near = SkyCone{ra, dec, parse_angle_deg(f.radius, "--radius")};
  }
  if (!f.cone.empty()) f.q.filter.cone = parse_cone(f.cone, "--cone");
  f.q.filter.cells = f.cells;
  if (!f.vector_file.empty()) {
    std::vector<int64_t> shape;
    f.q.vector = read_npy_f32(f.vector_file, &shape);
    const bool one = shape.size() == 1 || (shape.size() == 2 && shape[0] == 1);
    if (!one || f.q.vector.empty())
      throw InvalidArgument("--vector '" + f.vector_file + "' must hold one vector, shape (d,) or (1, d)");
    f.q.vector_label = "vector " + f.vector_file;
  }
  check_search_settings(f.q);  // the server's check too: what one accepts the other does
}

std::vector<std::string> read_id_file(const std::string& path, const std::string& flag) {
  std::ifstream in(path);
  if (!in) throw NotFound("cannot read " + flag + " '" + path + "'");
  // Bounded, so a wrong file (/dev/zero, a binary) fails instead of filling memory.
  constexpr size_t kMaxLine = 4096;
  constexpr size_t kMaxIds = 1000000;
  std::vector<std::string> ids;
  std::string line;
  int64_t line_no = 0;
  std::streambuf* buf = in.rdbuf();
  for (;;) {
    line.clear();
    int c = 0;
    while ((c = buf->sbumpc()) != std::char_traits<char>::eof() && c != '\n') {
      if (line.size() == kMaxLine)
        throw InvalidArgument(flag + " '" + path + "' line " + std::to_string(line_no + 1) + " is longer than " +
                              std::to_string(kMaxLine) + " bytes: not a list of object ids");
      line.push_back(static_cast<char>(c));
    }
    if (c == std::char_traits<char>::eof() && line.empty()) break;
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    const size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    if (ids.size() == kMaxIds)
      throw InvalidArgument(flag + " '" + path + "' holds more than " + std::to_string(kMaxIds) +
                            " object ids (line " + std::to_string(line_no) + "); split it");
    ids.push_back(line.substr(start));
  }
  if (ids.empty()) throw InvalidArgument(flag + " '" + path + "' holds no object ids");
  return ids;
}

namespace {

// The query against one store, or against a set of stores (store_set.h).
struct Target {
  const Store* store = nullptr;
  const StoreSet* set = nullptr;
};

int run_like_query(const Target& t, QueryFlags& f) {
  const OutputFormat fmt = parse_output_format(f.format);
  finish_query_flags(f);
  if (t.set)
    for (const std::string& w : t.set->warnings()) std::cerr << "warning: " << w << "\n";
  if (!f.like_file.empty()) {
    if (!f.q.like.empty() || f.q.near || !f.q.vector.empty())
      throw InvalidArgument("--like-file runs one query per line: do not combine it with --like, --near or --vector");
    const std::vector<std::string> ids = read_id_file(f.like_file, "--like-file");
    const auto results = t.set ? search_like_set_batch(*t.set, f.q, ids, local_scanner(*t.set, f.q))
                               : search_like_batch(*t.store, f.q, ids);
    return write_like_batch(results, fmt, std::cout, std::cerr);
  }
  const LikeResult r = t.set ? search_like_set(*t.set, f.q, local_scanner(*t.set, f.q)) : search_like(*t.store, f.q);
  write_like_result(r, fmt, std::cout);
  if (!r.note.empty()) std::cerr << "note: " << r.note << "\n";
  return 0;
}

}  // namespace

void add_query_command(CLI::App& app, QueryCommandFlags& f) {
  add_query_flags(app, f.query);
  add_store_flag(&app, f.store,
                 "store directory; repeated, the stores are searched as the one store merged from them in that order")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
      ->each([&f](const std::string& s) { f.stores.push_back(s); });
  auto* manifest = app.add_option("--stores", f.stores_file,
                                  "a file listing stores, one per line, searched as the one store merged from them");
  manifest->excludes(app.get_option("--store"));
  // A set of stores is searched by the plain query only: a subcommand would silently take one of them.
  app.parse_complete_callback([&app, &f] {
    if ((f.stores.size() > 1 || !f.stores_file.empty()) && !app.get_subcommands().empty())
      throw CLI::ValidationError("--store", "several stores (or --stores) are searched as a set only by the plain "
                                            "query (--like, --near, --vector, --like-file), not by " +
                                                app.get_subcommands().front()->get_name());
  });
  auto* ls = app.add_flag("--list-spaces", f.list_spaces, "list the store's embedding spaces and how each is indexed");
  for (const char* query_flag : {"--like", "--near", "--vector", "--like-file"}) ls->excludes(app.get_option(query_flag));
}

int run_query(const QueryCommandFlags& f) {
  const LikeQuery& q = f.query.q;
  const bool asked = !q.like.empty() || !f.query.near.empty() || !f.query.vector_file.empty() || !f.query.like_file.empty();
  if (!f.list_spaces && !asked)
    throw InvalidArgument(
        "nothing to do: give --like <object_id>, --near RA,DEC, --vector f.npy, --like-file ids.txt or --list-spaces (see --help)");
  QueryFlags query = f.query;  // finish_query_flags fills in what the text flags say
  query.q.search.read_once = true;  // this process answers and exits (serve keeps its mappings warm)
  if (f.stores.size() > 1 || !f.stores_file.empty()) {
    const StoreSet set(f.stores_file.empty() ? f.stores : read_store_manifest(f.stores_file, "--stores"));
    if (f.list_spaces) {
      for (size_t i = 0; i < set.size(); ++i) {
        std::cout << "store " << set.path(i) << ":\n";
        list_spaces(set.store(i), std::cout);
      }
      return 0;
    }
    return run_like_query({nullptr, &set}, query);
  }
  auto store = Store::open(f.store);
  if (f.list_spaces) {
    list_spaces(*store, std::cout);
    return 0;
  }
  return run_like_query({store.get(), nullptr}, query);
}

}  // namespace mmu::cli
