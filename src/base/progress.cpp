#include "mmu/progress.h"

#include <unistd.h>

#include <cstdio>

namespace mmu {

bool Progress::stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled && stderr_is_terminal()) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() { finish(); }

void Progress::add(int64_t n) {
  done_ += n;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ > std::chrono::milliseconds(200)) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  draw(true);
  std::fputc('\n', stderr);
}

void Progress::draw(bool final) {
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = secs > 0 ? done_ / secs : 0.0;
  char eta[32] = "";
  if (!final && rate > 0 && total_ > done_) {
    const long left = static_cast<long>((total_ - done_) / rate);
    std::snprintf(eta, sizeof(eta), "  ETA %ld:%02ld", left / 60, left % 60);
  } else if (final) {
    std::snprintf(eta, sizeof(eta), "  in %.1f s", secs);
  }
  std::fprintf(stderr, "\r\033[K%s  %lld/%lld  %.0f objects/s%s", label_.c_str(), static_cast<long long>(done_),
               static_cast<long long>(total_), rate, eta);
  std::fflush(stderr);
}

}  // namespace mmu
