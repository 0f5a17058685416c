#include "mmu/pair_csv.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>

#include "base/fresh_buffer.h"
#include "mmu/error.h"

namespace mmu {

namespace {

// The longest of the strings, in bytes.
size_t longest(const std::vector<std::string>& texts) {
  size_t most = 0;
  for (const std::string& t : texts) most = std::max(most, t.size());
  return most;
}

// Copies text to `to` followed by `end`; returns the byte after it.
inline char* put(char* to, const std::string& text, char end) {
  std::memcpy(to, text.data(), text.size());
  to[text.size()] = end;
  return to + text.size() + 1;
}

// x as printf's "%.6f" writes it (digits of x * 1e6 rounded to nearest), with
// integer arithmetic: to_chars for doubles costs more than the rest of a row.
// The product is within 1.2e-4 of exact for x < 1e6, so where it lies within
// 1e-3 of a rounding midpoint, or x is out of that range, to_chars decides.
inline char* put_fixed6(char* to, double x) {
  const double scaled = x * 1e6;
  const double whole = std::floor(scaled), fraction = scaled - whole;
  if (!(x >= 0.0 && scaled < 1e12) || std::signbit(x) || std::fabs(fraction - 0.5) < 1e-3)
    return std::to_chars(to, to + 64, x, std::chars_format::fixed, 6).ptr;
  const uint64_t micro = static_cast<uint64_t>(whole) + (fraction > 0.5 ? 1 : 0);
  to = std::to_chars(to, to + 20, micro / 1000000).ptr;
  *to = '.';
  for (uint64_t rest = micro % 1000000, k = 6; k > 0; --k, rest /= 10) to[k] = static_cast<char>('0' + rest % 10);
  return to + 7;
}

// Writes all of [data, data + size) to fd; IoError when it
// cannot (a full disk, a closed pipe): never a silently short file.
void write_out(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw IoError(fd == STDOUT_FILENO ? "standard output" : "file descriptor " + std::to_string(fd), "write",
                                n < 0 ? errno : EIO);
    data += n;
    size -= static_cast<size_t>(n);
  }
}

}  // namespace

// Each block of rows goes into one buffer sized for its longest possible rows,
// so a row is a few memcpy and integer conversions, with no checks of a
// string's capacity.

void write_pairs_csv(const SkySource& l, const SkySource& r, const std::vector<MatchPair>& pairs, int fd) {
  const std::string header = "left_id,left_survey,right_id,right_survey,sep_arcsec\n";
  write_out(fd, header.data(), header.size());
  constexpr int64_t kAhead = 16;
  constexpr size_t kNumber = 64;  // a separation in fixed notation, 6 decimals, and the newline
  const size_t row_bytes = l.ids.longest() + longest(l.survey_names) + r.ids.longest() + longest(r.survey_names) +
                           4 + kNumber;
  // A block's buffer fits one 2 MB page, reused for each of the thread's
  // blocks: fresh memory costs more here than the writes (8.6 MB per thread
  // with 65,536 rows a block, each page cleared by the kernel once).
  const int64_t n = static_cast<int64_t>(pairs.size());
  const int64_t block = std::max<int64_t>(256, static_cast<int64_t>(kHugePage / row_bytes));
  const int64_t blocks = (n + block - 1) / block;
  // A write error is kept, the other blocks skipped, and thrown after the region.
  std::exception_ptr failed;
#pragma omp parallel
  {
    const std::unique_ptr<char[], void (*)(void*)> text(
        allocate_fresh<char>(static_cast<int64_t>(std::min(n, block) * static_cast<int64_t>(row_bytes))), std::free);
#pragma omp for ordered schedule(static, 1)
    for (int64_t b = 0; b < blocks; ++b) {
      char* at = text.get();
      const int64_t end_k = std::min(n, (b + 1) * block);
      for (int64_t k = b * block; k < end_k; ++k) {
        // Pairs come in left order, so the right side's ids are read at
        // random: fetch them ahead, or each row waits twice on memory.
        if (k + kAhead < end_k) {
          r.ids.prefetch(pairs[k + kAhead].right);
          __builtin_prefetch(&r.survey_of[pairs[k + kAhead].right]);
        }
        const MatchPair& p = pairs[k];
        at = l.ids.write(p.left, at);
        *at++ = ',';
        at = put(at, l.survey(p.left), ',');
        at = r.ids.write(p.right, at);
        *at++ = ',';
        at = put(at, r.survey(p.right), ',');
        at = put_fixed6(at, p.sep_arcsec);
        *at++ = '\n';
      }
#pragma omp ordered
      {
        if (!failed) {
          try {
            write_out(fd, text.get(), static_cast<size_t>(at - text.get()));
          } catch (...) {
            failed = std::current_exception();
          }
        }
      }
    }
  }
  if (failed) std::rethrow_exception(failed);
}

}  // namespace mmu
