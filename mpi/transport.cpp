#include "transport.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

namespace mmu::mpi {

namespace {

// Callers take turns (MPI_THREAD_SERIALIZED), so plain counters would do;
// atomics keep a reader on another thread well defined.
std::atomic<int64_t> g_messages{0}, g_bytes{0}, g_pieces{0};

void count(int64_t bytes, int64_t pieces) {
  if (bytes == 0) return;
  ++g_messages;
  g_bytes += bytes;
  g_pieces += pieces;
}

// Waits until a message from `src` on `tag` has arrived (*st says which) or
// `p` is over (then false).
bool probe(int src, int tag, const Patience& p, MPI_Status* st, const std::string& what) {
  Poll poll;
  for (int ready = 0;;) {
    check_mpi(MPI_Iprobe(src, tag, MPI_COMM_WORLD, &ready, st), what);
    if (ready) return true;
    if (p.over()) return false;
    poll.pause();
  }
}

}  // namespace

void check_mpi(int rc, const std::string& what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw RankLost(what + ": " + std::string(text, static_cast<size_t>(len)));
}

void Poll::pause() {
  std::this_thread::sleep_for(std::chrono::microseconds(us_));
  us_ = std::min(us_ * 2, 2000);
}

bool Patience::timed_out() const { return MPI_Wtime() > deadline; }

bool Patience::over() const {
  if (timed_out()) return true;
  if (give_up_ns == nullptr) return false;
  const int64_t at = give_up_ns->load();
  return at != 0 && std::chrono::steady_clock::now().time_since_epoch() > std::chrono::nanoseconds(at);
}

bool wait_for(MPI_Request* req, const Patience& p, const std::string& what) {
  Poll poll;
  for (;;) {
    int done = 0;
    check_mpi(MPI_Test(req, &done, MPI_STATUS_IGNORE), what);
    if (done) return true;
    if (p.over()) return false;
    poll.pause();
  }
}

int64_t chunk_bytes_from_env() { return parse_chunk_bytes(std::getenv(kChunkVariable)); }

bool broadcast_bytes(char* data, int64_t n, int64_t chunk, const Patience& p, const std::string& what) {
  for (int64_t done = 0; done < n;) {
    const int piece = piece_bytes(n, done, chunk);
    MPI_Request req;
    check_mpi(MPI_Ibcast(data + done, piece, MPI_BYTE, 0, MPI_COMM_WORLD, &req), what);
    if (!wait_for(&req, p, what)) return false;
    done += piece;
  }
  count(n, piece_count(n, chunk));
  return true;
}

void send_bytes(const std::string& bytes, int dest, int tag, int64_t chunk, const std::string& what) {
  const int64_t n = static_cast<int64_t>(bytes.size());
  check_mpi(MPI_Send(&n, 1, MPI_INT64_T, dest, tag, MPI_COMM_WORLD), what);
  for (int64_t done = 0; done < n;) {
    const int piece = piece_bytes(n, done, chunk);
    check_mpi(MPI_Send(bytes.data() + done, piece, MPI_BYTE, dest, tag + 1, MPI_COMM_WORLD), what);
    done += piece;
  }
  count(n, piece_count(n, chunk));
}

std::string receive_bytes(int src, int tag, int64_t max_bytes, const Patience& p, const std::string& who,
                          const std::function<std::string()>& late) {
  const std::string what = "reading " + who + "'s answer";
  MPI_Status st;
  if (!probe(src, tag, p, &st, what)) throw RankLost(who + " sent no answer " + late());
  int count_in = 0;
  check_mpi(MPI_Get_count(&st, MPI_BYTE, &count_in), what);
  if (count_in != static_cast<int>(sizeof(int64_t)))
    throw RankLost(who + " announced a message in " + std::to_string(count_in) + " bytes instead of 8 (a mismatched "
                   "mmu-search-mpi?)");
  int64_t n = 0;
  check_mpi(MPI_Recv(&n, 1, MPI_INT64_T, src, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), what);
  if (n < 0 || n > max_bytes)
    throw RankLost(who + " announced a message of " + std::to_string(n) + " bytes, and at most " +
                   std::to_string(max_bytes) + " can be its answer (a mismatched mmu-search-mpi?)");
  std::string out(static_cast<size_t>(n), '\0');
  int64_t pieces = 0;
  for (int64_t got = 0; got < n; ++pieces) {
    if (!probe(src, tag + 1, p, &st, what))
      throw RankLost(who + " sent " + std::to_string(got) + " of the " + std::to_string(n) +
                     " bytes it announced and no more " + late());
    int piece = 0;
    check_mpi(MPI_Get_count(&st, MPI_BYTE, &piece), what);
    // MPI_UNDEFINED (negative) where the count does not fit an int.
    if (piece <= 0 || piece > n - got)
      throw RankLost(who + " sent a piece of " + (piece < 0 ? "over 2^31" : std::to_string(piece)) + " bytes with " +
                     std::to_string(got) + " of the " + std::to_string(n) + " bytes it announced received");
    check_mpi(MPI_Recv(out.data() + got, piece, MPI_BYTE, src, tag + 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE), what);
    got += piece;
  }
  count(n, pieces);
  return out;
}

Traffic traffic() { return {g_messages.load(), g_bytes.load(), g_pieces.load()}; }

}  // namespace mmu::mpi
