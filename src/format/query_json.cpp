#include "mmu/query_json.h"

#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "base/utf8.h"
#include "mmu/error.h"
#include "mmu/sky.h"

namespace mmu {

using nlohmann::json;

namespace {

// Deeper nesting than any valid request has; refusing it early bounds the
// parser's and the destructor's work on hostile bodies.
constexpr int kMaxDepth = 8;

std::string type_name(const json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_array()) return "a list";
  if (v.is_object()) return "an object";
  return "null";
}

[[noreturn]] void wrong_type(const std::string& field, const std::string& wanted, const json& v) {
  throw InvalidArgument("field '" + field + "' must be " + wanted + ", got " + type_name(v));
}

// `text` with every byte outside printable ASCII as '?': nlohmann's parse
// errors quote the bytes read, which need not be UTF-8, and the error goes
// back to the client inside JSON.
std::string printable(std::string text) {
  for (char& c : text)
    if (c < 0x20 || c > 0x7e) c = '?';
  return text;
}

json parse_object(const std::string& body) {
  json j;
  try {
    j = json::parse(body, [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxDepth) throw InvalidArgument("the request body nests deeper than " + std::to_string(kMaxDepth) + " levels");
      return true;
    });
  } catch (const json::parse_error& e) {
    throw InvalidArgument("the request body is not valid JSON: " + printable(e.what()));
  } catch (const json::out_of_range& e) {  // e.g. 1e999: no double holds it
    throw InvalidArgument("the request body has a number out of range: " + printable(e.what()));
  }
  if (!j.is_object()) throw InvalidArgument("the request body must be a JSON object, got " + type_name(j));
  return j;
}

int64_t as_int(const std::string& field, const json& v) {
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    throw InvalidArgument("field '" + field + "' is too large");
  if (!v.is_number_integer()) wrong_type(field, "an integer", v);
  return v.get<int64_t>();
}

double as_number(const std::string& field, const json& v) {
  if (!v.is_number()) wrong_type(field, "a number", v);
  const double x = v.get<double>();
  if (!std::isfinite(x)) throw InvalidArgument("field '" + field + "' must be finite");
  return x;
}

std::string as_string(const std::string& field, const json& v) {
  if (!v.is_string()) wrong_type(field, "a string", v);
  return v.get<std::string>();
}

// A string or a list of strings, none empty.
std::vector<std::string> as_strings(const std::string& field, const json& v) {
  std::vector<std::string> out;
  if (v.is_string()) {
    out.push_back(v.get<std::string>());
  } else if (v.is_array()) {
    for (const json& e : v) {
      if (!e.is_string()) wrong_type(field, "a string or a list of strings", v);
      out.push_back(e.get<std::string>());
    }
  } else {
    wrong_type(field, "a string or a list of strings", v);
  }
  for (const std::string& s : out)
    if (s.empty()) throw InvalidArgument("field '" + field + "' holds an empty string");
  return out;
}

void check_range(const std::string& field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    throw InvalidArgument("field '" + field + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                          ", got " + std::to_string(v));
}

// {"ra": .., "dec": .., <radius_field>: ..}; the radius in the unit its name says.
SkyCone as_cone(const std::string& field, const json& v, const std::string& radius_field, double radius_default,
                double radius_to_deg) {
  if (!v.is_object()) wrong_type(field, "an object {\"ra\", \"dec\", \"" + radius_field + "\"}", v);
  SkyCone c;
  bool has_ra = false, has_dec = false, has_radius = false;
  double radius = radius_default;
  for (const auto& [key, x] : v.items()) {
    const std::string name = field + "." + key;
    if (key == "ra") {
      c.ra = as_number(name, x);
      has_ra = true;
    } else if (key == "dec") {
      c.dec = as_number(name, x);
      has_dec = true;
    } else if (key == radius_field) {
      radius = as_number(name, x);
      has_radius = true;
    } else {
      throw InvalidArgument("unknown field '" + name + "' (" + field + " takes ra, dec and " + radius_field + ")");
    }
  }
  if (!has_ra || !has_dec) throw InvalidArgument("field '" + field + "' needs both ra and dec");
  if (!has_radius && radius_default <= 0) throw InvalidArgument("field '" + field + "' needs " + radius_field);
  if (!valid_sky_position(c.ra, c.dec))
    throw InvalidArgument("field '" + field + "' must have ra in 0..360 and dec in -90..90 degrees");
  if (!(radius > 0)) throw InvalidArgument("field '" + field + "." + radius_field + "' must be > 0");
  c.radius_deg = radius * radius_to_deg;
  return c;
}

// Fields that would name a file on the server's machine: refused with why.
const std::map<std::string, std::string>& file_fields() {
  static const std::map<std::string, std::string> fields = {
      {"vector_file", "send the values inline as 'vector'"},
      {"like_file", "send the ids as 'ids' to POST /batch"},
      {"store", "the server answers for the one store it was started on"},
  };
  return fields;
}

// The fields every query may carry; returns false when `key` is not one.
bool apply_common(const std::string& key, const json& v, const QueryLimits& limits, LikeQuery& q) {
  if (key == "k") {
    q.k = as_int(key, v);
    check_range(key, q.k, 1, limits.max_k);
  } else if (key == "space") {
    q.space = as_string(key, v);
  } else if (key == "survey") {
    q.survey = as_string(key, v);
  } else if (key == "in") {
    q.filter.surveys = as_strings(key, v);
  } else if (key == "cells") {
    if (!v.is_array()) wrong_type(key, "a list of integers", v);
    if (static_cast<int64_t>(v.size()) > limits.max_cells)
      throw InvalidArgument("field 'cells' holds " + std::to_string(v.size()) + " cells, more than the limit of " +
                            std::to_string(limits.max_cells));
    q.filter.cells.clear();
    for (const json& c : v) q.filter.cells.push_back(as_int("cells", c));
  } else if (key == "cone") {
    q.filter.cone = as_cone(key, v, "radius_deg", 0, 1.0);
  } else if (key == "where") {
    q.filter.where = as_string(key, v);
  } else if (key == "dedup_arcsec") {
    q.dedup_arcsec = as_number(key, v);
    if (q.dedup_arcsec < 0) throw InvalidArgument("field 'dedup_arcsec' must be >= 0");
  } else if (key == "exact") {
    if (!v.is_boolean()) wrong_type(key, "true or false", v);
    q.search.exact = v.get<bool>();
  } else if (key == "nprobe") {
    q.search.nprobe = as_int(key, v);
    check_range(key, q.search.nprobe, 0, 1 << 20);
  } else if (key == "ef_search") {
    q.search.ef_search = as_int(key, v);
    check_range(key, q.search.ef_search, 0, 1 << 20);
  } else {
    return false;
  }
  return true;
}

// The fields naming what to look for; returns false when `key` is not one.
bool apply_target(const std::string& key, const json& v, const QueryLimits& limits, LikeQuery& q) {
  if (key == "like") {
    q.like = as_strings(key, v);
  } else if (key == "unlike") {
    q.unlike = as_strings(key, v);
  } else if (key == "unlike_weight") {
    q.unlike_weight = as_number(key, v);
    if (q.unlike_weight < 0) throw InvalidArgument("field 'unlike_weight' must be >= 0");
  } else if (key == "near") {
    constexpr double kArcsec = 1.0 / 3600.0;
    q.near = as_cone(key, v, "radius_arcsec", 10.0, kArcsec);  // 10 arcsec: the CLI's --radius default
  } else if (key == "vector") {
    if (!v.is_array()) wrong_type(key, "a list of numbers", v);
    if (v.empty()) throw InvalidArgument("field 'vector' is empty");
    if (static_cast<int64_t>(v.size()) > limits.max_vector_dim)
      throw InvalidArgument("field 'vector' has " + std::to_string(v.size()) + " values, more than the limit of " +
                            std::to_string(limits.max_vector_dim));
    q.vector.clear();
    for (const json& x : v) {
      const double d = as_number("vector", x);
      if (std::fabs(d) > std::numeric_limits<float>::max()) throw InvalidArgument("field 'vector' has a value out of float range");
      q.vector.push_back(static_cast<float>(d));
    }
    q.vector_label = "vector of " + std::to_string(v.size()) + " values";
  } else {
    return false;
  }
  return true;
}

[[noreturn]] void unknown_field(const std::string& key, const std::string& accepted) {
  const auto file = file_fields().find(key);
  if (file != file_fields().end())
    throw InvalidArgument("field '" + key + "' is not accepted: the server never reads files named by a request; " +
                          file->second);
  throw InvalidArgument("unknown field '" + key + "' (accepted: " + accepted + ")");
}

constexpr const char* kCommonFields = "k, space, survey, in, cells, cone, where, dedup_arcsec, exact, nprobe, ef_search";

LikeQuery query_from(const json& j, const QueryLimits& limits) {
  LikeQuery q;
  for (const auto& [key, v] : j.items())
    if (!apply_target(key, v, limits, q) && !apply_common(key, v, limits, q))
      unknown_field(key, std::string("like, unlike, unlike_weight, near, vector, ") + kCommonFields);
  const int kinds = !q.like.empty() + q.near.has_value() + !q.vector.empty();
  if (kinds != 1) throw InvalidArgument("give exactly one of the fields 'like', 'near' or 'vector'");
  if (static_cast<int64_t>(q.like.size() + q.unlike.size()) > limits.max_ids)
    throw InvalidArgument("fields 'like' and 'unlike' name " + std::to_string(q.like.size() + q.unlike.size()) +
                          " objects, more than the limit of " + std::to_string(limits.max_ids));
  check_search_settings(q);  // the command line's check too
  return q;
}

bool parse_bool(const std::string& name, const std::string& text) {
  if (text == "true" || text == "1") return true;
  if (text == "false" || text == "0") return false;
  throw InvalidArgument("parameter '" + name + "' must be true or false, got '" + text + "'");
}

int64_t parse_int(const std::string& name, const std::string& text) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw InvalidArgument("parameter '" + name + "' must be an integer, got '" + text + "'");
}

}  // namespace

LikeQuery parse_query_json(const std::string& body, const QueryLimits& limits) {
  return query_from(parse_object(body), limits);
}

BatchQuery parse_batch_json(const std::string& body, const QueryLimits& limits) {
  const json j = parse_object(body);
  BatchQuery b;
  bool has_ids = false;
  for (const auto& [key, v] : j.items()) {
    if (key == "ids") {
      if (!v.is_array()) wrong_type(key, "a list of strings", v);
      b.ids = as_strings(key, v);
      has_ids = true;
    } else if (!apply_common(key, v, limits, b.common)) {
      unknown_field(key, std::string("ids, ") + kCommonFields);
    }
  }
  if (!has_ids || b.ids.empty()) throw InvalidArgument("field 'ids' must list at least one object_id");
  if (static_cast<int64_t>(b.ids.size()) > limits.max_ids)
    throw InvalidArgument("field 'ids' lists " + std::to_string(b.ids.size()) + " ids, more than the limit of " +
                          std::to_string(limits.max_ids));
  check_search_settings(b.common);
  return b;
}

LikeQuery parse_query_params(const std::vector<std::pair<std::string, std::string>>& params,
                             const QueryLimits& limits) {
  json j = json::object();
  for (const auto& [name, value] : params) {
    // A URL can carry any bytes; JSON bodies and replies hold UTF-8 only.
    if (!text::valid_utf8(name) || !text::valid_utf8(value)) throw InvalidArgument("the query string is not valid UTF-8");
    if (name == "id" || name == "unlike" || name == "in") {
      json& list = j[name == "id" ? "like" : name];
      if (list.is_null()) list = json::array();
      list.push_back(value);
    } else if (name == "k") {
      j["k"] = parse_int(name, value);
    } else if (name == "exact") {
      j["exact"] = parse_bool(name, value);
    } else if (name == "space" || name == "survey" || name == "where") {
      if (j.contains(name)) throw InvalidArgument("parameter '" + name + "' is given twice");
      j[name] = value;
    } else {
      throw InvalidArgument("unknown parameter '" + name + "' (accepted: id, unlike, k, space, survey, in, where, exact)");
    }
  }
  if (!j.contains("like")) throw InvalidArgument("parameter 'id' is required (the object_id to find neighbours of)");
  return query_from(j, limits);
}

std::string spaces_json(const Store& store) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();  // fields in the order --list-spaces shows them
  for (const SpaceInfo& s : store.spaces())
    out.push_back({{"name", s.name},
                   {"modality", s.modality},
                   {"model", s.model},
                   {"version", s.version},
                   {"dim", s.dim},
                   {"count", s.count},
                   {"created", s.created},
                   {"sha256", s.sha256},
                   {"search", store.search_method(s.name, false, SearchOptions{})},
                   {"default", store.default_space(s.modality) == s.name}});
  return nlohmann::ordered_json{{"spaces", out}}.dump(1) + "\n";
}

}  // namespace mmu
