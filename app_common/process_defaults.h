// Process-wide settings every executable wants before any library runs.
// Include in exactly one file of each executable.
#pragma once

#include <malloc.h>

#include <cstdlib>

namespace mmu::cli {

// OpenMP threads (ours, OpenBLAS's, FAISS's) busy-wait between parallel
// regions by default. On 2 cores, or any loaded machine, a spinning thread
// steals the core the reading thread needs: a build ran 3x slower for it.
// libgomp reads OMP_WAIT_POLICY when it is loaded, before main(), so the
// default is set from .preinit_array, which runs before any library
// initialiser. A value the user set is kept.
//
// glibc hands blocks over ~128 kB to mmap and returns them to the kernel when
// freed (raising that limit only up to 32 MB as it goes), and trims the heap
// top above 128 kB. A model's activations are such blocks, allocated and freed
// on every call, so every call page-faults its activations in again: the
// SpecFormer replica ran 2.2x slower per object for it (63 vs 29 ms,
// python3-torch alike; docs/BENCHMARKS.md). Keeping freed memory for reuse
// costs at most the peak working set, which a build or a search reaches anyway.
inline void set_process_defaults(int, char**, char**) {
  setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

__attribute__((section(".preinit_array"), used)) static void (*const kPreinitProcessDefaults)(int, char**, char**) =
    &set_process_defaults;

}  // namespace mmu::cli
