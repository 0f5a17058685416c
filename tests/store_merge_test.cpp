// A space written chunk by chunk (merge) is byte for byte the space add_space
// writes from the same vectors: vectors.f32, index.faiss (which FAISS itself
// wrote there) and the catalog's rows and checksums.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

#include "mmu/error.h"
#include "mmu/store.h"
#include "store/layout.h"
#include "test_util.h"

using mmu::test::TempDir;

namespace {

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// n objects, every third without a vector, so rows are not 0..n-1; streamed
// in chunks of `chunk` vectors (0 = add_space in one call).
void write_space_store(const std::string& dir, int64_t n, int64_t chunk) {
  mmu::StoreWriter w(dir);
  mmu::SourceFile f;
  f.path = dir + "/../fake.hdf5";
  f.dataset = "desi";
  f.subset = "sv3";
  f.healpix = 1113;
  const int64_t fid = w.add_file(f, mmu::Modality::kSpectrum, n);
  std::vector<mmu::NewObject> objs;
  for (int64_t i = 0; i < n; ++i)
    objs.push_back({"id" + std::to_string(i), "desi", "sv3", 30.0 + i * 0.01, 0.5, 1113, i, fid, i,
                    mmu::Modality::kSpectrum});
  const int64_t first = w.add_objects(objs);
  const int64_t dim = 5;
  std::vector<int64_t> rows;
  std::vector<float> v;
  for (int64_t i = 0; i < n; ++i) {
    if (i % 3 == 1) continue;
    rows.push_back(first + i);
    for (int64_t j = 0; j < dim; ++j) v.push_back(std::sin(0.37f * static_cast<float>(i * dim + j)));
  }
  mmu::SpaceInfo info;
  info.name = "spectrum";
  info.modality = "spectrum";
  info.model = "test";
  info.version = "1";
  info.dim = dim;
  info.created = "2026-01-01T00:00:00Z";
  if (chunk == 0) {
    w.add_space(info, rows, v.data(), "fit");
  } else {
    size_t at = 0;
    w.add_space_streamed(info, "fit", [&](std::vector<int64_t>* r, std::vector<float>* x) {
      if (at >= rows.size()) return false;
      const size_t take = std::min(rows.size() - at, static_cast<size_t>(chunk));
      r->assign(rows.begin() + at, rows.begin() + at + take);
      x->assign(v.begin() + at * dim, v.begin() + (at + take) * dim);
      at += take;
      return true;
    });
  }
  w.commit();
}

}  // namespace

TEST_CASE("a space streamed in chunks is byte for byte the space written at once", "[store][merge]") {
  TempDir dir("store_merge");
  write_space_store(dir / "once", 1000, 0);
  write_space_store(dir / "chunks", 1000, 97);
  auto once = mmu::Store::open(dir / "once");
  auto chunks = mmu::Store::open(dir / "chunks");
  for (const char* file : {mmu::layout::kVectorsFile, mmu::layout::kFlatIndexFile, mmu::layout::kFitFile}) {
    const std::string a = bytes_of(mmu::layout::join(once->space_dir("spectrum"), file));
    const std::string b = bytes_of(mmu::layout::join(chunks->space_dir("spectrum"), file));
    INFO(file);
    CHECK(!a.empty());
    CHECK(a == b);
  }
  CHECK(once->space_rows("spectrum") == chunks->space_rows("spectrum"));
  CHECK(once->space("spectrum").count == chunks->space("spectrum").count);
  CHECK(once->space("spectrum").sha256 == chunks->space("spectrum").sha256);
  chunks->verify_space_files("spectrum");  // the recorded checksums are the files'
}

TEST_CASE("a streamed space refuses rows that do not ascend and non-finite vectors", "[store][merge]") {
  TempDir dir("store_merge_bad");
  mmu::StoreWriter w(dir / "s");
  mmu::SpaceInfo info;
  info.name = "x";
  info.modality = "spectrum";
  info.dim = 2;
  int calls = 0;
  CHECK_THROWS_WITH(w.add_space_streamed(info, "fit",
                                         [&](std::vector<int64_t>* r, std::vector<float>* v) {
                                           if (calls++ > 1) return false;
                                           *r = {5 - calls};
                                           *v = {1.0f, 0.0f};
                                           return true;
                                         }),
                    Catch::Contains("rows must ascend"));
  info.name = "y";
  CHECK_THROWS_WITH(w.add_space_streamed(info, "fit",
                                         [&](std::vector<int64_t>* r, std::vector<float>* v) {
                                           if (!r->empty()) return false;
                                           *r = {0};
                                           *v = {NAN, 0.0f};
                                           return true;
                                         }),
                    Catch::Contains("NaN"));
}
