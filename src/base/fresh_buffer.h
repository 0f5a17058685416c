// Arrays for parallel loops over millions of items: left uninitialised, on
// 2 MB pages where the kernel has them, and mapped in one system call per
// thread rather than one page fault per page.
#pragma once

#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

namespace mmu {

// In this VM (Firecracker, 2026-12) the first write to a fresh 4 KB page costs
// ~12 us, to a 2 MB transparent huge page ~80 us (0.3 us per 4 KB): 256 MB
// written once took 760 ms on 4 KB pages and 25 ms on 2 MB ones. So buffers
// of a few MB and more ask for huge pages before they are first written.
inline constexpr size_t kHugePage = size_t{2} << 20;

// Asks for 2 MB pages in the whole 2 MB-aligned pages of [p, p + bytes).
// Best effort: where transparent huge pages are off (or "never"), or the
// kernel has no free 2 MB page at a fault, pages are 4 KB as before. Only
// pages not yet written change; memory already in use is left as it is.
inline void advise_huge_pages(void* p, size_t bytes) {
#ifdef MADV_HUGEPAGE
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHugePage - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

// Maps the pages of [p, p + bytes) in one system call where writing them
// would take a page fault each. Best effort: before Linux 5.14 madvise refuses
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

// Uninitialised room for n items of trivial type T; from 1 MB on, aligned to
// 2 MB and on huge pages (see kHugePage). Free with std::free.
template <typename T>
T* allocate_fresh(int64_t n) {
  const size_t bytes = static_cast<size_t>(n) * sizeof(T);
  if (bytes < kHugePage / 2) return static_cast<T*>(std::malloc(bytes == 0 ? 1 : bytes));
  const size_t rounded = (bytes + kHugePage - 1) & ~(kHugePage - 1);
  void* p = std::aligned_alloc(kHugePage, rounded);
  if (p == nullptr) throw std::bad_alloc();
  advise_huge_pages(p, rounded);
  return static_cast<T*>(p);
}

// Room for n items in *v, fresh storage on huge pages when large: a vector
// read into or filled by parallel loops. Items held are kept.
template <typename T, typename Allocator>
void reserve_fresh(std::vector<T, Allocator>* v, size_t n) {
  if (v->capacity() >= n) return;
  std::vector<T, Allocator> fresh;
  fresh.reserve(n);
  advise_huge_pages(fresh.data(), n * sizeof(T));
  fresh.insert(fresh.end(), v->begin(), v->end());
  v->swap(fresh);
}

// reserve_fresh, then n items (new ones value-initialised, or unset in a Column).
template <typename T, typename Allocator>
void resize_fresh(std::vector<T, Allocator>* v, size_t n) {
  reserve_fresh(v, n);
  v->resize(n);
}

// resize_fresh for items about to be written on this thread (a read, a fill):
// the new items' pages are mapped in one system call first. A vector's storage
// is not 2 MB-aligned, so up to 2 MB at each end stays on 4 KB pages, each a
// page fault of ~12 us here when first written (measured: 6 vectors of 8 MB
// written once took 31-50 ms so, 43-90 ms without).
template <typename T, typename Allocator>
void resize_populated(std::vector<T, Allocator>* v, size_t n, const T& value) {
  reserve_fresh(v, n);
  if (n > v->size()) populate(v->data() + v->size(), (n - v->size()) * sizeof(T));
  v->resize(n, value);
}

// The same, the new items value-initialised (a memset for numbers, where
// resize(n, T()) fills them one by one at twice the cost), or in a Column
// (mmu/column.h) left unset for a read to fill.
template <typename T, typename Allocator>
void resize_populated(std::vector<T, Allocator>* v, size_t n) {
  reserve_fresh(v, n);
  if (n > v->size()) populate(v->data() + v->size(), (n - v->size()) * sizeof(T));
  v->resize(n);
}

// An array left uninitialised, to be filled by parallel loops: a vector would
// have one thread zero (and page-fault) all of it first, tens of MB per match
// (measured: a third of the index build's wall time on 2 threads).
template <typename T>
class Buffer {
 public:
  explicit Buffer(int64_t n = 0) : data_(allocate_fresh<T>(n)) {}
  T& operator[](int64_t i) { return data_[i]; }
  const T& operator[](int64_t i) const { return data_[i]; }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T[], Free> data_;
};

}  // namespace mmu
