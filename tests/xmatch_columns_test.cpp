// The cross-match side's columns: Column (left unset by resize) and the views
// CrossMatchIndex takes, and the direct read of contiguous datasets.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/fresh_buffer.h"
#include "mmu/column.h"
#include "mmu/crossmatch.h"
#include "mmu/mmu_files.h"
#include "mmu/sky_source.h"
#include "read/hdf5_util.h"
#include "test_util.h"

TEST_CASE("a Column keeps its items across growth, and resize(n, value) sets the new ones", "[xmatch]") {
  mmu::Column<uint64_t> c;
  uint64_t next = 0;
  for (const size_t n : {size_t{3}, size_t{5000}, size_t{1} << 20, (size_t{3} << 20) + 7}) {
    const size_t before = c.size();
    mmu::resize_populated(&c, n);  // new items unset: written below
    REQUIRE(c.size() == n);
    for (size_t i = 0; i < before; ++i) REQUIRE(c[i] == i + 1);
    for (size_t i = before; i < n; ++i) c[i] = ++next;
  }
  c.resize(c.size() + 10, 42);
  CHECK(c[c.size() - 1] == 42);
  CHECK(c[c.size() - 11] == next);
  mmu::Column<double> d{1.5, 2.5};
  d.push_back(3.5);
  const mmu::ColumnView<double> view(d);
  REQUIRE(view.size() == 3);
  CHECK(view.data() == d.data());
  CHECK(view[2] == 3.5);
}

TEST_CASE("integer ids from a Column print as from a std::vector", "[xmatch]") {
  const std::vector<uint64_t> numbers{0, 7, uint64_t(-5), uint64_t{1} << 63};
  for (const auto kind : {mmu::ObjectIds::Kind::kSigned, mmu::ObjectIds::Kind::kUnsigned}) {
    mmu::ObjectIds from_vector, from_column;
    from_vector.append_integers(kind, std::vector<uint64_t>(numbers));
    from_column.append_integer_column(kind, mmu::Column<uint64_t>(numbers.begin(), numbers.end()));
    from_column.append_integer_column(kind, mmu::Column<uint64_t>{9});
    REQUIRE(from_column.size() == numbers.size() + 1);
    for (size_t i = 0; i < numbers.size(); ++i) CHECK(from_column.text(i) == from_vector.text(i));
    CHECK(from_column.text(numbers.size()) == "9");
    CHECK(from_vector.text(2) == (kind == mmu::ObjectIds::Kind::kSigned ? "-5" : "18446744073709551611"));
  }
}

TEST_CASE("cross-match of Columns equals cross-match of the same std::vectors", "[xmatch]") {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> ra(10.0, 10.1), dec(-5.0, -4.9);
  std::vector<double> lra, ldec, rra, rdec;
  for (int i = 0; i < 20000; ++i) {
    lra.push_back(ra(rng));
    ldec.push_back(dec(rng));
    rra.push_back(ra(rng));
    rdec.push_back(dec(rng));
  }
  const mmu::Column<double> clra(lra.begin(), lra.end()), cldec(ldec.begin(), ldec.end());
  const mmu::Column<double> crra(rra.begin(), rra.end()), crdec(rdec.begin(), rdec.end());
  for (const bool all : {false, true}) {
    const auto want = mmu::cross_match(lra, ldec, rra, rdec, 2.0 / 3600.0, all);
    const auto got = mmu::cross_match(clra, cldec, crra, crdec, 2.0 / 3600.0, all);
    REQUIRE(want.size() > 1000);
    REQUIRE(got.size() == want.size());
    for (size_t k = 0; k < want.size(); ++k) {
      REQUIRE(got[k].left == want[k].left);
      REQUIRE(got[k].right == want[k].right);
      REQUIRE(got[k].sep_arcsec == want[k].sep_arcsec);
    }
  }
}

namespace {

// Reads a file of n values that numpy wrote with tofile (native byte order).
template <typename T>
std::vector<T> numpy_values(const std::string& path, size_t n) {
  std::vector<T> v(n);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE(f != nullptr);
  REQUIRE(std::fread(v.data(), sizeof(T), n, f) == n);
  std::fclose(f);
  return v;
}

template <typename T>
bool same_bits(const T* a, const T* b, size_t n) {
  return std::memcmp(a, b, n * sizeof(T)) == 0;
}

}  // namespace

TEST_CASE("ids and positions read straight from contiguous datasets equal HDF5's reads of every layout", "[xmatch]") {
  mmu::test::TempDir dir("xmatch-direct");
  // 300,000 rows: each column spans several of the parallel read's 1 MB pieces.
  // The expected values are numpy's own bytes (tofile), not read by HDF5.
  REQUIRE(mmu::test::run_python(dir.path(), "ROOT='" + dir.path() + R"py('
n = 300000
rng = np.random.default_rng(3)
ra = rng.random(n) * 360
dec = np.degrees(np.arcsin(2 * rng.random(n) - 1))
ra[5] = np.nextafter(360.0, 0)  # extreme but valid values, bit for bit
dec[6] = -90.0
ids = rng.integers(-2**62, 2**62, n, dtype=np.int64)
uids = ids.view(np.uint64) | np.uint64(2**63)  # above int64's range
ra.tofile(ROOT + '/ra.f8'); dec.tofile(ROOT + '/dec.f8')
ids.tofile(ROOT + '/ids.i8'); uids.tofile(ROOT + '/ids.u8')
ra.astype(np.float32).astype(np.float64).tofile(ROOT + '/ra32.f8')
dec.astype(np.float32).astype(np.float64).tofile(ROOT + '/dec32.f8')
def write(name, ra_, dec_, ids_, userblock=0, **kw):
    with h5py.File(ROOT + '/' + name + '.hdf5', 'w', userblock_size=userblock) as f:
        f.create_dataset('object_id', data=ids_, **kw)
        f.create_dataset('ra', data=ra_, **kw)
        f.create_dataset('dec', data=dec_, **kw)
write('contiguous', ra, dec, ids)
write('unsigned', ra, dec, uids)
write('chunked', ra, dec, ids, chunks=(4096,))
write('gzip', ra, dec, ids, compression='gzip')
write('bigendian', ra.astype('>f8'), dec.astype('>f8'), ids.astype('>i8'))
write('float32', ra.astype(np.float32), dec.astype(np.float32), ids)
write('userblock', ra, dec, ids, userblock=512)
write('truncated', ra, dec, ids)
size = os.path.getsize(ROOT + '/truncated.hdf5')
with open(ROOT + '/truncated.hdf5', 'r+b') as f:
    f.truncate(size - 100000)  # dec is written last: its data ends early
)py") == 0);
  const size_t n = 300000;
  const auto ra = numpy_values<double>(dir / "ra.f8", n), dec = numpy_values<double>(dir / "dec.f8", n);
  const auto ra32 = numpy_values<double>(dir / "ra32.f8", n), dec32 = numpy_values<double>(dir / "dec32.f8", n);
  const auto ids = numpy_values<uint64_t>(dir / "ids.i8", n), uids = numpy_values<uint64_t>(dir / "ids.u8", n);
  struct Case {
    const char* name;
    bool direct_positions, direct_ids;  // read straight from the file, not through H5Dread
    bool unsigned_ids, float32;
  };
  for (const Case c : {Case{"contiguous", true, true, false, false}, Case{"unsigned", true, true, true, false},
                       Case{"chunked", false, false, false, false}, Case{"gzip", false, false, false, false},
                       Case{"bigendian", false, false, false, false}, Case{"float32", false, true, false, true},
                       Case{"userblock", false, false, false, false}}) {
    INFO(c.name);
    const std::string path = dir / (std::string(c.name) + ".hdf5");
    {
      const mmu::h5::Handle file = mmu::h5::open_file(path);
      const mmu::h5::Dataset d_ra(file.get(), path, "ra"), d_ids(file.get(), path, "object_id");
      CHECK(d_ra.raw_rows(0, n, H5T_NATIVE_DOUBLE).has_value() == c.direct_positions);
      CHECK(d_ids.raw_rows(0, n, c.unsigned_ids ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64).has_value() == c.direct_ids);
      CHECK_FALSE(d_ids.raw_rows(0, n, c.unsigned_ids ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64).has_value());
      // float32 positions are float32 in memory too, so only a float read takes them straight.
      CHECK(d_ra.raw_rows(0, n, H5T_NATIVE_FLOAT).has_value() == c.float32);
      if (c.direct_positions) {  // rows inside the dataset only; a part at its offset
        CHECK_FALSE(d_ra.raw_rows(1, n, H5T_NATIVE_DOUBLE).has_value());
        const auto whole = d_ra.raw_rows(0, n, H5T_NATIVE_DOUBLE), part = d_ra.raw_rows(10, 5, H5T_NATIVE_DOUBLE);
        REQUIRE(part.has_value());
        CHECK(part->offset == whole->offset + 80);
        CHECK(part->bytes == 40);
      }
    }
    mmu::SourceFile f;
    f.path = path;
    f.dataset = c.name;
    mmu::SkyColumns got;
    mmu::MmuFileReader(f).read_sky_columns(&got);
    REQUIRE(got.ra.size() == n);
    REQUIRE(got.ids.size() == n);
    CHECK(same_bits(got.ra.data(), (c.float32 ? ra32 : ra).data(), n));
    CHECK(same_bits(got.dec.data(), (c.float32 ? dec32 : dec).data(), n));
    CHECK(got.ids.kind() == (c.unsigned_ids ? mmu::ObjectIds::Kind::kUnsigned : mmu::ObjectIds::Kind::kSigned));
    const auto& want_ids = c.unsigned_ids ? uids : ids;
    bool ids_equal = true;
    for (size_t i = 0; i < n; ++i) ids_equal = ids_equal && got.ids.number(i) == want_ids[i];
    CHECK(ids_equal);
  }
  // A file that ends inside its data: an error naming the file, never values.
  mmu::SourceFile f;
  f.path = dir / "truncated.hdf5";
  f.dataset = "truncated";
  mmu::SkyColumns got;
  CHECK_THROWS_WITH(mmu::MmuFileReader(f).read_sky_columns(&got), Catch::Contains("truncated.hdf5"));
}

TEST_CASE("a folder of files read straight from disk is their rows in discovery order, each with its survey",
          "[xmatch]") {
  mmu::test::TempDir dir("xmatch-folder");
  REQUIRE(mmu::test::run_python(dir.path(), "ROOT='" + dir.path() + R"py('
rng = np.random.default_rng(4)
for k, n in enumerate((200000, 3, 150000)):
    p = ROOT + '/cat/healpix=%d/part.hdf5' % (100 + k)
    os.makedirs(os.path.dirname(p))
    ra, dec = rng.random(n) * 360, rng.random(n) * 180 - 90
    ids = np.arange(n, dtype=np.int64) + 10**6 * k
    with h5py.File(p, 'w') as f:
        f.create_dataset('object_id', data=ids); f.create_dataset('ra', data=ra); f.create_dataset('dec', data=dec)
    with open(ROOT + '/all.f8', 'ab') as f:
        ra.tofile(f)
    with open(ROOT + '/all.i8', 'ab') as f:
        ids.tofile(f)
)py") == 0);
  const size_t n = 350003;
  const mmu::SkySource s = mmu::load_sky_source(dir / "cat", "");
  REQUIRE(s.ra.size() == n);
  REQUIRE(s.survey_of.size() == n);
  CHECK(same_bits(s.ra.data(), numpy_values<double>(dir / "all.f8", n).data(), n));
  const auto ids = numpy_values<uint64_t>(dir / "all.i8", n);
  REQUIRE(s.survey_names.size() == 1);
  bool equal = true;
  for (size_t i = 0; i < n; ++i) equal = equal && s.ids.number(i) == ids[i] && s.survey_of[i] == 0;
  CHECK(equal);
}
