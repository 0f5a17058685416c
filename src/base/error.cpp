#include "mmu/error.h"

#include <cstring>

namespace mmu {

Error IoError(const std::string& path, const std::string& what, int errno_value) {
  std::string msg = "cannot " + what + " '" + path + "'";
  if (errno_value != 0) msg += ": " + std::string(std::strerror(errno_value));
  return Error(ErrorKind::kIo, msg);
}

}  // namespace mmu
