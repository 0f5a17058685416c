#include "rank_scanner.h"

#include <mpi.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <limits>
#include <thread>

namespace mmu::mpi {

namespace {

constexpr int kReplyTag = 18;
constexpr int64_t kStop = -1;  // a command header: no scan follows
// A scan command starts with these: ranks of different builds refuse each other's scans.
constexpr uint32_t kScanMagic = 0x51554d4d;  // "MMUQ"
constexpr uint32_t kScanVersion = 1;

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
  size_t remaining() const { return b_.size() - at_; }
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

// Past the time the caller gives up at (RankOptions::give_up_ns)?
bool given_up(const RankOptions& opt) {
  if (opt.give_up_ns == nullptr) return false;
  const int64_t at = opt.give_up_ns->load();
  return at != 0 && std::chrono::steady_clock::now().time_since_epoch() > std::chrono::nanoseconds(at);
}

// Waits for a request of rank 0 until `deadline` (MPI_Wtime) or the caller
// gives up, else throws `late`.
void wait_until(MPI_Request* req, double deadline, const RankOptions& opt, const std::string& what,
                const std::string& late) {
  Poll poll;
  for (;;) {
    int done = 0;
    check_mpi(MPI_Test(req, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    if (MPI_Wtime() > deadline || given_up(opt)) throw RankLost(late);
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
void broadcast_command(const std::string& payload, double deadline, const RankOptions& opt) {
  int64_t len = payload.empty() ? kStop : static_cast<int64_t>(payload.size());
  MPI_Request req;
  const std::string late =
      "the ranks did not take the query within the --rank-timeout (or before the job was stopped): one died or hangs";
  check_mpi(MPI_Ibcast(&len, 1, MPI_INT64_T, 0, MPI_COMM_WORLD, &req), "broadcasting a query");
  wait_until(&req, deadline, opt, "broadcasting a query", late);
  if (payload.empty()) return;
  std::string copy = payload;
  check_mpi(MPI_Ibcast(copy.data(), static_cast<int>(copy.size()), MPI_BYTE, 0, MPI_COMM_WORLD, &req),
            "broadcasting a query");
  wait_until(&req, deadline, opt, "broadcasting a query", late);
}

// One scan as the ranks receive it: everything that decides a store's candidates.
struct ScanCommand {
  std::string space;
  int64_t nq = 0;
  int64_t fetch = 0;
  RowFilter filter;  // never `rows`: catalog rows are one store's, meaningless to the others
  SearchOptions search;
  std::vector<float> queries;  // nq x dim
};

std::string encode_scan(const ScanCommand& c) {
  Writer w;
  w.pod<uint32_t>(kScanMagic);
  w.pod<uint32_t>(kScanVersion);
  w.str(c.space);
  w.pod<int64_t>(c.nq);
  w.pod<int64_t>(c.fetch);
  w.pod<int64_t>(static_cast<int64_t>(c.filter.surveys.size()));
  for (const std::string& s : c.filter.surveys) w.str(s);
  w.pod<int64_t>(static_cast<int64_t>(c.filter.cells.size()));
  for (int64_t cell : c.filter.cells) w.pod<int64_t>(cell);
  w.pod<uint8_t>(c.filter.cone ? 1 : 0);
  if (c.filter.cone) {
    w.pod<double>(c.filter.cone->ra);
    w.pod<double>(c.filter.cone->dec);
    w.pod<double>(c.filter.cone->radius_deg);
  }
  w.str(c.filter.where);
  w.pod<uint8_t>(c.search.exact ? 1 : 0);
  w.pod<int64_t>(c.search.nprobe);
  w.pod<int64_t>(c.search.ef_search);
  w.pod<int32_t>(static_cast<int32_t>(c.search.device));
  w.pod<int64_t>(static_cast<int64_t>(c.queries.size()));
  w.bytes(c.queries.data(), c.queries.size() * sizeof(float));
  return std::move(w.buf());
}

// A count of items of at least `item_bytes` each that the rest of the message can hold.
int64_t count_of(Reader& r, size_t item_bytes, const std::string& what) {
  const int64_t n = r.pod<int64_t>();
  if (n < 0 || static_cast<uint64_t>(n) > r.remaining() / item_bytes)
    throw RankLost("a malformed scan from rank 0 (" + what + ")");
  return n;
}

ScanCommand decode_scan(const std::string& payload) {
  Reader r(payload, "rank 0");
  const uint32_t magic = r.pod<uint32_t>();
  const uint32_t version = r.pod<uint32_t>();
  if (magic != kScanMagic || version != kScanVersion)
    throw RankLost("rank 0 sent a scan of message version " + std::to_string(version) + " and this rank reads " +
                   std::to_string(kScanVersion) + ": the ranks run different builds of mmu-search-mpi");
  ScanCommand c;
  c.space = r.str();
  c.nq = r.pod<int64_t>();
  c.fetch = r.pod<int64_t>();
  if (c.nq < 0 || c.fetch < 0) throw RankLost("a malformed scan from rank 0 (query count)");
  c.filter.surveys.resize(static_cast<size_t>(count_of(r, sizeof(int64_t), "surveys")));
  for (std::string& s : c.filter.surveys) s = r.str();
  c.filter.cells.resize(static_cast<size_t>(count_of(r, sizeof(int64_t), "cells")));
  for (int64_t& cell : c.filter.cells) cell = r.pod<int64_t>();
  if (r.pod<uint8_t>() != 0) {
    SkyCone cone;
    cone.ra = r.pod<double>();
    cone.dec = r.pod<double>();
    cone.radius_deg = r.pod<double>();
    c.filter.cone = cone;
  }
  c.filter.where = r.str();
  c.search.exact = r.pod<uint8_t>() != 0;
  c.search.nprobe = r.pod<int64_t>();
  c.search.ef_search = r.pod<int64_t>();
  const int32_t device = r.pod<int32_t>();
  if (device != static_cast<int32_t>(SearchDevice::kCpu) && device != static_cast<int32_t>(SearchDevice::kTorchCpu) &&
      device != static_cast<int32_t>(SearchDevice::kCuda))
    throw RankLost("a malformed scan from rank 0 (device " + std::to_string(device) + ")");
  c.search.device = static_cast<SearchDevice>(device);
  c.queries.resize(static_cast<size_t>(count_of(r, sizeof(float), "query vectors")));
  std::memcpy(c.queries.data(), r.take(c.queries.size() * sizeof(float)), c.queries.size() * sizeof(float));
  return c;
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
  if (q.filter.rows != nullptr)
    throw InternalError("a filter on catalog rows cannot be sent to the ranks: the rows are one store's");
  return [&set, filter = q.filter, search = q.search, opt](const std::string& space, const std::vector<float>& queries,
                                                           int64_t nq, int64_t fetch) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const double deadline = MPI_Wtime() + opt.timeout_s;
    broadcast_command(encode_scan({space, nq, fetch, filter, search, queries}), deadline, opt);

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
        const bool timed_out = MPI_Wtime() > deadline;
        if (timed_out || given_up(opt)) {
          int late = 1;
          while (answered[static_cast<size_t>(late)]) ++late;
          throw RankLost("rank " + std::to_string(late) + " (stores " +
                         store_list(stores_of_rank(set.size(), late, size)) + ") did not answer " +
                         (timed_out ? "within " + text::format_double("%g", opt.timeout_s) + " s (--rank-timeout)"
                                    : "before the job was stopped") +
                         ": it died or hangs, and the query failed");
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

void stop_ranks() { broadcast_command("", MPI_Wtime() + 30, RankOptions{}); }

void serve_scans(int rank, const std::vector<size_t>& indices, const std::vector<std::unique_ptr<Store>>& stores,
                 const RankOptions& opt) {
  for (int64_t scans = 1;; ++scans) {
    int64_t len = 0;
    MPI_Request req;
    check_mpi(MPI_Ibcast(&len, 1, MPI_INT64_T, 0, MPI_COMM_WORLD, &req), "receiving a query");
    wait_polling(&req, "receiving a query");
    if (len == kStop) return;
    if (len < 0 || len > std::numeric_limits<int>::max()) throw RankLost("a malformed query header from rank 0");
    std::string payload(static_cast<size_t>(len), '\0');
    check_mpi(MPI_Ibcast(payload.data(), static_cast<int>(len), MPI_BYTE, 0, MPI_COMM_WORLD, &req), "receiving a query");
    wait_polling(&req, "receiving a query");
    if (rank == opt.die_rank && scans == opt.die_scan) std::raise(SIGKILL);
    if (rank == opt.hang_rank) std::this_thread::sleep_for(std::chrono::hours(1));

    Writer reply;
    try {
      const ScanCommand c = decode_scan(payload);
      for (const auto& s : stores)
        for (const SpaceInfo& sp : s->spaces())
          if (sp.name == c.space && static_cast<uint64_t>(sp.dim) * static_cast<uint64_t>(c.nq) != c.queries.size())
            throw RankLost("a malformed scan from rank 0 (" + std::to_string(c.queries.size()) + " floats for " +
                           std::to_string(c.nq) + " queries of dimension " + std::to_string(sp.dim) + ")");
      std::vector<std::vector<StoreScan>> per_store;
      for (const auto& s : stores)
        per_store.push_back(scan_store(*s, c.space, c.queries.data(), c.nq, c.fetch, c.filter, c.search));
      reply.pod<uint8_t>(1);
      put_scans(reply, per_store, c.nq);
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
