// The sq8 scan reading its files with pread (Sq8Scan::codes_file and
// vectors_file, what a one-shot mmu-search does) against the same scan
// through the mapping and the fp32 scan, bit for bit; and a file truncated or
// rewritten under the reader: an error naming it, never an answer.
#include <catch2/catch.hpp>

#include <unistd.h>
#include <utime.h>

#include <fstream>
#include <functional>

#include "base/file_util.h"
#include "mmu/error.h"
#include "mmu/exact_search.h"
#include "search_test_util.h"
#include "test_util.h"
#include "vector/compressed_scan.h"

namespace {

using mmu::test::random_unit_rows;
using mmu::test::require_identical;

void write_file(const std::string& path, const void* data, size_t n) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  REQUIRE(out.good());
}

// A space's two files on disk: vectors.f32 and its sq8 copy. Their times are
// set an hour back, so a rewrite in a test is seen even within one clock tick.
struct Files {
  std::string f32, sq8;
};

Files write_space(const mmu::test::TempDir& dir, const std::vector<float>& base, int64_t n, int64_t d) {
  const Files f{dir / "vectors.f32", dir / "vectors.sq8"};
  const mmu::VectorMatrix m{base.data(), mmu::VectorType::kF32, n, d};
  const auto image = mmu::encode_sq8(m, std::string(64, 'c'));
  write_file(f.f32, base.data(), base.size() * sizeof(float));
  write_file(f.sq8, image.data(), image.size());
  const struct utimbuf past{::time(nullptr) - 3600, ::time(nullptr) - 3600};
  REQUIRE(::utime(f.f32.c_str(), &past) == 0);
  REQUIRE(::utime(f.sq8.c_str(), &past) == 0);
  return f;
}

// A written space opened as a searcher opens it: both files mapped, the sq8
// copy over its mapping; streamed() reads them with pread instead.
struct OpenSpace {
  OpenSpace(const Files& files, int64_t n, int64_t d)
      : f32(files.f32), sq8(files.sq8), copy(sq8.data(), sq8.size(), files.sq8),
        m{f32.data(), mmu::VectorType::kF32, n, d} {}
  mmu::Sq8Scan streamed() const {
    mmu::Sq8Scan how;
    how.codes_file = &sq8;
    how.vectors_file = &f32;
    return how;
  }
  const mmu::files::MappedFile f32, sq8;
  const mmu::Sq8Copy copy;
  const mmu::VectorMatrix m;
};

// Overwrites `n` bytes at `offset` in place (same size).
void poke(const std::string& path, size_t offset, size_t n) {
  std::fstream io(path, std::ios::binary | std::ios::in | std::ios::out);
  io.seekp(static_cast<std::streamoff>(offset));
  const std::string junk(n, '\x5a');
  io.write(junk.data(), static_cast<std::streamsize>(n));
  REQUIRE(io.good());
}

}  // namespace

TEST_CASE("sq8 answers read with pread equal the mapped scan's and the fp32 scan's", "[sq8]") {
  // 9001 rows: three 4096-row tasks, the last ragged, and 256 KB chunks of
  // 2336 rows (stride 112) that end inside a task and inside an 8-row block.
  const int64_t n = 9001, d = 100;
  auto base = random_unit_rows(n, d, 131);
  for (int64_t r = 1; r < 300; ++r)  // near ties with row 0 across chunk and task edges
    for (int64_t i = 0; i < d; ++i) base[(r * 29) * d + i] = base[i] + (i == r % d ? 1e-7f : 0.0f);
  const mmu::test::TempDir dir("sq8_stream");
  const OpenSpace space(write_space(dir, base, n, d), n, d);
  const mmu::Sq8Copy& copy = space.copy;
  const mmu::VectorMatrix& m = space.m;
  auto queries = random_unit_rows(6, d, 132);
  std::copy(base.begin(), base.begin() + d, queries.begin());  // the tied direction
  for (int64_t i = 0; i < d; ++i) queries[d + i] = i == 3 ? 1e6f : 1e-3f * queries[d + i];  // one huge weight
  mmu::Sq8Scan streamed = space.streamed();
  int64_t cands_mapped = 0, cands_streamed = 0;
  for (size_t j = 0; j < queries.size() / static_cast<size_t>(d); ++j) {
    const float* q = &queries[j * d];
    for (const int64_t k : {int64_t{1}, int64_t{50}, int64_t{300}, n, n + 1}) {
      INFO("query " << j << " k " << k);
      const auto want = mmu::exact_top_k(m, q, 1, k)[0];
      mmu::Sq8Scan mapped;
      mapped.candidates = &cands_mapped;
      streamed.candidates = &cands_streamed;
      require_identical(copy.top_k(m, q, k, nullptr, mapped), want);
      require_identical(copy.top_k(m, q, k, nullptr, streamed), want);
      CHECK(cands_streamed == cands_mapped);  // the same rows re-scored: the same scan, only read otherwise
    }
  }
  // The bench's dim, 512: chunks of 512 rows, the last of 176.
  const int64_t n2 = 1200, d2 = 512;
  const auto base2 = random_unit_rows(n2, d2, 133);
  const mmu::test::TempDir dir2("sq8_stream_512");
  const OpenSpace space2(write_space(dir2, base2, n2, d2), n2, d2);
  for (int64_t j = 0; j < 3; ++j)
    require_identical(space2.copy.top_k(space2.m, &base2[j * 7 * d2], 50, nullptr, space2.streamed()),
                      mmu::exact_top_k(space2.m, &base2[j * 7 * d2], 1, 50)[0]);
}

TEST_CASE("an sq8 file truncated or rewritten under a streamed scan is an error naming it", "[sq8]") {
  const int64_t n = 3000, d = 64;
  const auto base = random_unit_rows(n, d, 141);
  const float* q = base.data() + 5 * d;
  const mmu::test::TempDir dir("sq8_stream_bad");
  const auto open_and_scan = [&](const std::function<void(const Files&)>& damage, const std::string& named,
                                 const std::string& says) {
    const Files f = write_space(dir, base, n, d);
    const OpenSpace space(f, n, d);
    REQUIRE(space.copy.top_k(space.m, q, 10, nullptr, space.streamed()).size() == 10);  // sound before the damage
    damage(f);
    try {
      space.copy.top_k(space.m, q, 10, nullptr, space.streamed());
      FAIL("no error after the file was damaged");
    } catch (const mmu::Error& e) {
      CHECK(e.kind() == mmu::ErrorKind::kFormat);
      CHECK_THAT(e.what(), Catch::Contains("'" + named + "'") && Catch::Contains(says));
    }
  };
  SECTION("codes truncated") {
    open_and_scan([](const Files& f) { REQUIRE(::truncate(f.sq8.c_str(), ::getpagesize() * 4) == 0); },
                  dir / "vectors.sq8", "truncated while being read");
  }
  SECTION("vectors truncated") {
    open_and_scan([](const Files& f) { REQUIRE(::truncate(f.f32.c_str(), 0) == 0); }, dir / "vectors.f32",
                  "truncated while being read");
  }
  SECTION("codes rewritten in place") {
    open_and_scan([](const Files& f) { poke(f.sq8, 40000, 100); }, dir / "vectors.sq8", "changed while being read");
  }
  SECTION("vectors rewritten in place") {
    open_and_scan([](const Files& f) { poke(f.f32, 0, 8); }, dir / "vectors.f32", "changed while being read");
  }
}
