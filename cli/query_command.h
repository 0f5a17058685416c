// The query flags of mmu-search (--like, --near, --vector, --like-file and
// the filters), shared by the plain command and `hunt`.
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
// Runs the query (or the batch of --like-file) and prints it; the exit code.
int run_query(const Store& store, QueryFlags& f);

}  // namespace mmu::cli
