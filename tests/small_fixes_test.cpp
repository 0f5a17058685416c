// Small bad-input cases a tester hit (issue 16, point 7).
#include <catch2/catch.hpp>
#include <string>

#include "mmu/error.h"
#include "mmu/query_json.h"

TEST_CASE("query_json: a number no double holds (1e999) is a bad request, not an internal error", "[query_json]") {
  for (const std::string body : {R"({"k": 1e999})", R"({"like": "a", "dedup": -1e999})"}) {
    try {
      mmu::parse_query_json(body, mmu::QueryLimits{});
      FAIL("parsed " << body);
    } catch (const mmu::Error& e) {
      CHECK(e.kind() == mmu::ErrorKind::kInvalidArgument);
      CHECK(std::string(e.what()).find("out of range") != std::string::npos);
    }
  }
}
