#include "mmu/pair_csv.h"

#include <omp.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>

#include "mmu/error.h"
#include "mmu/sky_source.h"
#include "xmatch_test_util.h"

namespace {

using mmu::test::integer_sky_source;
using mmu::test::written_with_threads;

// What write_pairs_csv writes to a file, with `threads` OpenMP threads.
std::string csv_of(const mmu::SkySource& l, const mmu::SkySource& r, const std::vector<mmu::MatchPair>& pairs,
                   int threads) {
  return written_with_threads([&](int fd) { mmu::write_pairs_csv(l, r, pairs, fd); }, threads);
}

// The row as printf writes it: the independent form of the expected output.
std::string row(const std::string& l, const std::string& ls, const std::string& r, const std::string& rs, double sep) {
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%s,%s,%s,%s,%.6f\n", l.c_str(), ls.c_str(), r.c_str(), rs.c_str(), sep);
  return buf;
}

}  // namespace

TEST_CASE("pair CSV rows equal printf's, separations near rounding midpoints included", "[xmatch]") {
  const mmu::SkySource l = integer_sky_source(1000, -500, "left"), r = integer_sky_source(1000, 1000000000000, "right");
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<mmu::MatchPair> pairs;
  std::string expected = "left_id,left_survey,right_id,right_survey,sep_arcsec\n";
  for (int k = 0; k < 200000; ++k) {
    double sep;
    switch (k % 5) {
      case 0: sep = u(rng) * 3.0; break;                                      // arcsec radii
      case 1: sep = u(rng) * 36000.0; break;                                  // up to 10 deg
      case 2: sep = (std::floor(u(rng) * 3e6) + 0.5) / 1e6; break;            // on a midpoint
      case 3: sep = std::nextafter((std::floor(u(rng) * 3e6) + 0.5) / 1e6, 1e9); break;
      default: sep = std::ldexp(u(rng), -static_cast<int>(u(rng) * 40)); break;  // tiny
    }
    if (k == 7) sep = 0.0;
    const int64_t i = static_cast<int64_t>(u(rng) * 1000), j = static_cast<int64_t>(u(rng) * 1000);
    pairs.emplace_back(i, j, sep);
    expected += row(std::to_string(i - 500), "left", std::to_string(j + 1000000000000), "right", sep);
  }
  CHECK(csv_of(l, r, pairs, 2) == expected);
}

TEST_CASE("pair CSV bytes do not depend on the number of threads", "[xmatch]") {
  // Text ids of several lengths on the left, integers on the right, two
  // surveys: many blocks (a block's buffer is 2 MB), formatted by 1, 2 and 3 threads.
  mmu::SkySource l, r = integer_sky_source(5000, 0, "desi");
  std::vector<std::string> texts;
  for (int i = 0; i < 3000; ++i) texts.push_back("obj-" + std::string(static_cast<size_t>(i % 17), 'x') + std::to_string(i));
  l.ids.append_texts(std::move(texts));
  l.survey_names = {"legacysurvey", "hsc"};
  for (int i = 0; i < 3000; ++i) l.survey_of.push_back(static_cast<uint32_t>(i % 2));
  std::vector<mmu::MatchPair> pairs;
  std::mt19937_64 rng(11);
  for (int64_t i = 0; i < 3000; ++i)
    for (int k = 0; k < 70; ++k) pairs.emplace_back(i, static_cast<int64_t>(rng() % 5000), (rng() % 1000000) * 1e-6);
  const std::string one = csv_of(l, r, pairs, 1);
  CHECK(std::count(one.begin(), one.end(), '\n') == static_cast<long>(pairs.size()) + 1);
  CHECK(csv_of(l, r, pairs, 2) == one);
  CHECK(csv_of(l, r, pairs, 3) == one);
  // The first rows, as printf writes them.
  const std::string head = row("obj-0", "legacysurvey", std::to_string(pairs[0].right), "desi", pairs[0].sep_arcsec);
  CHECK(one.substr(one.find('\n') + 1, head.size()) == head);
}

TEST_CASE("object ids: integers print as FileCatalog's text, mixed kinds become text", "[xmatch]") {
  mmu::ObjectIds ids;
  ids.append_integers(mmu::ObjectIds::Kind::kSigned,
                      {static_cast<uint64_t>(int64_t{-42}), static_cast<uint64_t>(std::numeric_limits<int64_t>::min())});
  CHECK(ids.kind() == mmu::ObjectIds::Kind::kSigned);
  CHECK(ids.text(0) == "-42");
  CHECK(ids.text(1) == std::to_string(std::numeric_limits<int64_t>::min()));
  ids.append_integers(mmu::ObjectIds::Kind::kUnsigned, {std::numeric_limits<uint64_t>::max()});
  CHECK(ids.kind() == mmu::ObjectIds::Kind::kText);
  CHECK(ids.size() == 3);
  CHECK(ids.text(2) == "18446744073709551615");
  ids.append_texts({"NGC 1"});
  CHECK(ids.text(0) == "-42");
  CHECK(ids.text(3) == "NGC 1");
  CHECK(ids.longest() == 20);
  char buf[32];
  CHECK(std::string(buf, ids.write(3, buf)) == "NGC 1");
}

TEST_CASE("pair CSV: a descriptor that takes no bytes is an IoError, not a short file", "[xmatch]") {
  const mmu::SkySource l = integer_sky_source(10, 0, "a"), r = integer_sky_source(10, 0, "b");
  std::vector<mmu::MatchPair> pairs(1, mmu::MatchPair(1, 2, 0.5));
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  ::close(fds[0]);  // nobody reads: write fails with EPIPE (SIGPIPE ignored here)
  std::signal(SIGPIPE, SIG_IGN);
  CHECK_THROWS_AS(mmu::write_pairs_csv(l, r, pairs, fds[1]), mmu::Error);
  std::signal(SIGPIPE, SIG_DFL);
  ::close(fds[1]);
}

TEST_CASE("same_objects: integer ids found as a brute force over (survey, id) finds them", "[xmatch]") {
  std::mt19937_64 rng(5);
  for (const bool disjoint : {false, true}) {
    mmu::SkySource l, r;
    l.survey_names = {"a", "b", "c"};
    r.survey_names = {"c", "a"};
    std::vector<uint64_t> lids, rids;
    for (int i = 0; i < 3000; ++i) {
      lids.push_back(rng() % 2000);
      l.survey_of.push_back(static_cast<uint32_t>(rng() % 3));
    }
    for (int j = 0; j < 2500; ++j) {
      rids.push_back(rng() % 2000 + (disjoint ? 5000 : 0));  // repeats too: those name no object
      r.survey_of.push_back(static_cast<uint32_t>(rng() % 2));
    }
    // The brute force: right j is left i's object when (survey name, id) is
    // equal and no other right object has that key.
    std::vector<int64_t> want(lids.size(), -1);
    bool any = false;
    for (size_t i = 0; i < lids.size(); ++i) {
      int found = 0;
      for (size_t j = 0; j < rids.size(); ++j)
        if (rids[j] == lids[i] && r.survey_names[r.survey_of[j]] == l.survey_names[l.survey_of[i]]) {
          ++found;
          want[i] = static_cast<int64_t>(j);
        }
      if (found != 1) want[i] = -1;
      any = any || want[i] >= 0;
    }
    if (!any) want.clear();
    l.ids.append_integers(mmu::ObjectIds::Kind::kSigned, std::vector<uint64_t>(lids));
    r.ids.append_integers(mmu::ObjectIds::Kind::kSigned, std::vector<uint64_t>(rids));
    CHECK(mmu::same_objects(l, r) == want);
    CHECK(disjoint == want.empty());
    // The same ids as text take the other path, with the same answer.
    mmu::SkySource lt = l, rt = r;
    lt.ids.append_texts({});
    rt.ids.append_texts({});
    REQUIRE(lt.ids.kind() == mmu::ObjectIds::Kind::kText);
    CHECK(mmu::same_objects(lt, rt) == want);
  }
}
