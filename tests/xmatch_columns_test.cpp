// The cross-match side's columns: Column (left unset by resize) and the views
// CrossMatchIndex takes, and the direct read of contiguous datasets.
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <vector>

#include "base/fresh_buffer.h"
#include "mmu/column.h"
#include "mmu/crossmatch.h"
#include "mmu/mmu_files.h"

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
