// `mmu-index xmatch`: cross-match two sides by position, print pairs, and
// optionally link them in the store.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace mmu::cli {

struct XmatchOptions {
  std::string left, right, store, radius = "1arcsec", format = "table";
  bool all = false, link = false;
};

CLI::App* setup_xmatch(CLI::App& app, XmatchOptions& opt);
int run_xmatch(const XmatchOptions& opt);

}  // namespace mmu::cli
