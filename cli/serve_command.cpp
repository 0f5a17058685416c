#include "serve_command.h"

#include <iostream>
#include <string>
#include <vector>

#include "gallery_routes.h"
#include "http_service.h"
#include "mmu/device_search.h"
#include "mmu/live_store.h"
#include "mmu/store.h"
#include "store_flag.h"

namespace mmu::cli {

namespace {

// The gallery's endpoints besides the search API (gallery_routes.h), for a 404's list.
constexpr const char* kEndpoints =
    "GET /, /health, /spaces, /like, /object, /cutout, /spectrum, /lightcurve, /map;"
    " POST /query, /batch, /hunt, /outliers, /cutouts, /objects";

// Each request takes the live store once and answers wholly from it (see LiveStore).
SearchApi live_store_api(LiveStore& live) {
  SearchApi api;
  api.health = [&live] {
    return "{\"status\": \"ok\", \"objects\": " + std::to_string(live.current()->num_objects()) + "}\n";
  };
  api.spaces = [&live] { return spaces_json(*live.current()); };
  api.like = [&live](const LikeQuery& q) { return search_like(*live.current(), q); };
  api.batch = [&live](const LikeQuery& common, const std::vector<std::string>& ids) {
    return search_like_batch(*live.current(), common, ids);
  };
  return api;
}

}  // namespace

CLI::App* add_serve_command(CLI::App& app, ServeFlags& f) {
  CLI::App* cmd = app.add_subcommand("serve", "answer queries over HTTP as JSON (GET /like, POST /query, POST /batch)");
  add_store_flag(cmd, f.store);
  add_http_flags(cmd, f);
  cmd->add_option("--device", f.device, "where exact scans run: cpu, cuda or torch-cpu (as for queries)")
      ->capture_default_str();
  return cmd;
}

int run_serve(const ServeFlags& f) {
  const SearchDevice device = parse_search_device(f.device);  // a bad --device fails before the server starts
  HttpService::block_stop_signals();  // before any thread starts: every thread inherits the mask
  HttpService service(f);
  // Shared by the worker threads: a Store is safe for concurrent reads (its
  // SQLite connection is serialized; statements are per call), and LiveStore
  // moves them to each new generation a build commits.
  LiveStore live(f.store);
  const SearchApi api = live_store_api(live);
  service.add_search_routes(api, device);
  Slots* slots = service.slots();
  add_gallery_routes(
      service.server(), [&live](const std::function<void(const Store&)>& use) { use(*live.current()); }, f.limits,
      service.max_body(), [slots](const std::function<void()>& compute) {
        const SlotHold hold(slots);
        compute();
      });
  service.add_error_replies(kEndpoints);
  const int port = service.bind();
  std::cerr << "serving store " << f.store << " on http://" << f.host << ":" << port << std::endl;
  service.run([](const siginfo_t&) {});
  std::cerr << "stopped\n";
  return 0;
}

}  // namespace mmu::cli
