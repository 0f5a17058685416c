// Times mmu::cross_match in-process (no file reading, no output) on two MMU
// files, so the core can be compared with astropy's in-process matching.
// Usage: mmu_bench_xmatch LEFT RIGHT RADIUS_ARCSEC
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "process_defaults.h"
#include "mmu/crossmatch.h"
#include "mmu/sky_source.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s LEFT RIGHT RADIUS_ARCSEC\n", argv[0]);
    return 2;
  }
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  const mmu::SkySource l = mmu::load_sky_source(argv[1], ""), r = mmu::load_sky_source(argv[2], "");
  auto t1 = clock::now();
  const double radius = std::atof(argv[3]) / 3600.0;
  const auto nearest = mmu::cross_match(l.ra, l.dec, r.ra, r.dec, radius, false);
  auto t2 = clock::now();
  const auto all = mmu::cross_match(l.ra, l.dec, r.ra, r.dec, radius, true);
  auto t3 = clock::now();
  auto s = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  std::printf("load %.3f s\nnearest %.3f s (%zu pairs)\nall %.3f s (%zu pairs)\n", s(t0, t1), s(t1, t2),
              nearest.size(), s(t2, t3), all.size());
  return 0;
}
