#include "serve_command.h"

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <pthread.h>
#include <signal.h>

#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <iostream>
#include <sstream>
#include <thread>

#include "connection_guard.h"
#include "gallery_routes.h"
#include "http_reply.h"
#include "mmu/device_search.h"
#include "mmu/error.h"
#include "mmu/live_store.h"
#include "mmu/result_format.h"
#include "mmu/store.h"
#include "store_flag.h"

namespace mmu::cli {

namespace {

// httplib serves connections only from its own accept loop, which hands each
// one to a fixed pool of workers (a slow client holds a worker) and exposes no
// socket before a request is read. ConnectionGuard runs the accept loop
// instead and hands each admitted socket to httplib's own (private)
// per-connection code, reached as the standard allows: an explicit
// instantiation may name a private member, and a friend it defines returns it.
template <typename Tag, typename Tag::type kMember>
struct ExposeMember {
  friend typename Tag::type exposed(Tag) { return kMember; }
};
struct ProcessSocket {
  using type = bool (httplib::Server::*)(socket_t);
  friend type exposed(ProcessSocket);
};
struct ListenSocket {
  using type = std::atomic<socket_t> httplib::Server::*;
  friend type exposed(ListenSocket);
};
template struct ExposeMember<ProcessSocket, &httplib::Server::process_and_close_socket>;
template struct ExposeMember<ListenSocket, &httplib::Server::svr_sock_>;

// At most `n` holders at once: the queries computed together (--threads).
class Slots {
 public:
  explicit Slots(int n) : free_(n) {}
  void acquire() {
    std::unique_lock<std::mutex> lock(mutex_);
    freed_.wait(lock, [this] { return free_ > 0; });
    --free_;
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    ++free_;
    freed_.notify_one();
  }

 private:
  std::mutex mutex_;
  std::condition_variable freed_;
  int free_;
};

struct SlotHold {
  explicit SlotHold(Slots* s) : slots(s) {
    if (slots != nullptr) slots->acquire();
  }
  ~SlotHold() {
    if (slots != nullptr) slots->release();
  }
  SlotHold(const SlotHold&) = delete;
  SlotHold& operator=(const SlotHold&) = delete;
  Slots* slots;
};

// "1MB", "512KB", "4096" (bytes; K and M are 1024-based); errors name --max-body.
size_t parse_size(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  std::string unit = text.substr(digits);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const uint64_t scale = unit.empty() || unit == "B" ? 1 : unit == "KB" ? 1024 : unit == "MB" ? 1024 * 1024 : 0;
  const uint64_t max = 1024ull * 1024 * 1024;
  uint64_t n = 0;
  if (digits > 0 && digits <= 10) n = std::stoull(text.substr(0, digits));
  if (scale == 0 || n == 0 || n > max / scale)
    throw InvalidArgument("--max-body must be a size from 1 byte to 1024MB, e.g. 1MB, 64KB or 4096, got '" + text + "'");
  return static_cast<size_t>(n * scale);
}

// Runs `answer` (returning the JSON body), in one of `slots` unless null, and
// turns what it throws into an error reply: a request can fail, the server never does.
template <typename Answer>
void respond(httplib::Response& res, Slots* slots, Answer answer) {
  ConnectionGuard::hold_deadline();  // the request is read; computing its answer is the server's time
  try {
    const SlotHold hold(slots);
    res.set_content(answer(), kJson);
  } catch (const Error& e) {
    reply_error(res, http_status(e), e.what());
  } catch (const std::exception& e) {
    reply_error(res, 500, std::string("internal error: ") + e.what());
  }
  ConnectionGuard::restart_deadline();  // the client's time again: to read the reply
}

std::string result_json(const LikeResult& r) {
  std::ostringstream out;
  write_like_result(r, OutputFormat::kJson, out);
  return out.str();
}

std::string results_json(const std::vector<LikeResult>& results) {
  std::ostringstream out;
  write_like_results(results, OutputFormat::kJson, out);
  return out.str();
}

// The request body, read by the route itself: httplib's own reading would cap
// bodies sent form-encoded (what most HTTP clients do by default) at 8 KB, and
// would not bound what a gzip/brotli body expands to. Replies 413 past
// max_body and returns false when there is no body to answer.
bool read_body(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader,
               size_t max_body, std::string* body) {
  if (req.is_multipart_form_data()) {
    reply_error(res, 400, "the request body must be JSON (Content-Type: application/json), not multipart form data");
    return false;
  }
  bool too_large = false;
  const bool read = reader([&](const char* data, size_t n) {
    too_large = body->size() + n > max_body;
    if (!too_large) body->append(data, n);
    return !too_large;
  });
  too_large = too_large || res.status == 413;  // httplib's own check of Content-Length against the same limit
  if (too_large)
    reply_error(res, 413, "the request body is larger than the server's limit of " + std::to_string(max_body) +
                              " bytes (--max-body)");
  else if (!read)
    reply_error(res, 400, "the request body could not be read");
  return read && !too_large;
}

// The server's --device applies to every request.
LikeQuery on_device(LikeQuery q, SearchDevice device) {
  q.search.device = device;
  return q;
}

// Each request takes the live store once and answers wholly from it (see LiveStore).
void add_routes(httplib::Server& server, LiveStore& live, const ServeFlags& f, size_t max_body, Slots* slots) {
  const SearchDevice device = parse_search_device(f.device);
  server.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    const auto store = live.current();
    respond(res, nullptr, [&] { return "{\"status\": \"ok\", \"objects\": " + std::to_string(store->num_objects()) + "}\n"; });
  });
  server.Get("/spaces", [&](const httplib::Request&, httplib::Response& res) {
    const auto store = live.current();
    respond(res, nullptr, [&] { return spaces_json(*store); });
  });
  server.Get("/like", [&, device, slots](const httplib::Request& req, httplib::Response& res) {
    const auto store = live.current();
    respond(res, slots, [&] {
      const std::vector<std::pair<std::string, std::string>> params(req.params.begin(), req.params.end());
      return result_json(search_like(*store, on_device(parse_query_params(params, f.limits), device)));
    });
  });
  server.Post("/query", [&, max_body, device, slots](const httplib::Request& req, httplib::Response& res,
                                              const httplib::ContentReader& reader) {
    std::string body;
    if (!read_body(req, res, reader, max_body, &body)) return;
    const auto store = live.current();
    respond(res, slots, [&] { return result_json(search_like(*store, on_device(parse_query_json(body, f.limits), device))); });
  });
  // A batch answers 200 with each failed id's error in its block, as --like-file prints it.
  server.Post("/batch", [&, max_body, device, slots](const httplib::Request& req, httplib::Response& res,
                                              const httplib::ContentReader& reader) {
    std::string body;
    if (!read_body(req, res, reader, max_body, &body)) return;
    const auto store = live.current();
    respond(res, slots, [&] {
      const BatchQuery b = parse_batch_json(body, f.limits);
      return results_json(search_like_batch(*store, on_device(b.common, device), b.ids));
    });
  });
}

// Gives the replies httplib makes itself (no route, body too large, bad
// HTTP) the same {"error": ...} body as ours.
void add_error_replies(httplib::Server& server, size_t max_body) {
  server.set_error_handler([max_body](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a route's own error reply
    std::string why = "HTTP status " + std::to_string(res.status);
    if (res.status == 404)
      why = "no endpoint " + req.method + " " + req.path +
            " (GET /, /health, /spaces, /like, /object, /cutout, /spectrum, /lightcurve, /map;"
            " POST /query, /batch, /hunt, /outliers, /cutouts, /objects)";
    else if (res.status == 413)
      why = "the request body is larger than the server's limit of " + std::to_string(max_body) + " bytes (--max-body)";
    else if (res.status == 400)
      why = "malformed HTTP request";
    reply_error(res, res.status, why);
  });
  server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    reply_error(res, 500, "internal error");
  });
}

}  // namespace

CLI::App* add_serve_command(CLI::App& app, ServeFlags& f) {
  CLI::App* cmd = app.add_subcommand("serve", "answer queries over HTTP as JSON (GET /like, POST /query, POST /batch)");
  add_store_flag(cmd, f.store);
  cmd->add_option("--host", f.host, "address to listen on (0.0.0.0 exposes the store to the network)")->capture_default_str();
  cmd->add_option("--port", f.port, "TCP port (0: any free port)")->capture_default_str()->check(CLI::Range(0, 65535));
  cmd->add_option("--threads", f.threads, "queries computed at once (connections each have their own thread)")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_option("--max-k", f.limits.max_k, "largest k a request may ask")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--max-ids", f.limits.max_ids, "most object ids in one request (a batch's ids, or like + unlike)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--max-body", f.max_body, "largest request body (e.g. 1MB, 64KB)")->capture_default_str();
  cmd->add_option("--timeout", f.timeout_s, "seconds a client may take to send a whole request, or to read a whole reply")
      ->capture_default_str()->check(CLI::Range(1, 3600));
  cmd->add_option("--idle-timeout", f.idle_timeout_s, "seconds a kept-alive connection may wait for its next request")
      ->capture_default_str()->check(CLI::Range(1, 3600));
  cmd->add_option("--max-connections", f.max_connections, "connections open at once, all clients together")
      ->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--max-per-client", f.max_per_client, "connections open at once from one client address")
      ->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--device", f.device, "where exact scans run: cpu, cuda or torch-cpu (as for queries)")
      ->capture_default_str();
  return cmd;
}

int run_serve(const ServeFlags& f) {
  const size_t max_body = parse_size(f.max_body);
  parse_search_device(f.device);  // a bad --device fails before the server starts
  // Shared by the worker threads: a Store is safe for concurrent reads (its
  // SQLite connection is serialized; statements are per call), and LiveStore
  // moves them to each new generation a build commits.
  LiveStore live(f.store);

  // SIGINT/SIGTERM are blocked before any thread starts (so every thread
  // inherits the mask) and taken by one thread with sigwait, which may then
  // call server.stop(): nothing runs inside a signal handler.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  httplib::Server server;
  // httplib's default options add SO_REUSEPORT, with which a second server on
  // the same port would start and take half the connections instead of failing.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.set_payload_max_length(max_body);
  server.set_read_timeout(f.timeout_s, 0);
  server.set_write_timeout(f.timeout_s, 0);
  server.set_keep_alive_timeout(f.idle_timeout_s);
  // Once a reply is written, the next request on the connection has the deadline from then.
  server.set_logger([](const httplib::Request&, const httplib::Response&) { ConnectionGuard::restart_deadline(); });
  Slots slots(f.threads);
  add_routes(server, live, f, max_body, &slots);
  add_gallery_routes(
      server, [&live](const std::function<void(const Store&)>& use) { use(*live.current()); }, f.limits, max_body,
      [&slots](const std::function<void()>& compute) {
        const SlotHold hold(&slots);
        compute();
      });
  add_error_replies(server, max_body);

  const int port = f.port == 0 ? server.bind_to_any_port(f.host) : (server.bind_to_port(f.host, f.port) ? f.port : -1);
  if (port <= 0)
    throw Error(ErrorKind::kIo, "cannot listen on " + f.host + ":" + std::to_string(f.port) +
                                    " (--host/--port: the port is in use or the address is not this machine's)");
  // httplib's per-connection code keeps a connection alive only while this holds the listening socket.
  std::atomic<socket_t>& listening = server.*exposed(ListenSocket());
  const socket_t listener = listening;
  // httplib listens with a backlog of 5: a burst of connections would wait in
  // the kernel's SYN retries (a second or more) before the guard even sees it.
  ::listen(listener, SOMAXCONN);
  const auto serve_connection = exposed(ProcessSocket());
  ConnectionLimits limits;
  limits.max_connections = f.max_connections;
  limits.max_per_client = f.max_per_client;
  limits.deadline = std::chrono::seconds(f.timeout_s);
  ConnectionGuard guard(limits, [&server, serve_connection](int fd) { (server.*serve_connection)(fd); });
  std::cerr << "serving store " << f.store << " on http://" << f.host << ":" << port << std::endl;

  std::atomic<bool> listening_done{false}, signalled{false};
  std::thread stopper([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    signalled = !listening_done;
    listening = INVALID_SOCKET;  // kept-alive connections end after their request in progress
    guard.stop();
  });
  const bool ok = guard.run(listener);
  listening_done = true;
  if (!signalled) pthread_kill(stopper.native_handle(), SIGTERM);  // wake the waiting thread
  stopper.join();
  listening = INVALID_SOCKET;
  close(listener);
  if (!signalled && !ok) throw Error(ErrorKind::kIo, "the server stopped: accepting connections failed");
  std::cerr << "stopped\n";
  return 0;
}

}  // namespace mmu::cli
