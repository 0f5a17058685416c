#include "http_service.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <sstream>
#include <thread>
#include <utility>

#include "connection_guard.h"
#include "http_reply.h"
#include "mmu/result_format.h"

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

sigset_t stop_signals() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  return s;
}

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
  } catch (const StatusError& e) {
    reply_error(res, e.status(), e.what());
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

// The server's --device applies to every request.
LikeQuery on_device(LikeQuery q, SearchDevice device) {
  q.search.device = device;
  return q;
}

}  // namespace

std::vector<CLI::Option*> add_http_flags(CLI::App* cmd, HttpFlags& f) {
  return {
      cmd->add_option("--host", f.host, "address to listen on (0.0.0.0 exposes the store to the network)")
          ->capture_default_str(),
      cmd->add_option("--port", f.port, "TCP port (0: any free port)")->capture_default_str()->check(CLI::Range(0, 65535)),
      cmd->add_option("--threads", f.threads, "queries computed at once (connections each have their own thread)")
          ->capture_default_str()
          ->check(CLI::Range(1, 256)),
      cmd->add_option("--max-k", f.limits.max_k, "largest k a request may ask")
          ->capture_default_str()
          ->check(CLI::PositiveNumber),
      cmd->add_option("--max-ids", f.limits.max_ids, "most object ids in one request (a batch's ids, or like + unlike)")
          ->capture_default_str()
          ->check(CLI::PositiveNumber),
      cmd->add_option("--max-body", f.max_body, "largest request body (e.g. 1MB, 64KB)")->capture_default_str(),
      cmd->add_option("--timeout", f.timeout_s, "seconds a client may take to send a whole request, or to read a whole reply")
          ->capture_default_str()
          ->check(CLI::Range(1, 3600)),
      cmd->add_option("--idle-timeout", f.idle_timeout_s, "seconds a kept-alive connection may wait for its next request")
          ->capture_default_str()
          ->check(CLI::Range(1, 3600)),
      cmd->add_option("--max-connections", f.max_connections, "connections open at once, all clients together")
          ->capture_default_str()
          ->check(CLI::Range(1, 4096)),
      cmd->add_option("--max-per-client", f.max_per_client, "connections open at once from one client address")
          ->capture_default_str()
          ->check(CLI::Range(1, 4096)),
  };
}

void Slots::acquire() {
  std::unique_lock<std::mutex> lock(mutex_);
  freed_.wait(lock, [this] { return free_ > 0; });
  --free_;
}

void Slots::release() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++free_;
  freed_.notify_one();
}

SlotHold::SlotHold(Slots* s) : slots_(s) {
  if (slots_ != nullptr) slots_->acquire();
}

SlotHold::~SlotHold() {
  if (slots_ != nullptr) slots_->release();
}

// The request body, read by the route itself: httplib's own reading would cap
// bodies sent form-encoded (what most HTTP clients do by default) at 8 KB, and
// would not bound what a gzip/brotli body expands to.
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

// What run() needs once bound: the listening socket and the accept loop.
struct HttpService::Loop {
  Loop(ConnectionLimits limits, ConnectionGuard::ServeConnection serve) : guard(limits, std::move(serve)) {}
  socket_t listener = INVALID_SOCKET;
  ConnectionGuard guard;
};

void HttpService::block_stop_signals() {
  const sigset_t s = stop_signals();
  pthread_sigmask(SIG_BLOCK, &s, nullptr);
}

void HttpService::unblock_stop_signals() {
  const sigset_t s = stop_signals();
  pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
}

HttpService::HttpService(const HttpFlags& f) : flags_(f), max_body_(parse_size(f.max_body)), slots_(f.threads) {
  // httplib's default options add SO_REUSEPORT, with which a second server on
  // the same port would start and take half the connections instead of failing.
  server_.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server_.set_payload_max_length(max_body_);
  server_.set_read_timeout(f.timeout_s, 0);
  server_.set_write_timeout(f.timeout_s, 0);
  server_.set_keep_alive_timeout(f.idle_timeout_s);
  // Once a reply is written, the next request on the connection has the deadline from then.
  server_.set_logger([](const httplib::Request&, const httplib::Response&) {
    ConnectionGuard::reply_written();
    ConnectionGuard::restart_deadline();
  });
}

HttpService::~HttpService() = default;

void HttpService::add_search_routes(const SearchApi& api, SearchDevice device) {
  const QueryLimits limits = flags_.limits;
  const size_t max_body = max_body_;
  Slots* slots = &slots_;
  server_.Get("/health", [&api](const httplib::Request&, httplib::Response& res) {
    respond(res, nullptr, [&] { return api.health(); });
  });
  server_.Get("/spaces", [&api](const httplib::Request&, httplib::Response& res) {
    respond(res, nullptr, [&] { return api.spaces(); });
  });
  server_.Get("/like", [&api, limits, device, slots](const httplib::Request& req, httplib::Response& res) {
    respond(res, slots, [&] {
      const std::vector<std::pair<std::string, std::string>> params(req.params.begin(), req.params.end());
      return result_json(api.like(on_device(parse_query_params(params, limits), device)));
    });
  });
  server_.Post("/query", [&api, limits, max_body, device, slots](const httplib::Request& req, httplib::Response& res,
                                                                 const httplib::ContentReader& reader) {
    std::string body;
    if (!read_body(req, res, reader, max_body, &body)) return;
    respond(res, slots, [&] { return result_json(api.like(on_device(parse_query_json(body, limits), device))); });
  });
  // A batch answers 200 with each failed id's error in its block, as --like-file prints it.
  server_.Post("/batch", [&api, limits, max_body, device, slots](const httplib::Request& req, httplib::Response& res,
                                                                 const httplib::ContentReader& reader) {
    std::string body;
    if (!read_body(req, res, reader, max_body, &body)) return;
    respond(res, slots, [&] {
      const BatchQuery b = parse_batch_json(body, limits);
      return results_json(api.batch(on_device(b.common, device), b.ids));
    });
  });
}

void HttpService::add_error_replies(const std::string& endpoints) {
  const size_t max_body = max_body_;
  server_.set_error_handler([max_body, endpoints](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;  // a route's own error reply
    std::string why = "HTTP status " + std::to_string(res.status);
    if (res.status == 404)
      why = "no endpoint " + req.method + " " + req.path + " (" + endpoints + ")";
    else if (res.status == 413)
      why = "the request body is larger than the server's limit of " + std::to_string(max_body) + " bytes (--max-body)";
    else if (res.status == 400)
      why = "malformed HTTP request";
    reply_error(res, res.status, why);
  });
  server_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    reply_error(res, 500, "internal error");
  });
}

int HttpService::bind() {
  const HttpFlags& f = flags_;
  const int port = f.port == 0 ? server_.bind_to_any_port(f.host) : (server_.bind_to_port(f.host, f.port) ? f.port : -1);
  if (port <= 0)
    throw Error(ErrorKind::kIo, "cannot listen on " + f.host + ":" + std::to_string(f.port) +
                                    " (--host/--port: the port is in use or the address is not this machine's)");
  ConnectionLimits limits;
  limits.max_connections = f.max_connections;
  limits.max_per_client = f.max_per_client;
  limits.deadline = std::chrono::seconds(f.timeout_s);
  const auto serve_connection = exposed(ProcessSocket());
  loop_ = std::make_unique<Loop>(limits, [this, serve_connection](int fd) { (server_.*serve_connection)(fd); });
  loop_->listener = server_.*exposed(ListenSocket());
  // httplib listens with a backlog of 5: a burst of connections would wait in
  // the kernel's SYN retries (a second or more) before the guard even sees it.
  ::listen(loop_->listener, SOMAXCONN);
  return port;
}

void HttpService::stop() {
  if (!loop_) return;
  // httplib's per-connection code keeps a connection alive only while this holds the listening socket:
  // kept-alive connections end after their request in progress.
  (server_.*exposed(ListenSocket())) = INVALID_SOCKET;
  loop_->guard.stop();
}

void HttpService::run(const std::function<void(const siginfo_t&)>& on_signal) {
  // The stop signals, blocked in every thread, are taken by one thread with
  // sigwaitinfo, which may then call stop(): nothing runs inside a signal handler.
  const sigset_t signals = stop_signals();
  std::atomic<bool> listening_done{false}, signalled{false};
  std::thread stopper([&] {
    siginfo_t info{};
    while (sigwaitinfo(&signals, &info) < 0) {
    }
    signalled = !listening_done;
    if (signalled) on_signal(info);
    stop();
  });
  const bool ok = loop_->guard.run(loop_->listener);
  listening_done = true;
  if (!signalled) pthread_kill(stopper.native_handle(), SIGTERM);  // wake the waiting thread
  stopper.join();
  (server_.*exposed(ListenSocket())) = INVALID_SOCKET;
  close(loop_->listener);
  if (!signalled && !ok) throw Error(ErrorKind::kIo, "the server stopped: accepting connections failed");
}

}  // namespace mmu::cli
