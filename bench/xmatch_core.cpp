// Times the cross-match in-process (no file reading, no output) on two MMU
// files, so the core can be compared with astropy's in-process matching.
// Prints wall and process CPU seconds per step: on a loaded machine CPU time
// is the less inflated of the two.
// Usage: mmu_bench_xmatch LEFT RIGHT RADIUS_ARCSEC [REPEAT [WARM_MB]]
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "mmu/crossmatch.h"
#include "mmu/sky_source.h"

namespace {

struct Clocks {
  double wall, cpu;
};

Clocks now() {
  timespec cpu;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
  return {std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(),
          static_cast<double>(cpu.tv_sec) + 1e-9 * static_cast<double>(cpu.tv_nsec)};
}

void print(const char* what, Clocks a, Clocks b) {
  std::printf("%s %.3f s (cpu %.3f s)", what, b.wall - a.wall, b.cpu - a.cpu);
}

// Maps `bytes` of fresh memory on huge pages, as the match's buffers are,
// frees it, and returns the rate in GB/s. In this VM (2026-12) memory the
// process has not used lately may be backed by the host only at first touch:
// 0.5-0.6 GB/s, against ~20 GB/s for pages freed a moment ago, so a match's
// ~100 MB of buffers took 50-80 ms more in some processes than in others.
// After this, the match's buffers are pages freed a moment ago, as the
// astropy side's repeats reuse its interpreter's memory.
double warm_memory(size_t bytes) {
  const Clocks a = now();
  void* p = std::aligned_alloc(size_t{2} << 20, bytes);
  if (p == nullptr) return 0.0;
#ifdef MADV_HUGEPAGE
  madvise(p, bytes, MADV_HUGEPAGE);
#endif
#ifdef MADV_POPULATE_WRITE
  madvise(p, bytes, MADV_POPULATE_WRITE);
#endif
  std::memset(p, 1, bytes);  // where populate is refused
  const Clocks b = now();
  std::free(p);
  return static_cast<double>(bytes) / 1e9 / (b.wall - a.wall);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 6) {
    std::fprintf(stderr, "usage: %s LEFT RIGHT RADIUS_ARCSEC [REPEAT [WARM_MB]]\n", argv[0]);
    return 2;
  }
  const Clocks t0 = now();
  const mmu::SkySource l = mmu::load_sky_source(argv[1], ""), r = mmu::load_sky_source(argv[2], "");
  const Clocks t1 = now();
  const double radius = std::atof(argv[3]) / 3600.0;
  const int repeat = argc >= 5 ? std::max(1, std::atoi(argv[4])) : 1;
  const int64_t warm_mb = argc >= 6 ? std::max(0, std::atoi(argv[5])) : 0;
  print("load", t0, t1);
  std::printf("\n");
  if (warm_mb > 0) std::printf("fresh memory %.2f GB/s\n", warm_memory(static_cast<size_t>(warm_mb) << 20));
  // Each mode up to its answers, as astropy's is timed up to its index arrays:
  // the index of the right side built, every pair found and sorted, readable
  // in (left, sep, right) order; not copied into a vector of pairs. Each
  // mode `repeat` times in this process, as the bench times astropy's.
  const auto time_mode = [&](const char* what, auto match) {
    for (int k = 0; k < repeat; ++k) {
      const Clocks a = now();
      const auto answers = match(mmu::CrossMatchIndex(r.ra, r.dec, radius));
      const Clocks b = now();
      print(what, a, b);
      std::printf(" (%lld pairs)\n", static_cast<long long>(answers.pair_count()));
    }
  };
  time_mode("nearest", [&](const mmu::CrossMatchIndex& index) { return index.match_nearest(l.ra, l.dec); });
  time_mode("all", [&](const mmu::CrossMatchIndex& index) { return index.match_all(l.ra, l.dec); });
  return 0;
}
