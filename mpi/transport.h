// Every message of mmu-search-mpi, at any size: a 64-bit length first, then
// the bytes in pieces of at most a chunk (message_pieces.h), the receiver
// checking it got exactly the announced length. Waits poll (never a
// blocking call a dead peer would leave hanging) until a deadline, so the
// caller can name a rank that stopped answering.
#pragma once

#include <mpi.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>

#include "message_pieces.h"
#include "mmu/error.h"

namespace mmu::mpi {

// A rank that stopped answering, or that sent what this build cannot read:
// the job cannot go on.
struct RankLost : Error {
  explicit RankLost(const std::string& m) : Error(ErrorKind::kIo, m) {}
};

// Throws RankLost "`what`: MPI's error text" unless rc is MPI_SUCCESS.
void check_mpi(int rc, const std::string& what);

// Polls instead of blocking: a blocking MPI call spins a core, and a dead
// peer would leave it waiting for ever. Sleeps grow to 2 ms between polls.
class Poll {
 public:
  void pause();

 private:
  int us_ = 50;
};

// How long to wait for a peer: until `deadline` (MPI_Wtime) and, when
// `give_up_ns` is set and non-zero, until that steady_clock time (ns since
// its epoch). The default waits for ever (a worker: if rank 0 dies, mpirun
// ends the job).
struct Patience {
  double deadline = std::numeric_limits<double>::infinity();
  const std::atomic<int64_t>* give_up_ns = nullptr;
  bool timed_out() const;  // past `deadline`
  bool over() const;       // past either
};

// Waits for `req` until `p` is over (then false: the job is lost, and the
// request is left to MPI_Abort).
bool wait_for(MPI_Request* req, const Patience& p, const std::string& what);

// The chunk of this process: MMU_MPI_CHUNK_BYTES (tests only) or
// kDefaultChunkBytes. Throws InvalidArgument naming a bad value.
int64_t chunk_bytes_from_env();

// Broadcasts data[0, n) from rank 0 in pieces of at most `chunk` bytes;
// every rank passes the same n and chunk. False once `p` is over.
bool broadcast_bytes(char* data, int64_t n, int64_t chunk, const Patience& p, const std::string& what);

// Sends `bytes` to `dest`: its length on `tag`, then its pieces of at most
// `chunk` bytes on tag + 1. Blocks until MPI has taken them.
void send_bytes(const std::string& bytes, int dest, int tag, int64_t chunk, const std::string& what);

// One message from `src` as send_bytes sent it. Throws RankLost naming
// `who` when it announces more than `max_bytes` or its pieces do not add up
// to exactly what it announced, and when `p` is over before its last piece
// came, saying how much did, followed by late() (why it gave up).
std::string receive_bytes(int src, int tag, int64_t max_bytes, const Patience& p, const std::string& who,
                          const std::function<std::string()>& late);

// What this process moved since it started (messages with bytes, their
// bytes and the pieces they went in): MMU_MPI_CHUNK_BYTES's note.
struct Traffic {
  int64_t messages = 0;
  int64_t bytes = 0;
  int64_t pieces = 0;
};
Traffic traffic();

}  // namespace mmu::mpi
