// Times mmu::cross_match in-process (no file reading, no output) on two MMU
// files, so the core can be compared with astropy's in-process matching.
// Prints wall and process CPU seconds per step: on a loaded machine CPU time
// is the less inflated of the two.
// Usage: mmu_bench_xmatch LEFT RIGHT RADIUS_ARCSEC
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

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

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s LEFT RIGHT RADIUS_ARCSEC\n", argv[0]);
    return 2;
  }
  const Clocks t0 = now();
  const mmu::SkySource l = mmu::load_sky_source(argv[1], ""), r = mmu::load_sky_source(argv[2], "");
  const Clocks t1 = now();
  const double radius = std::atof(argv[3]) / 3600.0;
  const auto nearest = mmu::cross_match(l.ra, l.dec, r.ra, r.dec, radius, false);
  const Clocks t2 = now();
  const auto all = mmu::cross_match(l.ra, l.dec, r.ra, r.dec, radius, true);
  const Clocks t3 = now();
  auto print = [](const char* what, Clocks a, Clocks b) {
    std::printf("%s %.3f s (cpu %.3f s)", what, b.wall - a.wall, b.cpu - a.cpu);
  };
  print("load", t0, t1);
  print("\nnearest", t1, t2);
  std::printf(" (%zu pairs)\n", nearest.size());
  print("all", t2, t3);
  std::printf(" (%zu pairs)\n", all.size());
  return 0;
}
