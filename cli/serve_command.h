// `mmu-search serve`: the store's queries over HTTP as JSON (http_service.h
// lists the search endpoints and errors; query_json.h the request fields),
// plus the gallery (gallery_routes.h). No client can stall the others: see
// connection_guard.h for the connection limits and the request deadline.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "http_service.h"

namespace mmu::cli {

struct ServeFlags : HttpFlags {
  std::string store;
  std::string device = "cpu";  // where every request's exact scans run (--device)
};

// Adds the `serve` subcommand to `app`; returns it (true when parsed).
CLI::App* add_serve_command(CLI::App& app, ServeFlags& f);
// Opens the store and serves until SIGINT or SIGTERM; the exit code.
int run_serve(const ServeFlags& f);

}  // namespace mmu::cli
