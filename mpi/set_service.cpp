#include "set_service.h"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mmu/query_json.h"

namespace mmu::mpi {

namespace {

constexpr const char* kEndpoints =
    "GET /health, /spaces, /like; POST /query, /batch: the search API of mmu-search serve, without its gallery";

// How long a scan in progress still waits for the ranks once mpirun tears the
// job down: it sends SIGTERM, then SIGKILL a second later (Open MPI's
// odls_base_sigkill_timeout), and the request must be answered before that.
constexpr std::chrono::milliseconds kTeardownWait{250};

// Every scan of the service, from whichever HTTP thread, goes through here:
// main asks MPI for MPI_THREAD_SERIALIZED, which allows MPI calls from any
// thread but never two at once, so each scan holds the mutex from its
// broadcast to the ranks' last answer. Once a rank is lost the ranks are out
// of step for good: every later scan fails at once, and the service stops.
class Dispatcher {
 public:
  Dispatcher(const StoreSet& set, RankOptions opt, cli::HttpService* service)
      : set_(set), opt_(opt), service_(service) {
    opt_.give_up_ns = &give_up_ns_;
  }

  // The scanner of one query: its filter and search options go with every scan.
  SetScanner scanner(const LikeQuery& q) {
    SetScanner scan = rank0_scanner(set_, q, opt_);
    return [this, scan](const std::string& space, const std::vector<float>& queries, int64_t nq, int64_t fetch) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!lost_.empty()) throw cli::StatusError(503, lost_);
      try {
        return scan(space, queries, nq, fetch);
      } catch (const RankLost& e) {
        lost_ = std::string(e.what()) + "; the service stops";
        service_->stop();
        throw cli::StatusError(503, lost_);
      }
    };
  }

  // Every rank answers an empty scan: none is lost.
  void ping() { scanner(LikeQuery{})("", {}, 0, 1); }

  // The job is being torn down: a scan in progress gives up soon (naming the
  // rank it still waits for) instead of being killed with its request unanswered.
  void give_up_soon() {
    const auto at = std::chrono::steady_clock::now().time_since_epoch() + kTeardownWait;
    give_up_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(at).count();
  }

  // Why the ranks are out of step; "" while they are not.
  std::string lost() {
    std::lock_guard<std::mutex> lock(mutex_);
    return lost_;
  }

 private:
  const StoreSet& set_;
  RankOptions opt_;
  cli::HttpService* service_;
  std::atomic<int64_t> give_up_ns_{0};
  std::mutex mutex_;
  std::string lost_;  // under mutex_
};

// Where rank 0 runs: under Slurm, the node a client must reach.
std::string host_name() {
  char name[256] = {};
  return gethostname(name, sizeof(name) - 1) == 0 ? name : "?";
}

}  // namespace

std::string set_spaces_json(const StoreSet& set) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  std::map<std::string, size_t> at;
  std::vector<std::vector<std::string>> methods;  // of out[i], each once, in store order
  for (size_t i = 0; i < set.size(); ++i) {
    const nlohmann::ordered_json one = nlohmann::ordered_json::parse(spaces_json(set.store(i)));
    for (const auto& s : one.at("spaces")) {
      const std::string name = s["name"];
      const std::string method = s["search"];
      const auto [it, fresh] = at.emplace(name, out.size());
      if (fresh) {
        out.push_back(s);
        methods.push_back({method});
        continue;
      }
      nlohmann::ordered_json& first = out[it->second];
      first["count"] = first["count"].get<int64_t>() + s["count"].get<int64_t>();
      // The set's default only where every store holding the space agrees.
      first["default"] = first["default"].get<bool>() && s["default"].get<bool>();
      std::vector<std::string>& m = methods[it->second];
      if (std::find(m.begin(), m.end(), method) == m.end()) m.push_back(method);
    }
  }
  for (size_t i = 0; i < out.size(); ++i) {
    std::string joined;
    for (const std::string& m : methods[i]) joined += (joined.empty() ? "" : " / ") + m;
    out[i]["search"] = joined + " over " + std::to_string(set.size()) + " stores";  // as a query's "method" says
  }
  return nlohmann::ordered_json{{"spaces", out}}.dump(1) + "\n";
}

int run_set_service(const StoreSet& set, const cli::HttpFlags& http, SearchDevice device, RankOptions opt) {
  cli::HttpService service(http);
  Dispatcher dispatcher(set, opt, &service);
  int64_t objects = 0;
  for (size_t i = 0; i < set.size(); ++i) objects += set.store(i).num_objects();
  int ranks = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const std::string spaces = set_spaces_json(set);  // the set does not change while served

  cli::SearchApi api;
  api.health = [&] {
    dispatcher.ping();
    return "{\"status\": \"ok\", \"objects\": " + std::to_string(objects) + ", \"stores\": " +
           std::to_string(set.size()) + ", \"ranks\": " + std::to_string(ranks) + "}\n";
  };
  api.spaces = [&] { return spaces; };
  api.like = [&](const LikeQuery& q) { return search_like_set(set, q, dispatcher.scanner(q)); };
  api.batch = [&](const LikeQuery& common, const std::vector<std::string>& ids) {
    return search_like_set_batch(set, common, ids, dispatcher.scanner(common));
  };
  service.add_search_routes(api, device);
  service.add_error_replies(kEndpoints);
  const int port = service.bind();
  std::cerr << "serving " << set.size() << " stores over " << ranks << " ranks on http://" << http.host << ":" << port
            << std::endl
            << "rank 0 is pid " << getpid() << " on " << host_name()
            << ": SIGTERM to it stops the service with exit code 0" << std::endl;
  service.run([&](const siginfo_t& info) {
    // From mpirun (or orted): the job is being torn down, and it kills every
    // rank a second later whatever they do.
    if (info.si_pid == getppid()) dispatcher.give_up_soon();
  });
  const std::string lost = dispatcher.lost();
  if (!lost.empty()) throw RankLost(lost);
  std::cerr << "stopped" << std::endl;
  return 0;
}

}  // namespace mmu::mpi
