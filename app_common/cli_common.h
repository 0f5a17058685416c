// Glue shared by the executables: one error policy for every command.
// Exit codes: 0 success, 1 bad input or not found (message names the thing),
// 2 usage error; anything else is a bug.
#pragma once

#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

#include "mmu/error.h"

namespace mmu::cli {

template <typename Body>
int run_main(CLI::App& app, int argc, char** argv, Body body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }
  try {
    return body();
  } catch (const mmu::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return e.kind() == ErrorKind::kInternal ? 70 : 1;
  } catch (const std::exception& e) {
    std::cerr << "internal error: " << e.what() << "\n";
    return 70;
  }
}

}  // namespace mmu::cli
