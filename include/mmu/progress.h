// Progress line for long work: "label  1234/5000  812 objects/s  ETA 0:05",
// redrawn on stderr at most 5 times a second, only when stderr is a terminal.
// Not thread-safe: call from one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace mmu {

class Progress {
 public:
  // enabled=false (or a non-terminal stderr) makes every call a no-op.
  Progress(std::string label, int64_t total, bool enabled);
  ~Progress();
  void add(int64_t n);
  void finish();

  static bool stderr_is_terminal();

 private:
  void draw(bool final);
  std::string label_;
  int64_t total_, done_ = 0;
  bool enabled_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace mmu
