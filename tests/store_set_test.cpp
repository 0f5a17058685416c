#include "mmu/store_set.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "mmu/error.h"

namespace {

namespace fs = std::filesystem;

// A manifest with `text` in a fresh folder; returns its path.
std::string manifest(const std::string& text) {
  const fs::path dir = fs::temp_directory_path() / ("mmu-store-set-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path p = dir / "stores.txt";
  std::ofstream(p) << text;
  return p.string();
}

}  // namespace

TEST_CASE("a manifest lists stores, relative to its folder, comments and blanks skipped", "[store_set]") {
  const std::string path = manifest("# shards of the fit\n\n  shard0  \nsub/shard1\r\n/abs/shard2\n\t# done\n");
  const fs::path dir = fs::path(path).parent_path();
  CHECK(mmu::read_store_manifest(path) ==
        std::vector<std::string>{(dir / "shard0").string(), (dir / "sub/shard1").string(), "/abs/shard2"});
  fs::remove_all(dir);
}

TEST_CASE("a manifest that lists nothing, or does not exist, is refused naming the flag and file", "[store_set]") {
  const std::string path = manifest("# nothing\n\n");
  try {
    mmu::read_store_manifest(path, "--stores");
    FAIL("an empty manifest was accepted");
  } catch (const mmu::Error& e) {
    CHECK(std::string(e.what()).find("--stores '" + path + "' lists no stores") != std::string::npos);
  }
  fs::remove_all(fs::path(path).parent_path());
  CHECK_THROWS_AS(mmu::read_store_manifest(path), mmu::Error);
}

TEST_CASE("an empty set of stores is refused", "[store_set]") {
  CHECK_THROWS_AS(mmu::StoreSet(std::vector<std::string>{}), mmu::Error);
}
