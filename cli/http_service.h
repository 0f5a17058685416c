// The HTTP search service that `mmu-search serve` runs over one store and
// `mmu-search-mpi --serve` over a set of stores spread across MPI ranks: the
// flags, the search routes (query_json.h parses requests, result_format.h
// writes answers, so both answer what `mmu-search --format json` prints), and
// the serving loop (connection_guard.h) that stops on SIGINT or SIGTERM.
//   GET  /health                    {"status": "ok", "objects": N, ...}
//   GET  /spaces                    what --list-spaces shows
//   GET  /like?id=X&k=N&space=S     one --like query
//   POST /query   {"like": ..}      one query, exactly as --format json prints it
//   POST /batch   {"ids": [..]}     one query per id, as --like-file --format json prints it
// Errors: 400 bad request, 404 unknown object/space/endpoint, 413 body too
// large, 500 a bug, 503 too many connections (refused before any reading) or
// the searcher lost (StatusError); the body is {"error": "..."}.
#pragma once

#include <httplib.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mmu/error.h"
#include "mmu/query.h"
#include "mmu/query_json.h"

namespace mmu::cli {

struct HttpFlags {
  std::string host = "127.0.0.1";  // loopback unless asked: the server has no authentication
  int port = 8765;                 // 0: any free port (printed at start)
  int threads = 4;                 // queries computed at once
  std::string max_body = "1MB";
  int timeout_s = 30;              // to send a whole request, or read a whole reply (not per read)
  int idle_timeout_s = 5;          // a kept-alive connection's wait for its next request
  int max_connections = 128;       // open at once; more are refused with a 503
  int max_per_client = 16;         // open at once from one client address
  QueryLimits limits;
};

// --host, --port, --threads, --max-k, --max-ids, --max-body, --timeout,
// --idle-timeout, --max-connections, --max-per-client on `cmd`; returns them.
std::vector<CLI::Option*> add_http_flags(CLI::App* cmd, HttpFlags& f);

// An error that carries its own HTTP status: 503 when what answers the
// queries is gone (a lost MPI rank), so a client knows to retry elsewhere.
class StatusError : public Error {
 public:
  StatusError(int status, const std::string& message) : Error(ErrorKind::kIo, message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// At most `n` holders at once: the queries computed together (--threads).
class Slots {
 public:
  explicit Slots(int n) : free_(n) {}
  void acquire();
  void release();

 private:
  std::mutex mutex_;
  std::condition_variable freed_;
  int free_;
};

class SlotHold {
 public:
  explicit SlotHold(Slots* s);
  ~SlotHold();
  SlotHold(const SlotHold&) = delete;
  SlotHold& operator=(const SlotHold&) = delete;

 private:
  Slots* slots_;
};

// What answers the search routes; each is called on a request's thread, at
// most --threads of like/batch at once. Errors are thrown as mmu::Error.
struct SearchApi {
  std::function<std::string()> health;  // the JSON body of GET /health
  std::function<std::string()> spaces;  // the JSON body of GET /spaces
  std::function<LikeResult(const LikeQuery&)> like;
  std::function<std::vector<LikeResult>(const LikeQuery& common, const std::vector<std::string>& ids)> batch;
};

// Reads the request body itself, 413 past max_body; false when there is nothing to answer.
bool read_body(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader,
               size_t max_body, std::string* body);

// One HTTP server with serve's limits: bind(), add routes, then run() until a
// stop signal or stop().
class HttpService {
 public:
  // The stop signals (SIGINT, SIGTERM) must be blocked in every thread before
  // any starts, so that one thread takes them with sigwait: call
  // block_stop_signals() first thing, before a library starts threads.
  static void block_stop_signals();
  // Undoes it on the calling thread, for a program that does not serve after all.
  static void unblock_stop_signals();

  explicit HttpService(const HttpFlags& f);
  ~HttpService();

  httplib::Server& server() { return server_; }
  size_t max_body() const { return max_body_; }
  Slots* slots() { return &slots_; }

  // GET /health, /spaces, /like; POST /query, /batch, answered by `api`
  // (which must outlive run()); `device` applies to every query.
  void add_search_routes(const SearchApi& api, SearchDevice device);
  // Gives httplib's own replies (no route, body too large, bad HTTP) our
  // {"error"} body; a 404 lists `endpoints`.
  void add_error_replies(const std::string& endpoints);

  // Listens on --host/--port (errors name them); returns the port.
  int bind();
  // Serves until a stop signal or stop(), lets the requests in progress
  // finish, and returns. `on_signal` runs on the thread that took the signal,
  // before the requests in progress finish. Throws when accepting failed.
  void run(const std::function<void(const siginfo_t&)>& on_signal);
  // Stops accepting from any thread (a request that found the service broken).
  void stop();

 private:
  struct Loop;
  HttpFlags flags_;
  size_t max_body_;
  httplib::Server server_;
  Slots slots_;
  std::unique_ptr<Loop> loop_;
};

}  // namespace mmu::cli
