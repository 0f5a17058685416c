#include "mmu/query_json.h"

#include <catch2/catch.hpp>
#include <string>

#include "mmu/error.h"

namespace {

using mmu::QueryLimits;

// The InvalidArgument message of parsing `body` as a query ("" when it parses).
std::string query_error(const std::string& body, const QueryLimits& limits = {}) {
  try {
    mmu::parse_query_json(body, limits);
  } catch (const mmu::Error& e) {
    CHECK(e.kind() == mmu::ErrorKind::kInvalidArgument);
    return e.what();
  }
  return "";
}

std::string batch_error(const std::string& body, const QueryLimits& limits = {}) {
  try {
    mmu::parse_batch_json(body, limits);
  } catch (const mmu::Error& e) {
    CHECK(e.kind() == mmu::ErrorKind::kInvalidArgument);
    return e.what();
  }
  return "";
}

bool mentions(const std::string& message, const std::string& word) { return message.find(word) != std::string::npos; }

}  // namespace

TEST_CASE("query_json: every field lands in the LikeQuery", "[query_json]") {
  const mmu::LikeQuery q = mmu::parse_query_json(
      R"({"like": ["a", "b"], "unlike": "c", "unlike_weight": 0.25, "k": 7, "space": "image", "survey": "desi",
          "in": ["desi", "legacysurvey/dr10"], "cells": [3, 4], "cone": {"ra": 150, "dec": 2.5, "radius_deg": 0.5},
          "where": "Z < 0.3", "dedup_arcsec": 2, "exact": true, "nprobe": 8, "ef_search": 64})",
      {});
  CHECK(q.like == std::vector<std::string>{"a", "b"});
  CHECK(q.unlike == std::vector<std::string>{"c"});
  CHECK(q.unlike_weight == 0.25);
  CHECK(q.k == 7);
  CHECK(q.space == "image");
  CHECK(q.survey == "desi");
  CHECK(q.filter.surveys == std::vector<std::string>{"desi", "legacysurvey/dr10"});
  CHECK(q.filter.cells == std::vector<int64_t>{3, 4});
  REQUIRE(q.filter.cone);
  CHECK(q.filter.cone->ra == 150);
  CHECK(q.filter.cone->dec == 2.5);
  CHECK(q.filter.cone->radius_deg == 0.5);
  CHECK(q.filter.where == "Z < 0.3");
  CHECK(q.dedup_arcsec == 2);
  CHECK(q.search.exact);
  CHECK(q.search.nprobe == 8);
  CHECK(q.search.ef_search == 64);
}

TEST_CASE("query_json: near takes arcsec (10 by default), vector is inline", "[query_json]") {
  const mmu::LikeQuery near = mmu::parse_query_json(R"({"near": {"ra": 10, "dec": -5}})", {});
  REQUIRE(near.near);
  CHECK(near.near->radius_deg == Approx(10.0 / 3600));
  const mmu::LikeQuery wide = mmu::parse_query_json(R"({"near": {"ra": 10, "dec": -5, "radius_arcsec": 36}})", {});
  CHECK(wide.near->radius_deg == Approx(0.01));
  const mmu::LikeQuery v = mmu::parse_query_json(R"({"vector": [1, 0.5, -2e-3]})", {});
  CHECK(v.vector == std::vector<float>{1.0f, 0.5f, -2e-3f});
  CHECK(v.k == mmu::LikeQuery{}.k);  // defaults as the CLI's
}

TEST_CASE("query_json: errors name the field", "[query_json]") {
  CHECK(mentions(query_error(R"({"like": "a", "colour": 1})"), "unknown field 'colour'"));
  CHECK(mentions(query_error(R"({"like": 5})"), "field 'like' must be a string or a list of strings"));
  CHECK(mentions(query_error(R"({"like": "a", "k": "10"})"), "field 'k' must be an integer, got a string"));
  CHECK(mentions(query_error(R"({"like": "a", "k": 1.5})"), "field 'k' must be an integer"));
  CHECK(mentions(query_error(R"({"like": "a", "k": 0})"), "field 'k' must be between 1 and"));
  CHECK(mentions(query_error(R"({"like": "a", "k": 18446744073709551615})"), "field 'k' is too large"));
  CHECK(mentions(query_error(R"({"like": "a", "exact": 1})"), "field 'exact' must be true or false"));
  CHECK(mentions(query_error(R"({"like": ""})"), "field 'like' holds an empty string"));
  CHECK(mentions(query_error(R"({"like": "a", "dedup_arcsec": -1})"), "field 'dedup_arcsec' must be >= 0"));
  CHECK(mentions(query_error(R"({"like": "a", "cone": {"ra": 1, "dec": 2}})"), "field 'cone' needs radius_deg"));
  CHECK(mentions(query_error(R"({"like": "a", "cone": {"ra": 1, "dec": 2, "r": 1}})"), "unknown field 'cone.r'"));
  CHECK(mentions(query_error(R"({"near": {"ra": 400, "dec": 0}})"), "field 'near' must have ra in 0..360"));
  CHECK(mentions(query_error(R"({"near": {"ra": 1, "dec": 0, "radius_arcsec": 0}})"), "near.radius_arcsec' must be > 0"));
  CHECK(mentions(query_error(R"({"vector": [1, "x"]})"), "field 'vector' must be a number"));
  CHECK(mentions(query_error(R"({"vector": [1, 1e300]})"), "field 'vector' has a value out of float range"));
  CHECK(mentions(query_error(R"({"vector": []})"), "field 'vector' is empty"));
  CHECK(mentions(query_error(R"({"k": 3})"), "exactly one of the fields 'like', 'near' or 'vector'"));
  CHECK(mentions(query_error(R"({"like": "a", "vector": [1]})"), "exactly one of"));
}

TEST_CASE("query_json: malformed, non-object and deeply nested bodies are refused", "[query_json]") {
  CHECK(mentions(query_error(R"({"like": )"), "not valid JSON"));
  CHECK(mentions(query_error(""), "not valid JSON"));
  const std::string binary = query_error("{\"like\": \"\xff\xfe\"}");
  CHECK(mentions(binary, "not valid JSON"));
  CHECK(binary.find('\xff') == std::string::npos);  // the reply quoting it must stay UTF-8
  CHECK(mentions(query_error(R"(["like", "a"])"), "must be a JSON object, got a list"));
  CHECK(mentions(query_error(std::string(100000, '[') + std::string(100000, ']')), "nests deeper than"));
}

TEST_CASE("query_json: no field names a file", "[query_json]") {
  for (const char* field : {"vector_file", "like_file", "store"}) {
    const std::string e = query_error(std::string(R"({"like": "a", ")") + field + R"(": "/etc/passwd"})");
    CHECK(mentions(e, std::string("field '") + field + "' is not accepted"));
    CHECK(mentions(e, "never reads files"));
    CHECK(mentions(batch_error(std::string(R"({"ids": ["a"], ")") + field + R"(": "/etc/passwd"})"), field));
  }
}

TEST_CASE("query_json: limits", "[query_json]") {
  QueryLimits limits;
  limits.max_k = 100;
  limits.max_ids = 3;
  limits.max_vector_dim = 4;
  limits.max_cells = 2;
  CHECK(query_error(R"({"like": "a", "k": 100})", limits).empty());
  CHECK(mentions(query_error(R"({"like": "a", "k": 101})", limits), "field 'k' must be between 1 and 100, got 101"));
  CHECK(mentions(query_error(R"({"like": ["a", "b"], "unlike": ["c", "d"]})", limits), "more than the limit of 3"));
  CHECK(mentions(query_error(R"({"vector": [1, 2, 3, 4, 5]})", limits), "field 'vector' has 5 values"));
  CHECK(mentions(query_error(R"({"like": "a", "cells": [1, 2, 3]})", limits), "field 'cells' holds 3 cells"));
  CHECK(mentions(batch_error(R"({"ids": ["a", "b", "c", "d"]})", limits), "field 'ids' lists 4 ids"));
}

TEST_CASE("query_json: batch: ids plus the common fields only", "[query_json]") {
  const mmu::BatchQuery b = mmu::parse_batch_json(R"({"ids": ["a", "b"], "k": 3, "space": "spectrum"})", {});
  CHECK(b.ids == std::vector<std::string>{"a", "b"});
  CHECK(b.common.k == 3);
  CHECK(b.common.space == "spectrum");
  CHECK(mentions(batch_error(R"({"k": 3})"), "field 'ids' must list at least one object_id"));
  CHECK(mentions(batch_error(R"({"ids": []})"), "field 'ids' must list at least one"));
  CHECK(mentions(batch_error(R"({"ids": "a"})"), "field 'ids' must be a list of strings"));
  CHECK(mentions(batch_error(R"({"ids": ["a"], "like": "b"})"), "unknown field 'like' (accepted: ids,"));
}

TEST_CASE("query_json: parameters: GET /like goes through the same checks", "[query_json]") {
  const mmu::LikeQuery q = mmu::parse_query_params(
      {{"id", "a"}, {"id", "b"}, {"k", "5"}, {"space", "image"}, {"in", "desi"}, {"exact", "true"}}, {});
  CHECK(q.like == std::vector<std::string>{"a", "b"});
  CHECK(q.k == 5);
  CHECK(q.space == "image");
  CHECK(q.filter.surveys == std::vector<std::string>{"desi"});
  CHECK(q.search.exact);
  auto error = [](const std::vector<std::pair<std::string, std::string>>& params) {
    try {
      mmu::parse_query_params(params, {});
    } catch (const mmu::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(mentions(error({{"k", "5"}}), "parameter 'id' is required"));
  CHECK(mentions(error({{"id", "a"}, {"k", "5x"}}), "parameter 'k' must be an integer, got '5x'"));
  CHECK(mentions(error({{"id", "a"}, {"k", "99999999"}}), "field 'k' must be between 1 and 10000"));
  CHECK(mentions(error({{"id", "a"}, {"vector_file", "/etc/passwd"}}), "unknown parameter 'vector_file'"));
  CHECK(mentions(error({{"id", "a"}, {"space", "x"}, {"space", "y"}}), "parameter 'space' is given twice"));
  CHECK(mentions(error({{"id", "a"}, {"exact", "yes"}}), "parameter 'exact' must be true or false"));
  CHECK(mentions(error({{"id", "a\xff"}}), "not valid UTF-8"));
}
