// Arrays for parallel loops over millions of items: left uninitialised, and
// mapped in one system call per thread rather than one page fault per page.
#pragma once

#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace mmu {

// Maps the pages of [p, p + bytes) in one system call where writing them
// would take a page fault each (~2.5 us in a VM, or a fifth of a match's time
// in fresh buffers). Best effort: before Linux 5.14 madvise refuses
// MADV_POPULATE_WRITE, and the first write maps each page as usual.
inline void populate(void* p, size_t bytes) {
#ifdef MADV_POPULATE_WRITE
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(page - 1);
  if (end > begin + 16 * page) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
#endif
}

// Inside a parallel region: each thread populates its share of [data, data + n).
template <typename T>
void populate_share(T* data, int64_t n) {
  const int64_t t = omp_get_thread_num(), threads = omp_get_num_threads();
  populate(data + n * t / threads, static_cast<size_t>(n * (t + 1) / threads - n * t / threads) * sizeof(T));
}

// An array left uninitialised, to be filled by parallel loops: a vector would
// have one thread zero (and page-fault) all of it first, tens of MB per match
// (measured: a third of the index build's wall time on 2 threads).
template <typename T>
class Buffer {
 public:
  explicit Buffer(int64_t n = 0) : data_(new T[static_cast<size_t>(n)]) {}
  T& operator[](int64_t i) { return data_[i]; }
  const T& operator[](int64_t i) const { return data_[i]; }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }

 private:
  std::unique_ptr<T[]> data_;
};

}  // namespace mmu
