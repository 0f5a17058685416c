// Process-wide settings every executable wants before any library runs.
// Compiled into every executable that links mmu_app_common (an INTERFACE
// source of it, CMakeLists.txt): nothing includes it, so it cannot be linked
// twice, and no executable can forget it.

#include <malloc.h>
#include <unistd.h>  // environ

#include <cstring>

namespace mmu::cli {

// glibc hands blocks over ~128 kB to mmap and returns them to the kernel when
// freed (raising that limit only up to 32 MB as it goes), and trims the heap
// top above 128 kB. A model's activations are such blocks, allocated and freed
// on every call, so every call page-faults its activations in again: the
// SpecFormer replica ran 2.2x slower per object for it (63 vs 29 ms,
// python3-torch alike; docs/BENCHMARKS.md). Keeping freed memory for reuse
// costs at most the peak working set, which a build or a search reaches anyway.
void set_process_defaults(int, char**, char**) {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

__attribute__((section(".preinit_array"), used)) static void (*const kPreinitProcessDefaults)(int, char**, char**) =
    &set_process_defaults;

}  // namespace mmu::cli

// OpenMP threads spin ~300,000 times between parallel regions unless
// OMP_WAIT_POLICY says otherwise: on 2 cores the spinning thread takes the core
// that the other team, or the next serial step, wants (the nearest
// cross-match: ~20% of its CPU). libgomp reads the variable with getenv in its
// initialiser, and no setenv of ours can come first: .preinit_array runs
// before libc's initialiser, which resets environ to the process's original
// array (OMP_DISPLAY_ENV showed GOMP_SPINCOUNT '300000'), and the executable's
// own constructors run after libgomp's. So the executable defines getenv: the
// dynamic linker binds every library's getenv to it. It looks names up as
// glibc's does, except that OMP_WAIT_POLICY reads "PASSIVE" where the user set
// neither it nor GOMP_SPINCOUNT (both still win when set).
// tests/py/test_omp_wait_policy.py checks libgomp's view through OMP_DISPLAY_ENV.
extern "C" char* getenv(const char* name) noexcept {
  const size_t length = std::strlen(name);
  if (length == 0 || environ == nullptr) return nullptr;
  auto lookup = [](const char* key, size_t n) -> char* {
    for (char** e = environ; *e != nullptr; ++e)
      if (std::strncmp(*e, key, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return nullptr;
  };
  if (char* value = lookup(name, length)) return value;
  static char passive[] = "PASSIVE";
  constexpr char kPolicy[] = "OMP_WAIT_POLICY", kSpin[] = "GOMP_SPINCOUNT";
  if (length == sizeof(kPolicy) - 1 && std::memcmp(name, kPolicy, length) == 0 &&
      lookup(kSpin, sizeof(kSpin) - 1) == nullptr)
    return passive;
  return nullptr;
}
