// Text forms of numbers and strings shared by every writer (tables, CSV,
// JSON by hand, SVG), so that one value is printed alike everywhere.
#pragma once

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

}  // namespace mmu::text
