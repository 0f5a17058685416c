// The plain command of mmu-search (no subcommand): a query by --like, --near,
// --vector or --like-file with filters, or --list-spaces. Its query flags are
// shared with `hunt`.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "mmu/query.h"

namespace mmu::cli {

struct QueryFlags {
  LikeQuery q;
  std::string near, radius = "10arcsec", vector_file, like_file, cone, format = "table", device = "cpu";
  std::vector<int64_t> cells;
};

// Filter and search flags (--in, --cells, --cone, --where, --dedup, --exact,
// --nprobe, --ef-search, --device, --space, --survey, --k, --format) on `app`.
void add_filter_flags(CLI::App& app, QueryFlags& f);
// Everything: what to look for (--like, --unlike, --near, --vector, --like-file) and the filters.
void add_query_flags(CLI::App& app, QueryFlags& f);
// Moves the parsed text flags into f.q (positions, cone, vector file, device).
void finish_query_flags(QueryFlags& f);
// Object ids of a file, one per line ('#' comments and blank lines skipped);
// errors name `flag`.
std::vector<std::string> read_id_file(const std::string& path, const std::string& flag);

// The plain command's flags, declared on mmu-search itself.
struct QueryCommandFlags {
  QueryFlags query;
  std::string store;                // the last --store (what subcommands use)
  std::vector<std::string> stores;  // every --store, in order: several are searched as a set
  std::string stores_file;          // --stores: a manifest listing a set of stores
  bool list_spaces = false;
};

// The query flags, --store and --list-spaces, on `app` itself.
void add_query_command(CLI::App& app, QueryCommandFlags& f);
// Runs the query (or the batch of --like-file) and prints it, or lists the
// spaces; the exit code.
int run_query(const QueryCommandFlags& f);

}  // namespace mmu::cli
