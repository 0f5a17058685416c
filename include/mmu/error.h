// Error policy: user-facing failures (bad input, missing things, I/O) throw
// mmu::Error, whose message names the file, dataset, object or flag involved.
// Programmer errors are asserts. Executables map Error to exit code 1.
#pragma once

#include <stdexcept>
#include <string>

#include "mmu/text.h"

namespace mmu {

enum class ErrorKind {
  kInvalidArgument,  // a flag or value the user gave is wrong
  kNotFound,         // an object, store, file or space does not exist
  kFormat,           // a file exists but its content is not what we can read
  kIo,               // the operating system refused a read or write
  kInternal,         // a bug: should never reach a user
};

class Error : public std::runtime_error {
 public:
  // Control bytes of user text in `message` (a NUL in an id or path would cut
  // what() short) are shown escaped.
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(text::for_message(message, 1 << 16)), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

inline Error InvalidArgument(const std::string& m) { return Error(ErrorKind::kInvalidArgument, m); }
inline Error NotFound(const std::string& m) { return Error(ErrorKind::kNotFound, m); }
inline Error FormatError(const std::string& m) { return Error(ErrorKind::kFormat, m); }
inline Error InternalError(const std::string& m) { return Error(ErrorKind::kInternal, m); }
// An I/O error carrying strerror(errno_value) and the path.
Error IoError(const std::string& path, const std::string& what, int errno_value);

}  // namespace mmu
