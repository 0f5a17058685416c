// UTF-8 well-formedness, for text read from files (ids) before it is stored.
#pragma once

#include <string>

namespace mmu::text {

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code
// points past U+10FFFF): what JSON output and SQLite text need.
bool valid_utf8(const std::string& s);

}  // namespace mmu::text
