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
#include <utility>

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

// Each block of rows goes into one buffer sized for its longest possible rows,
// so a row is a few memcpy and integer conversions, with no checks of a
// string's capacity. The rows come from `units` units (pairs, or left points
// of a nearest match) taken a block at a time: rows(u0, u1, scratch) returns
// the block's pairs, in scratch (room for u1 - u0) or where they already are.
template <typename Rows>
void write_csv(const SkySource& l, const SkySource& r, int64_t n, Rows rows, int fd) {
  const std::string header = "left_id,left_survey,right_id,right_survey,sep_arcsec\n";
  write_out(fd, header.data(), header.size());
  constexpr int64_t kAhead = 16;
  constexpr size_t kNumber = 64;  // a separation in fixed notation, 6 decimals, and the newline
  const size_t row_bytes = l.ids.longest() + longest(l.survey_names) + r.ids.longest() + longest(r.survey_names) +
                           4 + kNumber;
  // A block's buffer (its text, then room for its pairs) fits one 2 MB page,
  // reused for each of the thread's blocks: fresh memory costs more here than
  // the writes (8.6 MB per thread with 65,536 rows a block, each page cleared
  // by the kernel once).
  const size_t unit_bytes = row_bytes + sizeof(MatchPair);
  const int64_t block = std::max<int64_t>(256, static_cast<int64_t>(kHugePage / unit_bytes));
  const int64_t blocks = (n + block - 1) / block;
  // A write error is kept, the other blocks skipped, and thrown after the region.
  std::exception_ptr failed;
#pragma omp parallel
  {
    const int64_t room = std::min(n, block);
    const std::unique_ptr<char[], void (*)(void*)> buffer(
        allocate_fresh<char>(room * static_cast<int64_t>(unit_bytes)), std::free);
    char* const text = buffer.get();
    MatchPair* const scratch = reinterpret_cast<MatchPair*>(text + room * static_cast<int64_t>(row_bytes));
#pragma omp for ordered schedule(static, 1)
    for (int64_t b = 0; b < blocks; ++b) {
      char* at = text;
      const auto [first, last] = rows(b * block, std::min(n, (b + 1) * block), scratch);
      for (const MatchPair* pair = first; pair != last; ++pair) {
        // Pairs come in left order, so the right side's ids are read at
        // random: fetch them ahead, or each row waits twice on memory.
        if (last - pair > kAhead) {
          r.ids.prefetch(pair[kAhead].right);
          __builtin_prefetch(&r.survey_of[pair[kAhead].right]);
        }
        const MatchPair& p = *pair;
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
            write_out(fd, text, static_cast<size_t>(at - text));
          } catch (...) {
            failed = std::current_exception();
          }
        }
      }
    }
  }
  if (failed) std::rethrow_exception(failed);
}

}  // namespace

void write_pairs_csv(const SkySource& l, const SkySource& r, const std::vector<MatchPair>& pairs, int fd) {
  write_csv(l, r, static_cast<int64_t>(pairs.size()), [&](int64_t k0, int64_t k1, MatchPair*) {
    return std::pair<const MatchPair*, const MatchPair*>(pairs.data() + k0, pairs.data() + k1);
  }, fd);
}

void write_nearest_csv(const SkySource& l, const SkySource& r, const NearestMatches& matches, int fd) {
  write_csv(l, r, matches.left_count(), [&](int64_t i0, int64_t i1, MatchPair* scratch) {
    return std::pair<const MatchPair*, const MatchPair*>(scratch, matches.pairs_of(i0, i1, scratch));
  }, fd);
}

void write_all_pairs_csv(const SkySource& l, const SkySource& r, const AllPairMatches& matches, int fd) {
  write_csv(l, r, matches.pair_count(), [&](int64_t k0, int64_t k1, MatchPair* scratch) {
    return std::pair<const MatchPair*, const MatchPair*>(scratch, matches.pairs(k0, k1, scratch));
  }, fd);
}

}  // namespace mmu
