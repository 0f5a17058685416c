#include "mmu/mmu_files.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>

#include "mmu/error.h"
#include "mmu/sky.h"
#include "test_util.h"

using mmu::test::TempDir;

namespace {

// Values are a formula of (object, band, y, x) so any misplaced pixel shows.
const char* kImageFixture = R"py(
def write(path, n, bands, compression, shared_mask, big_endian, str_ids):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    o, b, y, x = np.meshgrid(np.arange(n), np.arange(bands), np.arange(160), np.arange(160), indexing='ij')
    img = (o * 1000 + b * 100 + y * 0.5 + x * 0.001).astype('>f4' if big_endian else '<f4')
    with h5py.File(path, 'w') as f:
        f.create_dataset('image_array', data=img, compression=compression, chunks=(1, bands, 160, 160))
        if shared_mask:
            m = np.ones((n, 160, 160), bool); m[:, 10, :] = False
        else:
            m = np.ones((n, bands, 160, 160), bool); m[:, :, :, 7] = False
        f.create_dataset('image_mask', data=m, compression=compression)
        if str_ids:
            f.create_dataset('object_id', data=np.array([('obj-%d' % i).encode() for i in range(n)], dtype=h5py.string_dtype('utf-8', 16)))
        else:
            f.create_dataset('object_id', data=np.arange(n, dtype='>i8' if big_endian else '<i8') + 39627000000000000)
        f.create_dataset('ra', data=np.linspace(30.1, 30.9, n).astype('>f8' if big_endian else '<f8'))
        f.create_dataset('dec', data=np.linspace(0.1, 0.9, n).astype(np.float32))
write(ROOT + '/legacysurvey/dr10_south_21/healpix=1113/001-of-001.hdf5', 5, 4, 'lzf', True, False, True)
write(ROOT + '/hsc/pdr3/healpix=0714/001-of-001.hdf5', 3, 5, 'gzip', False, True, False)
)py";

void write_image_fixtures(const TempDir& dir) {
  REQUIRE(mmu::test::run_python(dir.path(), std::string("ROOT = '") + dir.path() + "'\n" + kImageFixture) == 0);
}

}  // namespace

TEST_CASE("discovery takes dataset, subset and zero-padded cells from the path", "[io]") {
  TempDir dir("discover");
  write_image_fixtures(dir);
  auto files = mmu::discover_files({dir.path()});
  REQUIRE(files.size() == 2);
  CHECK(files[0].dataset == "hsc");
  CHECK(files[0].subset == "pdr3");
  CHECK(files[0].healpix == 714);
  CHECK(files[1].dataset == "legacysurvey");
  CHECK(files[1].subset == "dr10_south_21");
  CHECK(files[1].healpix == 1113);
  // Pointing at a deeper folder or at the file gives the same names.
  auto deeper = mmu::discover_files({dir / "legacysurvey/dr10_south_21"});
  REQUIRE(deeper.size() == 1);
  CHECK(deeper[0].dataset == "legacysurvey");
  CHECK_THROWS_AS(mmu::discover_files({dir / "nope"}), mmu::Error);
  // A bare relative file name (no folder part) works too.
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir / "legacysurvey/dr10_south_21/healpix=1113");
  auto bare = mmu::discover_files({"001-of-001.hdf5"});
  std::filesystem::current_path(cwd);
  REQUIRE(bare.size() == 1);
  CHECK(bare[0].healpix == -1);
}

TEST_CASE("LZF images with one shared mask read pixel-exact", "[io]") {
  TempDir dir("lzf");
  write_image_fixtures(dir);
  mmu::SourceFile f;
  f.path = dir / "legacysurvey/dr10_south_21/healpix=1113/001-of-001.hdf5";
  f.dataset = "legacysurvey";  // as discovery names it: the file has no image_band, the builder's order names its bands
  mmu::MmuFileReader r(f);
  REQUIRE(r.modality() == mmu::Modality::kImage);
  REQUIRE(r.rows() == 5);
  auto cat = r.read_catalog();
  CHECK(cat.ids[3] == "obj-3");
  CHECK(cat.ra[0] == Approx(30.1));
  CHECK(cat.healpix[0] == mmu::healpix_cell(30.1, 0.1));
  mmu::ImageBatch b;
  r.read_images(2, 3, &b);  // rows 2..4
  REQUIRE(b.count == 3);
  REQUIRE(b.bands == 4);
  for (int64_t o = 0; o < 3; ++o)
    for (int64_t band : {0, 3})
      for (int64_t y : {0, 10, 159})
        for (int64_t x : {0, 7, 80}) {
          const size_t i = ((o * 4 + band) * 160 + y) * 160 + x;
          CHECK(b.pixels[i] == Approx((o + 2) * 1000 + band * 100 + y * 0.5 + x * 0.001).epsilon(1e-7));
          CHECK(b.good[i] == (y == 10 ? 0 : 1));  // the shared mask reaches every band
        }
}

TEST_CASE("gzip, big-endian, integer ids and per-band masks", "[io]") {
  TempDir dir("gzip");
  write_image_fixtures(dir);
  mmu::SourceFile f;
  f.path = dir / "hsc/pdr3/healpix=0714/001-of-001.hdf5";
  f.dataset = "hsc";
  mmu::MmuFileReader r(f);
  auto cat = r.read_catalog();
  REQUIRE(cat.ids.size() == 3);
  CHECK(cat.ids[2] == "39627000000000002");
  CHECK(cat.dec[2] == Approx(0.9).epsilon(1e-6));  // float32 column widened
  mmu::ImageBatch b;
  r.read_images(0, 3, &b);
  REQUIRE(b.bands == 5);
  const size_t i = ((2 * 5 + 4) * 160 + 20) * 160 + 7;
  CHECK(b.pixels[i] == Approx(2 * 1000 + 4 * 100 + 20 * 0.5 + 7 * 0.001).epsilon(1e-7));
  CHECK(b.good[i] == 0);
  CHECK(b.good[i + 1] == 1);
}

TEST_CASE("spectra: mask polarity, ivar and SDSS lambda padding", "[io]") {
  TempDir dir("spectra");
  REQUIRE(mmu::test::run_python(dir.path(), "ROOT='" + dir.path() + R"py('
p = ROOT + '/sdss/sdss/healpix=583/001-of-001.hdf5'
os.makedirs(os.path.dirname(p))
n, L = 3, 50
lam = np.tile(3800 + np.arange(L, dtype=np.float32), (n, 1)); lam[2, 40:] = -1
flux = np.arange(n * L, dtype=np.float32).reshape(n, L)
ivar = np.ones((n, L), np.float32); ivar[0, 5] = 0
mask = np.zeros((n, L), bool); mask[1, 9] = True
with h5py.File(p, 'w') as f:
    for k, v in dict(spectrum_flux=flux, spectrum_ivar=ivar, spectrum_lambda=lam, spectrum_mask=mask).items():
        f.create_dataset(k, data=v)
    f.create_dataset('object_id', data=np.array([b'a', b'b', b'c'], dtype='S8'))
    f.create_dataset('ra', data=np.array([1.0, 2.0, 3.0])); f.create_dataset('dec', data=np.zeros(3))
)py") == 0);
  mmu::SourceFile f;
  f.path = dir / "sdss/sdss/healpix=583/001-of-001.hdf5";
  mmu::MmuFileReader r(f);
  REQUIRE(r.modality() == mmu::Modality::kSpectrum);
  mmu::SpectrumBatch b;
  r.read_spectra(0, 3, &b);
  CHECK(b.length == 50);
  CHECK(b.flux[1 * 50 + 3] == 53.0f);
  CHECK(b.good[0 * 50 + 5] == 0);   // ivar 0
  CHECK(b.good[1 * 50 + 9] == 0);   // mask True = bad
  CHECK(b.good[1 * 50 + 8] == 1);
  CHECK(b.good[2 * 50 + 40] == 0);  // lambda -1 padding
  CHECK(b.good[2 * 50 + 39] == 1);
}

TEST_CASE("real MMU light-curve files are catalogued with their true positions", "[io][real]") {
  const std::string root = std::string(MMU_TEST_DATA_DIR) + "/mmu-real";
  auto files = mmu::discover_files({root});
  REQUIRE(files.size() == 2);
  // Sorted by dataset: cfa before csp. Expected values: tests/data/README.md.
  CHECK(files[0].healpix == 1772);
  CHECK(files[1].healpix == 1113);
  mmu::MmuFileReader cfa(files[0]);
  auto c = cfa.read_catalog();
  REQUIRE(c.ids.size() == 1);
  CHECK(c.ids[0] == "SN2007bc");
  CHECK(c.ra[0] == 169.8107147216797);
  CHECK(c.dec[0] == 20.80902862548828);
  CHECK(c.healpix[0] == 1772);
  mmu::MmuFileReader csp(files[1]);
  auto s = csp.read_catalog();
  CHECK(s.ids[0] == "SN2004dt");
  CHECK(s.ra[0] == Approx(30.553207).margin(1e-4));
  CHECK(s.dec[0] == Approx(-0.097639).margin(1e-4));
  CHECK(s.healpix[0] == 1113);
}

TEST_CASE("real SN light curves read with their published shape and values", "[io][real]") {
  // Expected values: tests/data/README.md (from the source repository's own tests).
  const auto files = mmu::discover_files({std::string(MMU_TEST_DATA_DIR) + "/mmu-real"});
  REQUIRE(files.size() == 2);
  mmu::MmuFileReader csp(files[1]);
  REQUIRE(csp.modality() == mmu::Modality::kLightCurve);
  CHECK(csp.layout() == mmu::FileLayout::kPerObjectScalars);
  CHECK(std::string(mmu::layout_name(csp.layout())) == "per-object scalars");
  mmu::LightCurveBatch lc;
  csp.read_light_curves(0, 1, &lc);
  REQUIRE(lc.bands == 12);
  REQUIRE(lc.length == 46);
  CHECK(lc.magnitudes);
  const std::vector<int> want_csp = {46, 0, 0, 0, 0, 46, 0, 0, 46, 43, 45, 43};
  for (int b = 0; b < 12; ++b) {
    int n = 0;
    for (int k = 0; k < 46; ++k) n += lc.good[b * 46 + k];
    CHECK(n == want_csp[b]);
  }
  CHECK(lc.time[0] == Approx(249.790).margin(1e-3));  // first valid B point
  CHECK(lc.value[0] == Approx(15.769).margin(1e-3));
  CHECK(lc.error[0] == Approx(0.006).margin(1e-4));

  mmu::MmuFileReader cfa(files[0]);
  cfa.read_light_curves(0, 1, &lc);
  REQUIRE(lc.bands == 7);
  REQUIRE(lc.length == 19);
  const std::vector<int> want_cfa = {19, 0, 0, 0, 17, 9, 15};
  int total = 0;
  for (int b = 0; b < 7; ++b) {
    int n = 0;
    for (int k = 0; k < 19; ++k) n += lc.good[b * 19 + k];
    CHECK(n == want_cfa[b]);
    total += n;
  }
  CHECK(total == 60);
  CHECK(lc.time[0] == Approx(54197.254).margin(1e-3));
  CHECK(lc.value[0] == Approx(15.967).margin(1e-3));
  CHECK(lc.time[4 * 19] == Approx(54197.250).margin(1e-3));  // first valid V point
  CHECK(lc.value[4 * 19] == Approx(16.067).margin(1e-3));
}

TEST_CASE("reader errors name the file and the dataset", "[io]") {
  TempDir dir("errors");
  REQUIRE(mmu::test::run_python(dir.path(), "ROOT='" + dir.path() + R"py('
with h5py.File(ROOT + '/noid.hdf5', 'w') as f:
    f.create_dataset('ra', data=np.zeros(2)); f.create_dataset('dec', data=np.zeros(2))
with h5py.File(ROOT + '/shape.hdf5', 'w') as f:
    f.create_dataset('object_id', data=np.arange(2)); f.create_dataset('ra', data=np.zeros(3)); f.create_dataset('dec', data=np.zeros(2))
open(ROOT + '/text.hdf5', 'w').write('not hdf5')
)py") == 0);
  auto message = [&](const std::string& name) {
    mmu::SourceFile f;
    f.path = dir / name;
    try {
      mmu::MmuFileReader r(f);
      r.read_catalog();
    } catch (const mmu::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(message("noid.hdf5"), Catch::Contains("noid.hdf5") && Catch::Contains("'object_id'"));
  CHECK_THAT(message("shape.hdf5"), Catch::Contains("shape.hdf5") && Catch::Contains("'ra'") && Catch::Contains("3 rows"));
  CHECK_THAT(message("text.hdf5"), Catch::Contains("text.hdf5") && Catch::Contains("not an HDF5 file"));
}
