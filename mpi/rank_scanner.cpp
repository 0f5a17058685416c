#include "rank_scanner.h"

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <limits>
#include <thread>

namespace mmu::mpi {

namespace {

constexpr int kReplyTag = 18;  // and 19: its pieces (transport.h)
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

std::string store_list(const std::vector<size_t>& idx) {
  std::string s;
  for (size_t i : idx) s += (s.empty() ? "" : ", ") + std::to_string(i);
  return s.empty() ? "none" : s;
}

// One command from rank 0: a header (payload bytes, or kStop; the chunk
// every rank sends in), then the payload.
void broadcast_command(std::string payload, int64_t chunk, const Patience& p) {
  int64_t header[2] = {payload.empty() ? kStop : static_cast<int64_t>(payload.size()), chunk};
  MPI_Request req;
  const std::string what = "broadcasting a query";
  const std::string late =
      "the ranks did not take the query within the --rank-timeout (or before the job was stopped): one died or hangs";
  check_mpi(MPI_Ibcast(header, 2, MPI_INT64_T, 0, MPI_COMM_WORLD, &req), what);
  if (!wait_for(&req, p, what)) throw RankLost(late);
  if (!broadcast_bytes(payload.data(), static_cast<int64_t>(payload.size()), chunk, p, what)) throw RankLost(late);
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

// A ScanCommand's message; the queries by reference: a batch may be gigabytes.
std::string encode_scan(const std::string& space, int64_t nq, int64_t fetch, const RowFilter& filter,
                        const SearchOptions& search, const std::vector<float>& queries) {
  ScanCommand c{space, nq, fetch, filter, search, {}};
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
  w.pod<int64_t>(static_cast<int64_t>(queries.size()));
  w.bytes(queries.data(), queries.size() * sizeof(float));
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

// The most bytes a rank's answer to a scan can hold (put_scans), or its
// error (Error caps a message near 256 KiB, then the rank's store list):
// an announced length past it is a mismatched build, refused before its
// allocation.
int64_t reply_bound(int64_t nq, int64_t fetch, size_t stores) {
  const double per_scan = 17 + 12 * static_cast<double>(fetch);
  const double scans = 1 + static_cast<double>(nq) * static_cast<double>(stores) * per_scan;
  const double error = 9 + (1 << 20) + 24 * static_cast<double>(stores);
  const double most = std::max(scans, error);
  return most >= 9e18 ? std::numeric_limits<int64_t>::max() : static_cast<int64_t>(most);
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
    const Patience patience{MPI_Wtime() + opt.timeout_s, opt.give_up_ns};
    broadcast_command(encode_scan(space, nq, fetch, filter, search, queries), opt.chunk_bytes, patience);

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
    const auto late = [&] {
      return (patience.timed_out() ? "within " + text::format_double("%g", opt.timeout_s) + " s (--rank-timeout)"
                                   : std::string("before the job was stopped")) +
             ": it died or hangs, and the query failed";
    };
    for (int remaining = size - 1; remaining > 0;) {
      int ready = 0;
      MPI_Status st;
      check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, kReplyTag, MPI_COMM_WORLD, &ready, &st), "waiting for the ranks");
      if (!ready) {
        if (patience.over()) {
          int first = 1;
          while (answered[static_cast<size_t>(first)]) ++first;
          throw RankLost("rank " + std::to_string(first) + " (stores " +
                         store_list(stores_of_rank(set.size(), first, size)) + ") did not answer " + late());
        }
        poll.pause();
        continue;
      }
      const int src = st.MPI_SOURCE;
      const std::vector<size_t> mine = stores_of_rank(set.size(), src, size);
      const std::string who = "rank " + std::to_string(src);
      const std::string buf = receive_bytes(src, kReplyTag, reply_bound(nq, fetch, mine.size()), patience,
                                            who + " (stores " + store_list(mine) + ")", late);
      answered[static_cast<size_t>(src)] = true;
      --remaining;
      Reader r(buf, who);
      if (r.pod<uint8_t>() == 0) {
        if (failure.empty()) failure = who + ": " + r.str();
        continue;
      }
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
      if (r.remaining() != 0) throw RankLost("a malformed answer from " + who + " (bytes left over)");
    }
    if (!failure.empty()) throw InvalidArgument(failure);
    return out;
  };
}

void stop_ranks() { broadcast_command("", kDefaultChunkBytes, Patience{MPI_Wtime() + 30}); }

void serve_scans(int rank, const std::vector<size_t>& indices, const std::vector<std::unique_ptr<Store>>& stores,
                 const RankOptions& opt) {
  for (int64_t scans = 1;; ++scans) {
    // Waits for ever: if rank 0 dies, mpirun ends the job.
    int64_t header[2] = {0, 0};
    MPI_Request req;
    check_mpi(MPI_Ibcast(header, 2, MPI_INT64_T, 0, MPI_COMM_WORLD, &req), "receiving a query");
    wait_for(&req, Patience{}, "receiving a query");
    const int64_t len = header[0], chunk = header[1];
    if (len == kStop) return;
    if (len < 0 || chunk < 1 || chunk > std::numeric_limits<int>::max())
      throw RankLost("a malformed query header from rank 0 (" + std::to_string(len) + " bytes in pieces of " +
                     std::to_string(chunk) + ")");
    std::string payload(static_cast<size_t>(len), '\0');
    broadcast_bytes(payload.data(), len, chunk, Patience{}, "receiving a query");
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
    if (rank == opt.stall_rank) {  // the start of send_bytes, then silence
      const int64_t n = static_cast<int64_t>(reply.buf().size());
      MPI_Send(&n, 1, MPI_INT64_T, 0, kReplyTag, MPI_COMM_WORLD);
      MPI_Send(reply.buf().data(), piece_bytes(n, 0, chunk), MPI_BYTE, 0, kReplyTag + 1, MPI_COMM_WORLD);
      std::this_thread::sleep_for(std::chrono::hours(1));
    }
    send_bytes(reply.buf(), 0, kReplyTag, chunk, "answering rank 0");
  }
}

}  // namespace mmu::mpi
