#include "xmatch_command.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <future>
#include <iostream>

#include "mmu/crossmatch.h"
#include "mmu/pair_csv.h"
#include "mmu/error.h"
#include "mmu/result_format.h"
#include "mmu/sky.h"
#include "mmu/sky_source.h"
#include "mmu/store.h"
#include "mmu/text.h"
#include "store_flag.h"

namespace mmu::cli {

CLI::App* add_xmatch_command(CLI::App& app, XmatchFlags& f) {
  auto* x = app.add_subcommand("xmatch", "cross-match two catalogs by sky position (exact, across cell borders)");
  x->add_option("--left", f.left, "store, STORE:SURVEY, MMU folder/file, or a survey of --store")->required();
  x->add_option("--right", f.right, "same forms as --left")->required();
  x->add_option("--radius", f.radius, "match radius, e.g. 1arcsec, 0.5arcsec, 2arcmin")->capture_default_str();
  x->add_flag("--all", f.all, "every pair within the radius, not only each left object's nearest");
  x->add_flag("--link", f.link, "record the pairs in the store so either id reaches both modalities");
  x->add_option("--format", f.format, "table, csv or json")->capture_default_str();
  add_store_flag(x, f.store, "store for survey names and --link");
  return x;
}

int run_xmatch(const XmatchFlags& f) {
  const OutputFormat fmt = parse_output_format(f.format);
  const double radius = parse_angle_deg(f.radius, "--radius");
  const SkySource r = load_sky_source(f.right, f.store);
  // The right side is indexed on another thread while this one reads the left
  // side (HDF5 stays on this thread).
  auto index = std::async(std::launch::async, [&] { return CrossMatchIndex(r.ra, r.dec, radius); });
  const SkySource l = load_sky_source(f.left, f.store);
  for (const SkySource* side : {&r, &l})
    for (const std::string& w : side->warnings) std::cerr << "warning: " << w << "\n";
  // An object is never its own match: matching a survey with itself is how
  // duplicates and repeat observations are found.
  const std::vector<int64_t> same = same_objects(l, r);
  if (!same.empty())
    std::cerr << (same.size() - static_cast<size_t>(std::count(same.begin(), same.end(), -1)))
              << " objects are on both sides: an object is not paired with itself"
              << (f.all ? "" : ", each gets its nearest other object") << "\n";
  const CrossMatchIndex matcher = index.get();
  auto summary = [&](int64_t pairs) {
    std::cerr << pairs << " pairs within " << radius * 3600.0 << " arcsec (" << l.ids.size() << " left, "
              << r.ids.size() << " right objects)\n";
  };
  if (fmt == OutputFormat::kCsv && !f.link) {
    // Rows straight from the match's answers: no vector of pairs (the same bytes).
    if (f.all) {
      const AllPairMatches all = matcher.match_all(l.ra, l.dec, same);
      write_all_pairs_csv(l, r, all, STDOUT_FILENO);
      summary(all.pair_count());
    } else {
      const NearestMatches nearest = matcher.match_nearest(l.ra, l.dec, same);
      write_nearest_csv(l, r, nearest, STDOUT_FILENO);
      summary(nearest.pair_count());
    }
    return 0;
  }
  const auto pairs = matcher.match(l.ra, l.dec, f.all, same);

  std::ios::sync_with_stdio(false);
  if (fmt == OutputFormat::kCsv) {
    write_pairs_csv(l, r, pairs, STDOUT_FILENO);
  } else {
    char buf[512];
    if (fmt == OutputFormat::kJson) std::cout << "[";
    if (fmt == OutputFormat::kTable) {
      std::snprintf(buf, sizeof(buf), "%-20s %-14s %-20s %-14s %10s\n", "left_id", "left_survey", "right_id",
                    "right_survey", "sep_arcsec");
      std::cout << buf;
    }
    for (size_t i = 0; i < pairs.size(); ++i) {
      const auto& p = pairs[i];
      if (fmt == OutputFormat::kJson) {
        std::snprintf(buf, sizeof(buf), "%.6f", p.sep_arcsec);
        std::cout << (i ? ",\n " : "\n ") << "{\"left_id\": " << text::json_quote(l.ids.text(p.left))
                  << ", \"left_survey\": " << text::json_quote(l.survey(p.left)) << ", \"right_id\": "
                  << text::json_quote(r.ids.text(p.right)) << ", \"right_survey\": " << text::json_quote(r.survey(p.right))
                  << ", \"sep_arcsec\": " << buf << "}";
      } else {
        std::snprintf(buf, sizeof(buf), "%-20s %-14s %-20s %-14s %10.4f\n", l.ids.text(p.left).c_str(),
                      l.survey(p.left).c_str(), r.ids.text(p.right).c_str(), r.survey(p.right).c_str(), p.sep_arcsec);
        std::cout << buf;
      }
    }
  }
  if (fmt == OutputFormat::kJson) std::cout << "\n]\n";
  if (!std::cout.flush()) throw IoError("standard output", "write", errno);
  summary(static_cast<int64_t>(pairs.size()));

  if (f.link) {
    if (l.store.empty() || r.store.empty() || l.store != r.store)
      throw InvalidArgument("--link needs both sides from the same store (give survey names or STORE:SURVEY)");
    std::vector<RowLink> links;
    for (const auto& p : pairs)
      if (l.rows[p.left] != r.rows[p.right]) links.push_back({l.rows[p.left], r.rows[p.right], p.sep_arcsec});
    link_objects(l.store, links);
    std::cerr << "linked " << links.size() << " pairs in store " << l.store << "\n";
  }
  return 0;
}

}  // namespace mmu::cli
