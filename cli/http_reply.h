// What serve's routes and the gallery's share in a reply: the JSON content type
// and the error body and status an mmu::Error becomes.
#pragma once

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <string>

#include "mmu/error.h"

namespace mmu::cli {

// With the charset Debian's httplib leaves the reply uncompressed: it brotli-compresses
// exactly "application/json", at quality 11 for every browser (2 s of CPU for one
// 250 KB spectrum); loopback needs no compression, and JSON is UTF-8 anyway.
inline constexpr const char* kJson = "application/json; charset=utf-8";

inline std::string error_body(const std::string& message) {
  // replace: an error may quote bytes of a request that are not UTF-8.
  return nlohmann::json{{"error", message}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

inline int http_status(const Error& e) {
  switch (e.kind()) {
    case ErrorKind::kInvalidArgument: return 400;
    case ErrorKind::kNotFound: return 404;
    default: return 500;
  }
}

inline void reply_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(error_body(message), kJson);
}

}  // namespace mmu::cli
