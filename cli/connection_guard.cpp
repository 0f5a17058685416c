#include "connection_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>

namespace mmu::cli {

namespace {

using Clock = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

struct Connection {
  // A duplicate of the served socket, closed only after the serving thread has
  // closed its own: the watchdog's shutdown() can never hit a reused descriptor.
  int watch_fd = -1;
  std::string client;
  std::atomic<int64_t> deadline_ns{0};  // 0: the server is working, no deadline
  std::atomic<bool> answering{false};   // from hold_deadline until the reply is written
  bool cut = false;                     // shut down by the watchdog (under State::mutex)
};

thread_local Connection* current_connection = nullptr;
thread_local int64_t current_deadline_ns = 0;

// The client's address without its port: the unit of --max-per-client.
std::string client_address(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(addr).sin_addr, text, sizeof(text));
  else if (addr.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(addr).sin6_addr, text, sizeof(text));
  return text;
}

// A refusal the client can read, sent without waiting (a full send buffer drops it) before closing.
void refuse(int fd, const std::string& why) {
  const std::string body = "{\"error\": \"" + why + "\"}\n";
  const std::string reply = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  [[maybe_unused]] ssize_t sent = send(fd, reply.data(), reply.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  shutdown(fd, SHUT_WR);
  close(fd);
}

}  // namespace

struct ConnectionGuard::State {
  ConnectionLimits limits;
  ServeConnection serve;
  std::atomic<bool> stopping{false};
  std::mutex mutex;
  std::condition_variable changed;                      // a connection ended, or stopping
  std::map<Connection*, std::unique_ptr<Connection>> open;  // under mutex
  std::map<std::string, int> per_client;                // open connections by client address, under mutex

  // Why `client` may not open another connection now; empty when it may.
  std::string refusal(const std::string& client) {
    if (static_cast<int>(open.size()) >= limits.max_connections)
      return "the server has " + std::to_string(open.size()) + " connections open, its limit (--max-connections)";
    const auto from_client = per_client.find(client);
    if (from_client != per_client.end() && from_client->second >= limits.max_per_client)
      return "too many connections from " + client + " (--max-per-client " + std::to_string(limits.max_per_client) + ")";
    return "";
  }

  void admit(int fd, const std::string& client) {
    std::unique_lock<std::mutex> lock(mutex);
    const std::string why = refusal(client);
    if (!why.empty()) {
      lock.unlock();
      refuse(fd, why);
      return;
    }
    auto c = std::make_unique<Connection>();
    c->watch_fd = dup(fd);
    c->client = client;
    c->deadline_ns = now_ns() + std::chrono::nanoseconds(limits.deadline).count();
    Connection* conn = c.get();
    if (conn->watch_fd < 0) {  // out of descriptors: a connection the watchdog could not cut is not served
      lock.unlock();
      refuse(fd, "the server is out of file descriptors");
      return;
    }
    open.emplace(conn, std::move(c));
    ++per_client[client];
    lock.unlock();
    try {
      std::thread([this, fd, conn] { serve_one(fd, conn); }).detach();
    } catch (const std::system_error&) {  // out of threads: this client is refused, the server goes on
      forget(conn);
      refuse(fd, "the server cannot start another thread");
    }
  }

  void forget(Connection* conn) {
    std::lock_guard<std::mutex> lock(mutex);
    close(conn->watch_fd);
    if (--per_client[conn->client] == 0) per_client.erase(conn->client);
    open.erase(conn);
    changed.notify_all();
  }

  void serve_one(int fd, Connection* conn) {
    current_connection = conn;
    current_deadline_ns = std::chrono::nanoseconds(limits.deadline).count();
    try {
      serve(fd);
    } catch (...) {
      // serve() reports its own errors to the client; a connection never ends the server.
    }
    current_connection = nullptr;
    forget(conn);
  }

  // Shuts down, every 50 ms, the connections past their deadline.
  void watch() {
    std::unique_lock<std::mutex> lock(mutex);
    while (!(stopping && open.empty())) {
      changed.wait_for(lock, std::chrono::milliseconds(50));
      const int64_t now = now_ns();
      for (auto& [conn, owned] : open) {
        const int64_t deadline = conn->deadline_ns;
        if (deadline != 0 && now > deadline && !conn->cut) {
          // A reset, not a close: a close would still deliver the reply queued in the send buffer.
          const linger reset{1, 0};
          setsockopt(conn->watch_fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
          shutdown(conn->watch_fd, SHUT_RDWR);
          conn->cut = true;
        }
      }
    }
  }
};

ConnectionGuard::ConnectionGuard(ConnectionLimits limits, ServeConnection serve) : state_(std::make_unique<State>()) {
  state_->limits = limits;
  state_->serve = std::move(serve);
}

ConnectionGuard::~ConnectionGuard() = default;

bool ConnectionGuard::run(int listener) {
  State& s = *state_;
  std::thread watchdog([&s] { s.watch(); });
  bool ok = true;
  while (!s.stopping) {
    pollfd p{listener, POLLIN, 0};
    const int ready = poll(&p, 1, 100);  // wakes to see stop()
    if (ready < 0 && errno != EINTR) {
      ok = false;
      break;
    }
    if (ready <= 0) continue;
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int fd = accept4(listener, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_CLOEXEC);
    if (fd >= 0) {
      // httplib writes a reply's header and body in separate sends; with Nagle's algorithm
      // the body then waits for the client's delayed ACK (~40 ms a request on loopback).
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      s.admit(fd, client_address(addr));
    } else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // out of resources: the queue waits
    } else if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED && errno != EPROTO) {
      ok = false;
      break;
    }
  }
  s.stopping = true;
  {
    // Requests in progress finish and are answered; what a client has not sent yet is not waited for.
    // A connection being answered is left alone: httplib writes a reply only
    // while the socket reads no end of input, and the connection ends after
    // its reply anyway, once the server's listening socket is gone.
    std::unique_lock<std::mutex> lock(s.mutex);
    for (auto& [conn, owned] : s.open)
      if (!conn->answering) shutdown(conn->watch_fd, SHUT_RD);
    s.changed.notify_all();
  }
  watchdog.join();  // returns once every connection is closed
  return ok;
}

void ConnectionGuard::stop() {
  state_->stopping = true;
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->changed.notify_all();
}

void ConnectionGuard::hold_deadline() {
  if (current_connection == nullptr) return;
  current_connection->deadline_ns = 0;
  current_connection->answering = true;
}

void ConnectionGuard::restart_deadline() {
  if (current_connection != nullptr) current_connection->deadline_ns = now_ns() + current_deadline_ns;
}

void ConnectionGuard::reply_written() {
  if (current_connection != nullptr) current_connection->answering = false;
}

}  // namespace mmu::cli
