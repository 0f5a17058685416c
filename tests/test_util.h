// Helpers shared by the unit tests: scratch folders and Python-written fixtures.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

namespace mmu::test {

// A fresh, empty folder under the build tree, removed on destruction. The
// process id is part of its name: ctest -j runs test cases as parallel
// processes, and cases sharing a fixture name must not share its folder.
class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(std::string(MMU_BINARY_DIR) + "/test-tmp/" + name + "-" + std::to_string(::getpid())) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

// Runs a Python (Debian's, with h5py and numpy) script body; returns its exit code.
inline int run_python(const std::string& dir, const std::string& body) {
  const std::string script = dir + "/fixture.py";
  std::ofstream(script) << "import numpy as np, h5py, os\n" << body;
  return std::system((std::string(MMU_PYTHON) + " " + script).c_str());
}

}  // namespace mmu::test
