// `mmu-search-mpi --serve`: rank 0 answers the search API of `mmu-search
// serve` (http_service.h: /health, /spaces, /like, /query, /batch; no
// gallery) over the set of stores, each request's scans going through every
// rank with the request's own options (rank_scanner.h). The other ranks run
// serve_scans meanwhile.
//
// A lost rank fails the request that met it (503 naming the rank), then the
// service stops and run_set_service throws RankLost: the job must be
// aborted (Open MPI 4.1 cannot go on without a rank). A stop signal ends it
// cleanly once the requests in progress are answered.
#pragma once

#include "http_service.h"
#include "mmu/store_set.h"
#include "mmu/types.h"
#include "rank_scanner.h"

namespace mmu::mpi {

// Rank 0: serves until SIGINT/SIGTERM (blocked in every thread beforehand:
// HttpService::block_stop_signals), then returns 0; the caller stops the
// ranks. `device` applies to every query. Requires MPI_THREAD_SERIALIZED.
int run_set_service(const StoreSet& set, const cli::HttpFlags& http, SearchDevice device, RankOptions opt);

// GET /spaces of a set: each space once, as spaces_json shows it for one
// store, with the stores' counts summed and their search methods joined.
std::string set_spaces_json(const StoreSet& set);

}  // namespace mmu::mpi
