// `mmu-index xmatch`: cross-match two sides by position, print pairs, and
// optionally link them in the store.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace mmu::cli {

struct XmatchFlags {
  std::string left, right, store, radius = "1arcsec", format = "table";
  bool all = false, link = false;
};

CLI::App* add_xmatch_command(CLI::App& app, XmatchFlags& f);
int run_xmatch(const XmatchFlags& f);

}  // namespace mmu::cli
