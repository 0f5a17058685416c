#include "base/fresh_buffer.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

TEST_CASE("resize_populated keeps the items held and sets the new ones, across growth", "[xmatch]") {
  // Sizes from below one page to several 2 MB pages, so that populate runs on
  // the new part (a vector's storage is not 2 MB-aligned) and the vector moves.
  std::vector<uint32_t> v;
  uint32_t next = 0;
  for (const size_t n : {size_t{3}, size_t{5000}, size_t{1} << 20, (size_t{3} << 20) + 7}) {
    const size_t before = v.size();
    mmu::resize_populated(&v, n, uint32_t{7});
    REQUIRE(v.size() == n);
    for (size_t i = 0; i < before; ++i) REQUIRE(v[i] == i + 1);
    for (size_t i = before; i < n; ++i) REQUIRE(v[i] == 7u);
    for (size_t i = before; i < n; ++i) v[i] = ++next;
  }
  std::vector<double> d{1.5};
  mmu::resize_populated(&d, 1u << 19);  // value-initialised by default
  CHECK(d[0] == 1.5);
  CHECK(d.back() == 0.0);
}
