#include "rank_scanner.h"

#include <mpi.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>

namespace mmu::mpi {

namespace {

constexpr int kReplyTag = 18;
constexpr int64_t kStop = -1;  // a command header: no scan follows

// Flat bytes for MPI messages.
class Writer {
 public:
  template <typename T>
  void pod(T v) {
    buf_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void str(const std::string& s) {
    pod<int64_t>(static_cast<int64_t>(s.size()));
    buf_ += s;
  }
  void bytes(const void* p, size_t n) { buf_.append(static_cast<const char*>(p), n); }
  std::string& buf() { return buf_; }

 private:
  std::string buf_;
};

class Reader {
 public:
  Reader(const std::string& b, const std::string& from) : b_(b), from_(from) {}
  template <typename T>
  T pod() {
    T v;
    std::memcpy(&v, take(sizeof(T)), sizeof(T));
    return v;
  }
  std::string str() {
    const int64_t n = pod<int64_t>();
    if (n < 0) bad();
    return std::string(take(static_cast<size_t>(n)), static_cast<size_t>(n));
  }
  const char* take(size_t n) {
    if (n > b_.size() - at_) bad();
    const char* p = b_.data() + at_;
    at_ += n;
    return p;
  }

 private:
  [[noreturn]] void bad() const { throw RankLost("a malformed message from " + from_ + " (a mismatched mmu-search-mpi?)"); }
  const std::string& b_;
  std::string from_;
  size_t at_ = 0;
};

void check_mpi(int rc, const std::string& what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw RankLost(what + ": " + std::string(text, static_cast<size_t>(len)));
}

// Polls instead of blocking: a blocking MPI call spins a core, and a dead
// peer would leave it waiting for ever. Sleeps grow to 2 ms between polls.
class Poll {
 public:
  void pause() {
    std::this_thread::sleep_for(std::chrono::microseconds(us_));
    us_ = std::min(us_ * 2, 2000);
  }

 private:
  int us_ = 50;
};

// Waits for a request of rank 0 until `deadline` (MPI_Wtime), else throws `late`.
void wait_until(MPI_Request* req, double deadline, const std::string& what, const std::string& late) {
  Poll poll;
  for (;;) {
    int done = 0;
    check_mpi(MPI_Test(req, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    if (MPI_Wtime() > deadline) throw RankLost(late);
    poll.pause();
  }
}

// Waits for ever (a worker: if rank 0 is gone, mpirun ends the job).
void wait_polling(MPI_Request* req, const std::string& what) {
  Poll poll;
  for (;;) {
    int done = 0;
    check_mpi(MPI_Test(req, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    poll.pause();
  }
}

std::string store_list(const std::vector<size_t>& idx) {
  std::string s;
  for (size_t i : idx) s += (s.empty() ? "" : ", ") + std::to_string(i);
  return s.empty() ? "none" : s;
}

// One command from rank 0: a header (payload bytes, or kStop), then the payload.
void broadcast_command(const std::string& payload, double deadline) {
  int64_t len = payload.empty() ? kStop : static_cast<int64_t>(payload.size());
  MPI_Request req;
  const std::string late = "the ranks did not take the query within the --rank-timeout: one died or hangs";
  check_mpi(MPI_Ibcast(&len, 1, MPI_INT64_T, 0, MPI_COMM_WORLD, &req), "broadcasting a query");
  wait_until(&req, deadline, "broadcasting a query", late);
  if (payload.empty()) return;
  std::string copy = payload;
  check_mpi(MPI_Ibcast(copy.data(), static_cast<int>(copy.size()), MPI_BYTE, 0, MPI_COMM_WORLD, &req),
            "broadcasting a query");
  wait_until(&req, deadline, "broadcasting a query", late);
}

void put_scans(Writer& w, const std::vector<std::vector<StoreScan>>& per_store, int64_t nq) {
  for (int64_t q = 0; q < nq; ++q)
    for (const auto& scans : per_store) {
      const StoreScan& s = scans[q];
      w.pod<uint8_t>(s.exhausted ? 1 : 0);
      w.pod<int64_t>(s.candidates);
      w.pod<int64_t>(static_cast<int64_t>(s.hits.size()));
      for (const Hit& h : s.hits) {
        w.pod<int64_t>(h.id);
        w.pod<float>(h.score);
      }
    }
}

}  // namespace

std::vector<size_t> stores_of_rank(size_t n_stores, int rank, int size) {
  std::vector<size_t> out;
  for (size_t i = static_cast<size_t>(rank); i < n_stores; i += static_cast<size_t>(size)) out.push_back(i);
  return out;
}

SetScanner rank0_scanner(const StoreSet& set, const LikeQuery& q, const RankOptions& opt) {
  return [&set, filter = q.filter, search = q.search, opt](const std::string& space, const std::vector<float>& queries,
                                                           int64_t nq, int64_t fetch) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const double deadline = MPI_Wtime() + opt.timeout_s;
    Writer cmd;
    cmd.str(space);
    cmd.pod<int64_t>(nq);
    cmd.pod<int64_t>(fetch);
    cmd.pod<int64_t>(static_cast<int64_t>(queries.size()));
    cmd.bytes(queries.data(), queries.size() * sizeof(float));
    broadcast_command(cmd.buf(), deadline);

    std::vector<std::vector<StoreScan>> out(static_cast<size_t>(nq), std::vector<StoreScan>(set.size()));
    std::string failure;  // the first rank's error, thrown once every rank has answered
    try {
      for (size_t i : stores_of_rank(set.size(), 0, size)) {
        std::vector<StoreScan> one = scan_store(set.store(i), space, queries.data(), nq, fetch, filter, search);
        for (int64_t k = 0; k < nq; ++k) out[k][i] = std::move(one[k]);
      }
    } catch (const Error& e) {
      failure = e.what();  // what one process would say: rank 0 scans as it would
    }
    std::vector<bool> answered(static_cast<size_t>(size), false);
    answered[0] = true;
    Poll poll;
    for (int remaining = size - 1; remaining > 0;) {
      int ready = 0;
      MPI_Status st;
      check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, kReplyTag, MPI_COMM_WORLD, &ready, &st), "waiting for the ranks");
      if (!ready) {
        if (MPI_Wtime() > deadline) {
          int late = 1;
          while (answered[static_cast<size_t>(late)]) ++late;
          throw RankLost("rank " + std::to_string(late) + " (stores " +
                         store_list(stores_of_rank(set.size(), late, size)) + ") did not answer within " +
                         text::format_double("%g", opt.timeout_s) +
                         " s (--rank-timeout): it died or hangs, and the query failed");
        }
        poll.pause();
        continue;
      }
      const int src = st.MPI_SOURCE;
      int count = 0;
      check_mpi(MPI_Get_count(&st, MPI_BYTE, &count), "reading rank " + std::to_string(src) + "'s answer");
      std::string buf(static_cast<size_t>(count), '\0');
      check_mpi(MPI_Recv(buf.data(), count, MPI_BYTE, src, kReplyTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
                "reading rank " + std::to_string(src) + "'s answer");
      answered[static_cast<size_t>(src)] = true;
      --remaining;
      const std::string who = "rank " + std::to_string(src);
      Reader r(buf, who);
      if (r.pod<uint8_t>() == 0) {
        if (failure.empty()) failure = who + ": " + r.str();
        continue;
      }
      const std::vector<size_t> mine = stores_of_rank(set.size(), src, size);
      for (int64_t k = 0; k < nq; ++k)
        for (size_t i : mine) {
          StoreScan& s = out[k][i];
          s.exhausted = r.pod<uint8_t>() != 0;
          s.candidates = r.pod<int64_t>();
          const int64_t n = r.pod<int64_t>();
          if (n < 0 || n > fetch) throw RankLost("a malformed answer from " + who);
          for (int64_t h = 0; h < n; ++h) {
            const int64_t row = r.pod<int64_t>();
            s.hits.push_back({row, r.pod<float>()});
          }
        }
    }
    if (!failure.empty()) throw InvalidArgument(failure);
    return out;
  };
}

void stop_ranks() { broadcast_command("", MPI_Wtime() + 30); }

void serve_scans(int rank, const std::vector<size_t>& indices, const std::vector<std::unique_ptr<Store>>& stores,
                 const LikeQuery& q, const RankOptions& opt) {
  for (;;) {
    int64_t len = 0;
    MPI_Request req;
    check_mpi(MPI_Ibcast(&len, 1, MPI_INT64_T, 0, MPI_COMM_WORLD, &req), "receiving a query");
    wait_polling(&req, "receiving a query");
    if (len == kStop) return;
    std::string payload(static_cast<size_t>(len), '\0');
    check_mpi(MPI_Ibcast(payload.data(), static_cast<int>(len), MPI_BYTE, 0, MPI_COMM_WORLD, &req), "receiving a query");
    wait_polling(&req, "receiving a query");
    if (rank == opt.die_rank) std::raise(SIGKILL);
    if (rank == opt.hang_rank) std::this_thread::sleep_for(std::chrono::hours(1));

    Writer reply;
    try {
      Reader r(payload, "rank 0");
      const std::string space = r.str();
      const int64_t nq = r.pod<int64_t>();
      const int64_t fetch = r.pod<int64_t>();
      const int64_t nfloats = r.pod<int64_t>();
      if (nq < 0 || nfloats < 0 || nfloats > len / static_cast<int64_t>(sizeof(float))) throw RankLost("a malformed query from rank 0");
      std::vector<float> queries(static_cast<size_t>(nfloats));
      std::memcpy(queries.data(), r.take(queries.size() * sizeof(float)), queries.size() * sizeof(float));
      std::vector<std::vector<StoreScan>> per_store;
      for (const auto& s : stores) per_store.push_back(scan_store(*s, space, queries.data(), nq, fetch, q.filter, q.search));
      reply.pod<uint8_t>(1);
      put_scans(reply, per_store, nq);
    } catch (const Error& e) {
      reply = Writer();
      reply.pod<uint8_t>(0);
      reply.str(std::string(e.what()) + " (stores " + store_list(indices) + ")");
    }
    std::string& b = reply.buf();
    check_mpi(MPI_Send(b.data(), static_cast<int>(b.size()), MPI_BYTE, 0, kReplyTag, MPI_COMM_WORLD),
              "answering rank 0");
  }
}

}  // namespace mmu::mpi
