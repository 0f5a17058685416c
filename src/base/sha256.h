// SHA-256 of files (model packages are pinned by hash). Private to mmu_core.
#pragma once

#include <string>

namespace mmu {

// Lower-case hex digest of the file's bytes; throws IoError naming the path.
std::string sha256_file(const std::string& path);
// Same for bytes in memory.
std::string sha256_hex(const std::string& bytes);

}  // namespace mmu
