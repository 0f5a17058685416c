// Include in exactly one file of each executable.
//
// OpenMP threads (ours, OpenBLAS's, FAISS's) busy-wait between parallel
// regions by default. On 2 cores, or any loaded machine, a spinning thread
// steals the core the reading thread needs: a build ran 3x slower for it.
// libgomp reads OMP_WAIT_POLICY when it is loaded, before main(), so we set
// the default from .preinit_array, which runs before any library initialiser.
// A value the user set is kept.
#pragma once

#include <cstdlib>

namespace mmu::cli {

inline void set_omp_defaults(int, char**, char**) { setenv("OMP_WAIT_POLICY", "PASSIVE", 0); }

__attribute__((section(".preinit_array"), used)) static void (*const kPreinitOmpDefaults)(int, char**, char**) =
    &set_omp_defaults;

}  // namespace mmu::cli
