// The accept loop of `mmu-search serve`, so that no client can stall it:
// every connection gets its own thread (a slow or idle client holds a
// blocked thread, never a worker another client waits for), connections are
// bounded in total and per client address (refused with a 503 at accept,
// before anything is read), and a watchdog shuts down a connection whose
// client has not sent a whole request, or read a whole reply, within the
// deadline: a deadline on the request, not on each read, which a byte every
// few seconds would keep alive.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace mmu::cli {

struct ConnectionLimits {
  int max_connections = 128;           // open at once, all clients together
  int max_per_client = 16;             // open at once from one client address
  std::chrono::seconds deadline{30};  // to send a whole request, or to read a whole reply
};

// Thread-safe: stop() may be called from any thread while run() accepts.
class ConnectionGuard {
 public:
  // Serves one accepted connection on the calling thread and closes `fd`.
  using ServeConnection = std::function<void(int fd)>;

  ConnectionGuard(ConnectionLimits limits, ServeConnection serve);
  ~ConnectionGuard();
  ConnectionGuard(const ConnectionGuard&) = delete;
  ConnectionGuard& operator=(const ConnectionGuard&) = delete;

  // Accepts on the listening socket `listener` until stop(), then lets the
  // requests in progress finish (their clients' unread input is dropped) and
  // returns when every connection is closed; false when accepting failed.
  bool run(int listener);
  void stop();

  // Called by the request handlers, on the connection's own thread:
  // the request is read, and the server's own work has no deadline...
  static void hold_deadline();
  // ...and from now the client has a deadline again (to read the reply, then to send its next request).
  static void restart_deadline();
  // Called once a reply is written (httplib's logger): from hold_deadline to
  // here a stop leaves the connection alone, so that its reply goes out.
  static void reply_written();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace mmu::cli
