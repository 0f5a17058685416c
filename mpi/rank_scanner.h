// The MPI side of mmu-search-mpi: a set of stores spread over ranks, store i
// on rank i % size. Rank 0 resolves queries (it opens every store's catalog)
// and scans through a SetScanner that broadcasts each scan: the query vectors
// with everything the scan depends on (space, candidates wanted, filter,
// search options), in a versioned message, so a rank needs nothing of its own
// command line per query and a long-running service can vary them. Every rank
// scans its own stores and sends its candidates back; store_set.cpp merges
// them exactly as for one process (exclusion, k, de-duplication).
//
// Open MPI 4.1 has no fault tolerance (ompi_info: ft_support no), so a lost
// rank cannot be survived, only reported: rank 0 waits for each rank with a
// deadline (non-blocking broadcast and probes, never a blocking call that a
// dead peer would leave hanging) and throws RankLost naming the rank; the
// caller then aborts the job. A rank that dies outright is also seen by
// mpirun, which names it and ends the job. Messages of any size go in
// pieces (transport.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mmu/error.h"
#include "mmu/store.h"
#include "mmu/store_set.h"
#include "transport.h"

namespace mmu::mpi {

struct RankOptions {
  double timeout_s = 300;  // the longest rank 0 waits for a rank's part of one scan
  // When set and non-zero: a steady_clock time (ns since its epoch) after
  // which rank 0 stops waiting for the ranks (the job is being torn down).
  const std::atomic<int64_t>* give_up_ns = nullptr;
  int die_rank = -1;       // tests only: this rank kills itself on its die_scan-th scan
  int hang_rank = -1;      // tests only: this rank stops answering on its first scan
  int stall_rank = -1;     // tests only: this rank sends its first answer's length and first piece, then stops
  int64_t die_scan = 1;
  // Rank 0's: the most bytes one MPI call moves (transport.h), sent with
  // each scan so that every rank cuts its messages alike.
  int64_t chunk_bytes = kDefaultChunkBytes;
};

// The stores of `rank`: indices i of the set with i % size == rank.
std::vector<size_t> stores_of_rank(size_t n_stores, int rank, int size);

// Rank 0: scans the set through every rank with q's filter and search
// options. Throws RankLost naming a rank that does not answer within
// opt.timeout_s (or by opt.give_up_ns), Error naming a rank whose scan failed
// (after every rank has answered, so the job stays in step). One scan at a
// time: the caller serialises calls from several threads.
SetScanner rank0_scanner(const StoreSet& set, const LikeQuery& q, const RankOptions& opt);

// Rank 0, when done: tells the other ranks to return from serve_scans.
void stop_ranks();

// Ranks > 0: answers rank 0's scans with its stores (`stores[j]` is store
// `indices[j]` of the set) until stop_ranks.
void serve_scans(int rank, const std::vector<size_t>& indices, const std::vector<std::unique_ptr<Store>>& stores,
                 const RankOptions& opt);

}  // namespace mmu::mpi
