// Text forms of numbers and strings shared by every writer (tables, CSV,
// JSON by hand, SVG), so that one value is printed alike everywhere.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>

namespace mmu::text {

// `v` printed with `printf_format`, a printf format taking exactly one double
// ("%.6f", "%-7.4f", "%.9g"). Never truncated.
std::string format_double(const char* printf_format, double v);

// `s` as one CSV field: left as it is unless it holds a comma, a quote or a
// line break, then quoted with its quotes doubled (RFC 4180).
std::string csv_field(const std::string& s);

// `s` as a JSON string literal, quotes included. Control characters are
// escaped; every other byte is copied as it is (invalid UTF-8 included), for
// writers that stream JSON by hand.
std::string json_quote(const std::string& s);

// `s` fit for an error message: control bytes (NUL included; line breaks and
// tabs kept) as \xNN, and at most `max_bytes` of it, the rest as a count.
// Inline: error.h uses it, and the model plug-in does not link this library.
inline std::string for_message(const std::string& s, size_t max_bytes = 4096) {
  std::string out;
  const size_t n = std::min(s.size(), max_bytes);
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
      static const char* const kHex = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (n < s.size()) out += "... (" + std::to_string(s.size()) + " bytes in all)";
  return out;
}

}  // namespace mmu::text
