// Readers pin the generation they opened (issue 16 point 2): a build deletes
// an old generation only when no Store holds it, and LiveStore follows commits.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "mmu/error.h"
#include "mmu/live_store.h"
#include "mmu/query.h"
#include "mmu/store.h"
#include "store_fixture.h"
#include "test_util.h"

namespace fs = std::filesystem;
using mmu::test::TempDir;

namespace {

// Commits a new generation of n objects (vectors on a circle), so a Store's
// num_objects() tells which generation it reads.
void commit_generation(const std::string& dir, int64_t n) { mmu::test::write_circle_store(dir, n); }

// Names of the gen-* entries of the store folder (committed, .tmp, .old).
std::set<std::string> generation_folders(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("gen-", 0) == 0) out.insert(name);
  }
  return out;
}

std::string generation_of(const mmu::Store& s) { return fs::path(s.generation_path()).filename().string(); }

// A --like answer computed through the store's vectors and catalog, which
// opens the space's files for the first time when nothing did before.
std::set<std::string> neighbours(const mmu::Store& s, const std::string& id) {
  mmu::LikeQuery q;
  q.like = {id};
  q.k = 2;
  std::set<std::string> out;
  for (const auto& n : mmu::search_like(s, q).neighbors) out.insert(n.object.object_id);
  return out;
}

}  // namespace

TEST_CASE("a generation a reader holds survives rebuilds until it is closed", "[store][pinning]") {
  TempDir dir("pin_reader");
  const std::string path = dir / "s";
  commit_generation(path, 10);
  auto reader = mmu::Store::open(path);
  const std::string pinned = generation_of(*reader);
  commit_generation(path, 12);
  commit_generation(path, 14);
  // The middle generation had no reader: gone. The pinned one stays whole and
  // answers, its space files opened only now.
  const auto live = mmu::Store::open(path);
  CHECK(live->num_objects() == 14);
  CHECK(generation_folders(path) == std::set<std::string>{pinned, generation_of(*live)});
  CHECK(reader->num_objects() == 10);
  CHECK(neighbours(*reader, "id5") == std::set<std::string>{"id4", "id6"});
  reader.reset();
  commit_generation(path, 16);  // the live Store still pins its generation, nothing else is left
  const auto newest = mmu::Store::open(path);
  CHECK(newest->num_objects() == 16);
  CHECK(generation_folders(path) == std::set<std::string>{generation_of(*live), generation_of(*newest)});
}

TEST_CASE("a build with no reader leaves only the new generation", "[store][pinning]") {
  TempDir dir("pin_none");
  const std::string path = dir / "s";
  commit_generation(path, 10);
  CHECK(mmu::Store::open(path)->num_objects() == 10);
  // A deletion cut short (renamed aside, not all gone) is finished by the next build.
  fs::create_directories(dir / "s/gen-000000.old/spaces");
  commit_generation(path, 11);
  CHECK(generation_folders(path) == std::set<std::string>{"gen-000002"});
  CHECK(mmu::Store::open(path)->num_objects() == 11);
}

TEST_CASE("a generation written before READERS existed is pinned too", "[store][pinning]") {
  TempDir dir("pin_legacy");
  const std::string path = dir / "s";
  commit_generation(path, 10);
  const std::string readers = dir / "s/gen-000001/READERS";
  REQUIRE(fs::exists(readers));
  fs::remove(readers);
  auto reader = mmu::Store::open(path);
  CHECK(fs::exists(readers));
  commit_generation(path, 12);
  CHECK(generation_folders(path) == std::set<std::string>{"gen-000001", "gen-000002"});
  CHECK(neighbours(*reader, "id5") == std::set<std::string>{"id4", "id6"});
}

TEST_CASE("CURRENT naming a missing generation is a damaged store, said at once", "[store][pinning]") {
  TempDir dir("pin_damaged");
  const std::string path = dir / "s";
  commit_generation(path, 10);
  fs::rename(dir / "s/gen-000001", dir / "s/elsewhere");
  CHECK_THROWS_WITH(mmu::Store::open(path), Catch::Contains("damaged") && Catch::Contains("gen-000001") &&
                                                Catch::Contains("is missing"));
}

TEST_CASE("LiveStore moves to each new generation; a request keeps the one it took", "[store][pinning]") {
  TempDir dir("pin_live");
  const std::string path = dir / "s";
  commit_generation(path, 10);
  mmu::LiveStore live(path);
  auto in_flight = live.current();
  CHECK(live.current() == in_flight);  // no commit: the same Store, its opened spaces kept
  commit_generation(path, 12);
  const auto next = live.current();
  CHECK(next->num_objects() == 12);
  CHECK(in_flight->num_objects() == 10);
  CHECK(neighbours(*in_flight, "id9") == std::set<std::string>{"id7", "id8"});
  const std::string old_gen = generation_of(*in_flight);
  in_flight.reset();  // the last request on the old generation ends
  commit_generation(path, 13);
  CHECK(live.current()->num_objects() == 13);
  CHECK(generation_folders(path).count(old_gen) == 0);
  // A generation that cannot be opened: the one served so far stays.
  commit_generation(path, 15);
  const auto served = live.current();
  std::ofstream(dir / "s/CURRENT") << "gen-999999\n";
  CHECK(live.current() == served);
}
