#include "gallery_routes.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "connection_guard.h"
#include "http_reply.h"
#include "mmu/error.h"
#include "mmu/hunt.h"
#include "mmu/object_view.h"
#include "mmu/result_format.h"
#include "mmu/space_map.h"
#include "web_assets.h"

namespace mmu::cli {

namespace {

// The page's files: the page may load only its own script, style and images (a grid's cutouts
// come in POST /cutouts replies, shown as data: images).
void page_headers(httplib::Response& res) {
  res.set_header("Content-Security-Policy",
                 "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                 "connect-src 'self'");
  res.set_header("X-Content-Type-Options", "nosniff");
}

// Debian's httplib brotli-compresses every reply whose type starts with exactly
// "text/", at quality 11: several ms of CPU even for the 1 KB style sheet, and
// no gain on loopback. Media types are case-insensitive (RFC 9110 8.3.1): the
// page's files are sent as "Text/..." and left uncompressed.
const char* mime_of(const std::string& name) {
  const auto ends = [&](const char* ext) {
    const size_t n = std::strlen(ext);
    return name.size() >= n && name.compare(name.size() - n, n, ext) == 0;
  };
  if (ends(".html")) return "Text/html; charset=utf-8";
  if (ends(".js")) return "Text/javascript; charset=utf-8";
  if (ends(".css")) return "Text/css; charset=utf-8";
  return "application/octet-stream";
}

void serve_asset(httplib::Response& res, const std::string& name) {
  for (size_t i = 0; i < kNumWebAssets; ++i) {
    if (name != kWebAssets[i].name) continue;
    res.set_content(reinterpret_cast<const char*>(kWebAssets[i].data), kWebAssets[i].size, mime_of(name));
    page_headers(res);
    return;
  }
  res.status = 404;
  res.set_content("{\"error\": \"no such page file\"}\n", kJson);
}

// A header value carries any note: every byte but unreserved ASCII as %XX.
std::string percent_encode(const std::string& text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || std::strchr("-_.~ /:,()'", c) != nullptr) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

// Runs `body`, turning what it throws into an error reply: a request can
// fail, the server never does.
template <typename Body>
void guarded(httplib::Response& res, Body body) {
  ConnectionGuard::hold_deadline();  // the request is read; answering it is the server's time
  try {
    body();
  } catch (const Error& e) {
    res.status = http_status(e);
    res.set_content(error_body(e.what()), kJson);
  } catch (const std::exception& e) {
    res.status = 500;
    res.set_content(error_body(std::string("internal error: ") + e.what()), kJson);
  }
  ConnectionGuard::restart_deadline();
}

// Runs `answer(store, object)` for the object named by the route's <survey>/<id>.
template <typename Answer>
void for_object(const WithStore& with_store, const httplib::Request& req, httplib::Response& res, Answer answer) {
  guarded(res, [&] {
    with_store([&](const Store& store) { answer(store, find_object(store, req.matches[1], req.matches[2])); });
  });
}

// Replies with the JSON `answer(store)` returns.
template <typename Answer>
void answer_json(const WithStore& with_store, httplib::Response& res, Answer answer) {
  guarded(res, [&] { with_store([&](const Store& store) { res.set_content(answer(store), kJson); }); });
}

// The JSON body, at most max_body bytes (as serve's own POST routes read it:
// bounded however it is sent); false after replying with the error.
bool read_json_body(httplib::Response& res, const httplib::ContentReader& reader, size_t max_body, nlohmann::json* out) {
  std::string body;
  bool too_large = false;
  const bool read = reader([&](const char* data, size_t n) {
    too_large = body.size() + n > max_body;
    if (!too_large) body.append(data, n);
    return !too_large;
  });
  if (too_large || res.status == 413 || !read) {
    res.status = too_large || res.status == 413 ? 413 : 400;
    res.set_content(error_body(res.status == 413 ? "the request body is larger than the server's limit of " +
                                                       std::to_string(max_body) + " bytes (--max-body)"
                                                 : std::string("the request body could not be read")),
                    kJson);
    return false;
  }
  *out = nlohmann::json::parse(body, nullptr, false);
  if (!out->is_object()) {
    res.status = 400;
    res.set_content(error_body("the request body must be a JSON object"), kJson);
    return false;
  }
  return true;
}

std::string strings_field(nlohmann::json* j, const char* name, std::vector<std::string>* out) {
  if (!j->contains(name)) return "";
  const nlohmann::json v = (*j)[name];
  j->erase(name);
  if (!v.is_array()) return std::string("field '") + name + "' must be a list of object ids";
  for (const auto& s : v) {
    if (!s.is_string()) return std::string("field '") + name + "' must be a list of object ids";
    out->push_back(s.get<std::string>());
  }
  return "";
}

std::string result_json(const LikeResult& r) {
  std::ostringstream out;
  write_like_result(r, OutputFormat::kJson, out);
  return out.str();
}

// POST /hunt: {"positives": [ids], "negatives": [ids], "method":
// "classifier"|"mean"} plus the query fields of POST /batch (k, space,
// survey, in, cone, where, ...), ranked as `mmu-search hunt` ranks them.
HuntQuery parse_hunt(nlohmann::json j, const QueryLimits& limits) {
  HuntQuery h;
  std::string why = strings_field(&j, "positives", &h.positives);
  if (why.empty()) why = strings_field(&j, "negatives", &h.negatives);
  if (!why.empty()) throw InvalidArgument(why);
  if (j.contains("method")) {
    const nlohmann::json m = j["method"];
    j.erase("method");
    if (m == "classifier") h.method = HuntMethod::kClassifier;
    else if (m == "mean") h.method = HuntMethod::kMean;
    else throw InvalidArgument("field 'method' must be \"classifier\" or \"mean\"");
  }
  if (h.positives.empty()) throw InvalidArgument("field 'positives' must list at least one object_id");
  if (static_cast<int64_t>(h.positives.size() + h.negatives.size()) > limits.max_ids)
    throw InvalidArgument("fields 'positives' and 'negatives' name more than the limit of " +
                          std::to_string(limits.max_ids) + " objects");
  // The other fields are a batch's common fields: the same checks and errors as POST /batch.
  j["ids"] = h.positives;
  h.search = parse_batch_json(j.dump(), limits).common;
  return h;
}

// POST /outliers: {"neighbours": n} plus the query fields of POST /batch.
OutlierQuery parse_outliers(nlohmann::json j, const QueryLimits& limits) {
  OutlierQuery q;
  if (j.contains("neighbours")) {
    if (!j["neighbours"].is_number_integer() || j["neighbours"].get<int64_t>() < 1 || j["neighbours"].get<int64_t>() > 1000)
      throw InvalidArgument("field 'neighbours' must be an integer from 1 to 1000");
    q.neighbours = j["neighbours"].get<int64_t>();
    j.erase("neighbours");
  }
  j["ids"] = {"outliers"};  // parse_batch_json wants ids; an outlier list has none
  q.search = parse_batch_json(j.dump(), limits).common;
  return q;
}

std::string base64(const std::string& bytes) {
  static const char* digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t v = 0;
    for (size_t k = 0; k < 3; ++k)
      v = v << 8 | (k < n ? static_cast<unsigned char>(bytes[i + k]) : 0u);
    for (size_t k = 0; k < 4; ++k) out.push_back(k <= n ? digits[(v >> (18 - 6 * k)) & 63] : '=');
  }
  return out;
}

// The "objects" of a POST /cutouts or /objects body: [{"survey", "object_id"}], at most --max-ids.
std::vector<std::pair<std::string, std::string>> object_list(const nlohmann::json& body, const QueryLimits& limits) {
  const char* form = "field 'objects' must be a list of {\"survey\": ..., \"object_id\": ...}";
  if (!body.contains("objects") || !body["objects"].is_array()) throw InvalidArgument(form);
  if (static_cast<int64_t>(body["objects"].size()) > limits.max_ids)
    throw InvalidArgument("field 'objects' names " + std::to_string(body["objects"].size()) +
                          " objects, more than the limit of " + std::to_string(limits.max_ids) + " (--max-ids)");
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& o : body["objects"]) {
    if (!o.is_object() || !o.contains("object_id") || !o["object_id"].is_string() ||
        (o.contains("survey") && !o["survey"].is_string()))
      throw InvalidArgument(form);
    out.emplace_back(o.value("survey", std::string()), o["object_id"].get<std::string>());
  }
  return out;
}

// The size of a cutout: a whole number of pixels, 0 = the image's own.
int64_t size_param(const std::string& text) {
  if (text.empty() || text.size() > 5 || text.find_first_not_of("0123456789") != std::string::npos)
    throw InvalidArgument("size must be a whole number of pixels from 16 to 1024, got '" + text + "'");
  return std::stoll(text);
}

// replace: ids are user bytes that need not be UTF-8.
std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// Maps are a PCA over a whole space: computed once per store generation and space.
class MapCache {
 public:
  std::string get(const Store& store, const std::string& space, const std::string& column) {
    const std::string key = store.generation_path() + '\n' + space + '\n' + column;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = maps_.find(key);
      if (it != maps_.end()) return it->second;
    }
    std::string map = space_map_json(store, space, column);
    std::lock_guard<std::mutex> lock(mutex_);
    if (maps_.size() >= 16) maps_.clear();  // stale generations: bounded, recomputed on demand
    maps_[key] = map;
    return map;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, std::string> maps_;
};

}  // namespace

void add_gallery_routes(httplib::Server& server, WithStore with_store, const QueryLimits& limits, size_t max_body,
                        InSlot in_slot) {
  auto viewer = std::make_shared<ObjectViewer>();
  server.Get("/", [](const httplib::Request&, httplib::Response& res) { serve_asset(res, "index.html"); });
  // Browsers ask for it unbidden: "no icon" rather than a 404 in the page's console.
  server.Get("/favicon.ico", [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
  server.Get(R"(/assets/([A-Za-z0-9_.-]+))",
             [](const httplib::Request& req, httplib::Response& res) { serve_asset(res, req.matches[1]); });
  auto maps = std::make_shared<MapCache>();
  server.Get(R"(/map/(.+)\.json)", [with_store, maps](const httplib::Request& req, httplib::Response& res) {
    answer_json(with_store, res,
                [&](const Store& store) { return maps->get(store, req.matches[1], req.get_param_value("colour")); });
  });
  server.Post("/hunt", [with_store, limits, max_body, in_slot](const httplib::Request&, httplib::Response& res,
                                                               const httplib::ContentReader& reader) {
    nlohmann::json body;
    if (!read_json_body(res, reader, max_body, &body)) return;
    answer_json(with_store, res, [&](const Store& store) {
      std::string answer;
      in_slot([&] { answer = result_json(hunt(store, parse_hunt(body, limits))); });
      return answer;
    });
  });
  server.Post("/outliers", [with_store, limits, max_body, in_slot](const httplib::Request&, httplib::Response& res,
                                                                   const httplib::ContentReader& reader) {
    nlohmann::json body;
    if (!read_json_body(res, reader, max_body, &body)) return;
    answer_json(with_store, res, [&](const Store& store) {
      std::string answer;
      in_slot([&] { answer = result_json(find_outliers(store, parse_outliers(body, limits))); });
      return answer;
    });
  });
  // An object the store lacks (or names ambiguously) gets its error in its place, as POST /batch does.
  server.Post("/cutouts", [with_store, viewer, limits, max_body](const httplib::Request&, httplib::Response& res,
                                                                 const httplib::ContentReader& reader) {
    nlohmann::json body;
    if (!read_json_body(res, reader, max_body, &body)) return;
    answer_json(with_store, res, [&](const Store& store) {
      const auto objects = object_list(body, limits);
      int64_t size = 0;
      if (body.contains("size")) {
        if (!body["size"].is_number_unsigned()) throw InvalidArgument("field 'size' must be a whole number of pixels");
        size = size_param(std::to_string(body["size"].get<uint64_t>()));
      }
      // A reply is held whole in memory: at most 100 cutouts of 256 x 256 pixels' worth (~20 MB of RGB).
      constexpr int64_t kMaxPixels = int64_t{100} * 256 * 256;
      const int64_t side = std::max<int64_t>(size, 256);
      if (static_cast<int64_t>(objects.size()) * side * side > kMaxPixels)
        throw InvalidArgument("at most " + std::to_string(kMaxPixels / (side * side)) + " cutouts of " +
                              (size == 0 ? std::string("their own size") : std::to_string(size) + " pixels") +
                              " in one request, got " + std::to_string(objects.size()));
      std::vector<CatalogRow> rows;
      std::vector<std::string> errors(objects.size());
      std::vector<size_t> found;
      for (size_t i = 0; i < objects.size(); ++i) {
        try {
          rows.push_back(find_object(store, objects[i].first, objects[i].second));
          found.push_back(i);
        } catch (const Error& e) {
          errors[i] = e.what();
        }
      }
      const std::vector<CutoutPng> drawn = viewer->cutouts(store, rows, size);
      nlohmann::json out = nlohmann::json::array();
      for (size_t i = 0, k = 0; i < objects.size(); ++i) {
        nlohmann::json c{{"survey", objects[i].first}, {"object_id", objects[i].second}};
        if (k < found.size() && found[k] == i) {
          const CutoutPng& p = drawn[k++];
          c["png"] = base64(p.png);
          c["note"] = p.note;
          c["bands"] = p.bands;
        } else {
          c["error"] = errors[i];
        }
        out.push_back(c);
      }
      return dump(nlohmann::json{{"cutouts", out}});
    });
  });
  server.Post("/objects", [with_store, viewer, limits, max_body](const httplib::Request&, httplib::Response& res,
                                                                 const httplib::ContentReader& reader) {
    nlohmann::json body;
    if (!read_json_body(res, reader, max_body, &body)) return;
    answer_json(with_store, res, [&](const Store& store) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& [survey, id] : object_list(body, limits)) {
        try {
          out.push_back(nlohmann::json::parse(viewer->object_json(store, find_object(store, survey, id))));
        } catch (const Error& e) {
          out.push_back(nlohmann::json{{"survey", survey}, {"object_id", id}, {"error", e.what()}});
        }
      }
      return dump(nlohmann::json{{"objects", out}});
    });
  });
  server.Get(R"(/object/([^/]+)/(.+)\.json)", [with_store, viewer](const httplib::Request& req, httplib::Response& res) {
    for_object(with_store, req, res, [&](const Store& store, const CatalogRow& row) {
      res.set_content(viewer->object_json(store, row), kJson);
    });
  });
  server.Get(R"(/cutout/([^/]+)/(.+)\.png)", [with_store, viewer](const httplib::Request& req, httplib::Response& res) {
    for_object(with_store, req, res, [&](const Store& store, const CatalogRow& row) {
      const int64_t size = req.has_param("size") ? size_param(req.get_param_value("size")) : 0;
      const CutoutPng c = viewer->cutout(store, row, size);
      res.set_content(c.png, "image/png");
      if (!c.note.empty()) res.set_header("X-MMU-Note", percent_encode(c.note));
      if (!c.bands.empty()) res.set_header("X-MMU-Bands", percent_encode(c.bands));
    });
  });
  server.Get(R"(/spectrum/([^/]+)/(.+)\.json)", [with_store, viewer](const httplib::Request& req, httplib::Response& res) {
    for_object(with_store, req, res, [&](const Store& store, const CatalogRow& row) {
      int64_t points = 0;
      if (req.has_param("points")) {
        const std::string text = req.get_param_value("points");
        if (text.empty() || text.size() > 6 || text.find_first_not_of("0123456789") != std::string::npos ||
            std::stoll(text) < 2)
          throw InvalidArgument("points must be a whole number of at least 2, got '" + text + "'");
        points = std::stoll(text);
      }
      res.set_content(viewer->spectrum_json(store, row, points), kJson);
    });
  });
  server.Get(R"(/lightcurve/([^/]+)/(.+)\.json)", [with_store, viewer](const httplib::Request& req, httplib::Response& res) {
    for_object(with_store, req, res, [&](const Store& store, const CatalogRow& row) {
      res.set_content(viewer->light_curve_json(store, row), kJson);
    });
  });
}

}  // namespace mmu::cli
