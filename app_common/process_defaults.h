// Process-wide settings every executable wants before any library runs.
// Include in exactly one file of each executable.
#pragma once

#include <malloc.h>

namespace mmu::cli {

// Not set here: OMP_WAIT_POLICY. OpenMP threads spin ~300,000 times between
// parallel regions by default, burning a core that a loaded machine's other
// work wants. libgomp reads the variable in its initialiser, which runs after
// libc's, and libc's resets the environment to the one the process started
// with, so a setenv from .preinit_array is lost (checked with OMP_DISPLAY_ENV:
// GOMP_SPINCOUNT stays 300000); re-executing would cost a whole process start
// (~30 ms). Users on shared nodes export OMP_WAIT_POLICY=PASSIVE (README,
// scripts/slurm/).
//
// glibc hands blocks over ~128 kB to mmap and returns them to the kernel when
// freed (raising that limit only up to 32 MB as it goes), and trims the heap
// top above 128 kB. A model's activations are such blocks, allocated and freed
// on every call, so every call page-faults its activations in again: the
// SpecFormer replica ran 2.2x slower per object for it (63 vs 29 ms,
// python3-torch alike; docs/BENCHMARKS.md). Keeping freed memory for reuse
// costs at most the peak working set, which a build or a search reaches anyway.
inline void set_process_defaults(int, char**, char**) {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

__attribute__((section(".preinit_array"), used)) static void (*const kPreinitProcessDefaults)(int, char**, char**) =
    &set_process_defaults;

}  // namespace mmu::cli
