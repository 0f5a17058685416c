#include "default_space_command.h"

#include <iostream>
#include <set>

#include "mmu/error.h"
#include "mmu/store.h"
#include "store_flag.h"

namespace mmu::cli {

CLI::App* add_default_space_command(CLI::App& app, DefaultSpaceFlags& f) {
  auto* d = app.add_subcommand("default-space",
                               "show each modality's default search space, or choose one with --space (kept across rebuilds)");
  d->add_option("--space", f.space, "space to make the default of its modality (name or model name)");
  d->add_option("--modality", f.modality, "image, spectrum, ...: checked against --space's; without --space, the one to show");
  add_store_flag(d, f.store);
  return d;
}

int run_default_space(const DefaultSpaceFlags& f) {
  if (!f.space.empty()) set_default_space(f.store, f.modality, f.space);
  const auto store = Store::open(f.store);
  std::set<std::string> modalities;
  for (const SpaceInfo& s : store->spaces()) modalities.insert(s.modality);
  if (!f.modality.empty() && !modalities.count(f.modality))
    throw NotFound("store '" + f.store + "' has no space of modality '" + f.modality + "'");
  for (const std::string& m : modalities) {
    if (!f.modality.empty() && m != f.modality) continue;
    std::cout << m << ": " << store->default_space(m)
              << (store->default_space_chosen(m) ? " (chosen)" : " (newest model space, else the baseline)") << "\n";
  }
  return 0;
}

}  // namespace mmu::cli
