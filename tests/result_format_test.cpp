#include "mmu/result_format.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "mmu/text.h"

namespace {

mmu::CatalogRow object(const std::string& id, double ra, double dec) {
  mmu::CatalogRow o;
  o.row = 7;
  o.object_id = id;
  o.survey = "desi";
  o.ra = ra;
  o.dec = dec;
  return o;
}

mmu::LikeResult result_with_scores(const std::vector<float>& scores) {
  mmu::LikeResult r;
  r.label = "q";
  r.query = object("q", 10.1234567891234, -2.5);
  r.space = "spectrum";
  r.method = "exact fp32 scan";
  r.requested_k = static_cast<int64_t>(scores.size());
  for (size_t i = 0; i < scores.size(); ++i)
    r.neighbors.push_back({static_cast<int64_t>(i + 1), object("n" + std::to_string(i), 150.0000000004, 2.25), scores[i]});
  return r;
}

std::string json_of(const mmu::LikeResult& r) {
  std::ostringstream out;
  mmu::write_like_result(r, mmu::OutputFormat::kJson, out);
  return out.str();
}

}  // namespace

TEST_CASE("JSON results carry the numbers the CSV prints", "[format]") {
  const mmu::LikeResult r = result_with_scores({0.123456789f});
  const auto j = nlohmann::json::parse(json_of(r));
  CHECK(j["query"]["ra"].get<double>() == std::strtod("10.123456789", nullptr));
  CHECK(j["results"][0]["ra"].get<double>() == 150.0);
  CHECK(j["results"][0]["score"].get<double>() ==
        std::strtod(mmu::text::format_double("%.8f", r.neighbors[0].score).c_str(), nullptr));
  CHECK(j["results"][0]["rank"] == 1);
  CHECK(j["k"] == 1);
}

TEST_CASE("A NaN or infinite score is written as null, never nan", "[format]") {
  const std::string text = json_of(result_with_scores(
      {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), 0.5f}));
  CHECK(text.find("nan") == std::string::npos);
  CHECK(text.find("inf") == std::string::npos);
  const auto j = nlohmann::json::parse(text);
  CHECK(j["results"][0]["score"].is_null());
  CHECK(j["results"][1]["score"].is_null());
  CHECK(j["results"][2]["score"] == 0.5);
}

TEST_CASE("An object_id that is not valid UTF-8 is replaced, not thrown on", "[format]") {
  mmu::LikeResult r = result_with_scores({0.5f});
  r.neighbors[0].object.object_id = "ab\xff\xfe";
  mmu::LikeResult failed;
  failed.label = "bad\xc3";
  failed.error = "object_id 'bad\xc3' is not in store";
  std::ostringstream out;
  REQUIRE_NOTHROW(mmu::write_like_results({r, failed}, mmu::OutputFormat::kJson, out));
  const auto j = nlohmann::json::parse(out.str());
  CHECK(j[0]["results"][0]["object_id"] == "ab\xef\xbf\xbd\xef\xbf\xbd");  // two U+FFFD
  CHECK(j[1]["label"] == "bad\xef\xbf\xbd");
}

TEST_CASE("text helpers: CSV quoting only when needed, numbers never truncated", "[format]") {
  CHECK(mmu::text::csv_field("plain") == "plain");
  CHECK(mmu::text::csv_field("a,\"b\"") == "\"a,\"\"b\"\"\"");
  CHECK(mmu::text::format_double("%.6f", 40.0098540494) == "40.009854");
  CHECK(mmu::text::format_double("%.1f", 1e80).size() == 83);
  CHECK(mmu::text::json_quote("a\"\n\x01") == "\"a\\\"\\n\\u0001\"");
}
