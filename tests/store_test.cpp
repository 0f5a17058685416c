#include "mmu/store.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <cmath>

#include "mmu/error.h"
#include "mmu/query.h"
#include "vector/flat_index.h"
#include "store_fixture.h"
#include "test_util.h"

using mmu::test::TempDir;

namespace {

void write_store(const std::string& dir, int64_t n, const std::string& survey = "desi") {
  mmu::test::write_circle_store(dir, n, survey);
}

mmu::LikeQuery like(const std::string& id, int64_t k) {
  mmu::LikeQuery q;
  q.like = {id};
  q.k = k;
  return q;
}

}  // namespace

TEST_CASE("a committed store reads back and answers --like", "[store]") {
  TempDir dir("store_roundtrip");
  const std::string path = dir / "s";
  write_store(path, 20);
  auto s = mmu::Store::open(path);
  CHECK(s->num_objects() == 20);
  REQUIRE(s->spaces().size() == 1);
  CHECK(s->space("spectrum").count == 20);
  auto rows = s->find_by_id("id7");
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].ra == Approx(30.07));
  auto r = mmu::search_like(*s, like("id7", 2));
  REQUIRE(r.neighbors.size() == 2);
  std::set<std::string> ids{r.neighbors[0].object.object_id, r.neighbors[1].object.object_id};
  CHECK(ids == std::set<std::string>{"id6", "id8"});
  CHECK(r.neighbors[0].score == Approx(std::cos(0.1)).epsilon(1e-5));
  auto all = mmu::search_like(*s, like("id0", 500));
  CHECK(all.neighbors.size() == 19);
  CHECK_THAT(all.note, Catch::Contains("20 objects"));
}

TEST_CASE("the FAISS index holds every vector with catalog rows as ids", "[store][index]") {
  TempDir dir("store_index");
  const std::string path = dir / "s";
  write_store(path, 30);
  auto s = mmu::Store::open(path);
  const auto q = s->vector_of("spectrum", 4);
  const auto found = s->search("spectrum", q.data(), 1, 30, nullptr, mmu::SearchOptions{}).at(0);
  std::vector<int64_t> vrows;
  for (const auto& h : found) vrows.push_back(h.id);
  const auto rows = s->rows_of_vectors("spectrum", vrows);
  std::vector<std::pair<int64_t, float>> exact;
  for (size_t i = 0; i < rows.size(); ++i) exact.emplace_back(rows[i], found[i].score);
  const auto hits = mmu::search_flat_index(s->space_dir("spectrum") + "/index.faiss", 2, q.data(), 30);
  REQUIRE(hits.size() == exact.size());
  for (size_t i = 0; i < hits.size(); ++i) {
    CHECK(hits[i].score == Approx(exact[i].second).margin(1e-6));
    const bool near_tie = (i > 0 && std::fabs(hits[i].score - hits[i - 1].score) < 1e-6) ||
                          (i + 1 < hits.size() && std::fabs(hits[i].score - hits[i + 1].score) < 1e-6);
    if (near_tie) continue;  // equal scores may come in either order
    CHECK(hits[i].id == exact[i].first);
  }
  CHECK(exact.front().first == 4);  // a vector is nearest to itself
}

TEST_CASE("an interrupted build leaves the previous store intact", "[store]") {
  TempDir dir("store_interrupted");
  const std::string path = dir / "s";
  write_store(path, 10);
  {
    mmu::StoreWriter w(path);  // never committed: as if killed
    w.add_objects({{"x", "s", "", 1, 1, 1, 1, 1, 0, mmu::Modality::kNone}});
  }
  auto s = mmu::Store::open(path);
  CHECK(s->num_objects() == 10);
  for (const auto& e : std::filesystem::directory_iterator(path))
    CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
  write_store(path, 12);  // a later build replaces it whole
  CHECK(mmu::Store::open(path)->num_objects() == 12);
}

TEST_CASE("stores refuse to be opened wrongly", "[store]") {
  TempDir dir("store_errors");
  CHECK_THROWS_WITH(mmu::Store::open(dir / "missing"), Catch::Contains("mmu-index build") && Catch::Contains("missing"));
  const std::string path = dir / "s";
  write_store(path, 5);
  {
    mmu::StoreWriter holder(path);
    CHECK_THROWS_WITH(mmu::StoreWriter(path), Catch::Contains("another process"));
  }
  // A store from a newer format version is refused by name.
  auto gen = std::filesystem::path(mmu::Store::open(path)->generation_path()) / "catalog.sqlite";
  REQUIRE(std::system(("/usr/bin/python3 -c \"import sqlite3; c=sqlite3.connect('" + gen.string() +
                       "'); c.execute('PRAGMA user_version=99'); c.commit()\"").c_str()) == 0);
  CHECK_THROWS_WITH(mmu::Store::open(path), Catch::Contains("format version 99") && Catch::Contains("upgrade"));
  std::filesystem::create_directories(dir / "notastore");
  std::ofstream(dir / "notastore/precious.txt") << "keep";
  CHECK_THROWS_WITH(mmu::StoreWriter(dir / "notastore"), Catch::Contains("not an mmu-search store"));
  CHECK(std::filesystem::exists(dir / "notastore/precious.txt"));
}
