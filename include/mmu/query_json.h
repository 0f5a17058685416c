// The JSON form of queries, for `mmu-search serve`: request bodies (and the
// query string of GET /like) parsed into LikeQuery with limits, and the
// store's spaces as JSON. Results are written by result_format.h, so the
// server answers exactly what `mmu-search --format json` prints.
//
// A request can only name objects, positions and inline vectors: there is no
// field that names a file, so nothing a client sends makes the server read one.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mmu/query.h"
#include "mmu/store.h"

namespace mmu {

// What one request may ask for; a request over a limit is refused (InvalidArgument naming the field).
struct QueryLimits {
  int64_t max_k = 10000;
  int64_t max_ids = 1000;          // `ids` of a batch, and `like` + `unlike` of one query
  int64_t max_vector_dim = 65536;  // values of `vector`
  int64_t max_cells = 12288;       // every nside-16 cell
};

struct BatchQuery {
  LikeQuery common;  // the fields shared by every query of the batch
  std::vector<std::string> ids;
};

// POST /query: a JSON object with exactly one of `like`, `near` or `vector`
// and optional `unlike`, `unlike_weight`, `k`, `space`, `survey`, `in`,
// `cells`, `cone`, `where`, `dedup_arcsec`, `exact`, `nprobe`, `ef_search`.
// Throws InvalidArgument naming the field for malformed JSON, an unknown
// field, a wrong type, a bad value or a value over a limit.
LikeQuery parse_query_json(const std::string& body, const QueryLimits& limits);

// POST /batch: `ids` (one query per id, like --like-file) plus the fields
// above other than `like`, `unlike`, `near` and `vector`.
BatchQuery parse_batch_json(const std::string& body, const QueryLimits& limits);

// GET /like?id=X[&id=Y]&k=N&space=S&survey=S&in=S&unlike=Z&where=E&exact=true:
// the parameters as the same fields (k an integer, exact true/false), so the
// same checks and errors apply. Repeatable: id, unlike, in.
LikeQuery parse_query_params(const std::vector<std::pair<std::string, std::string>>& params,
                             const QueryLimits& limits);

// GET /spaces: {"spaces": [{"name", "modality", "model", "version", "dim",
// "count", "created", "sha256", "search"}, ...]}, as --list-spaces shows them.
std::string spaces_json(const Store& store);

}  // namespace mmu
