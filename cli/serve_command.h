// `mmu-search serve`: the store's queries over HTTP as JSON (see query_json.h
// for the request fields). Endpoints:
//   GET  /health                    {"status": "ok", "objects": N}
//   GET  /spaces                    what --list-spaces shows
//   GET  /like?id=X&k=N&space=S     one --like query
//   POST /query   {"like": ..}      one query, exactly as --format json prints it
//   POST /batch   {"ids": [..]}     one query per id, as --like-file --format json prints it
// Errors: 400 bad request, 404 unknown object/space/endpoint, 413 body too
// large, 500 a bug, 503 too many connections (refused before any reading);
// the body is {"error": "..."}. No client can stall the others: see
// connection_guard.h for the connection limits and the request deadline.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "mmu/query_json.h"

namespace mmu::cli {

struct ServeFlags {
  std::string store;
  std::string host = "127.0.0.1";  // loopback unless asked: the server has no authentication
  int port = 8765;                 // 0: any free port (printed at start)
  int threads = 4;                 // queries computed at once
  std::string max_body = "1MB";
  int timeout_s = 30;              // to send a whole request, or read a whole reply (not per read)
  int idle_timeout_s = 5;          // a kept-alive connection's wait for its next request
  int max_connections = 128;       // open at once; more are refused with a 503
  int max_per_client = 16;         // open at once from one client address
  std::string device = "cpu";      // where every request's exact scans run (--device)
  QueryLimits limits;
};

// Adds the `serve` subcommand to `app`; returns it (true when parsed).
CLI::App* add_serve_command(CLI::App& app, ServeFlags& f);
// Opens the store and serves until SIGINT or SIGTERM; the exit code.
int run_serve(const ServeFlags& f);

}  // namespace mmu::cli
