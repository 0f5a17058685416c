#include "mmu/sky.h"

#include <catch2/catch.hpp>

TEST_CASE("nside-16 NESTED cells match the real MMU files", "[sky]") {
  // Values from tests/data/README.md: the stored healpix of two real files.
  CHECK(mmu::healpix_cell(169.8107147216797, 20.80902862548828) == 1772);  // RING would be 958
  CHECK(mmu::healpix_cell(30.553207397460938, -0.09763900190591812) == 1113);  // RING would be 1509
}

TEST_CASE("fine keys nest inside their cell", "[sky]") {
  for (double ra = 0.5; ra < 360; ra += 37.3) {
    for (double dec = -89.5; dec < 90; dec += 13.7) {
      const int64_t cell = mmu::healpix_cell(ra, dec);
      REQUIRE(cell >= 0);
      REQUIRE(cell < mmu::kNumCells);
      CHECK((mmu::healpix_fine(ra, dec) >> (2 * (mmu::kFineOrder - mmu::kCellOrder))) == cell);
    }
  }
}

TEST_CASE("angular separation", "[sky]") {
  CHECK(mmu::angular_separation_deg(10, 0, 11, 0) == Approx(1.0).epsilon(1e-12));
  CHECK(mmu::angular_separation_deg(0, 89, 180, 89) == Approx(2.0).epsilon(1e-12));
  CHECK(mmu::angular_separation_deg(359.9999, 0, 0.0001, 0) * 3600 == Approx(0.72).epsilon(1e-6));
  CHECK(mmu::angular_separation_deg(5, 5, 5, 5) == 0.0);
}
