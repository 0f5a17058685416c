// Columns of millions of numbers read from files (a cross-match side's ids and
// positions), and a read-only view that takes them or a plain std::vector.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <utility>
#include <vector>

namespace mmu {

// Room for a column (src/base/column.cpp): from 1 MB on, aligned to 2 MB and
// on huge pages where the kernel has them, so that no 4 KB page is faulted at
// either end (each fresh page costs a fault and a clear). Throws bad_alloc.
void* allocate_column_bytes(size_t bytes);
void free_column_bytes(void* p) noexcept;

// std::allocator, except that an item made without a value is left unset
// (default-initialised) instead of zeroed: a column is sized and then read
// into, so zeroing it first only writes its memory twice (measured: 8% of the
// nearest cross-match command's CPU for its 48 MB of ids and positions); and
// its storage is allocate_column_bytes'.
template <typename T>
class UnsetAllocator : public std::allocator<T> {
 public:
  T* allocate(size_t n) { return static_cast<T*>(allocate_column_bytes(n * sizeof(T))); }
  T* allocate(size_t n, const void*) { return allocate(n); }  // hides std::allocator's, which deallocate cannot free
  void deallocate(T* p, size_t) noexcept { free_column_bytes(p); }

  template <typename U>
  struct rebind {
    using other = UnsetAllocator<U>;
  };
  UnsetAllocator() noexcept = default;
  template <typename U>
  UnsetAllocator(const UnsetAllocator<U>&) noexcept {}

  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

// A std::vector whose resize(n) leaves the new numbers unset (resize(n, v)
// and every other way of adding items set them as usual).
template <typename T>
using Column = std::vector<T, UnsetAllocator<T>>;

// A read-only view of a column's items, or of a std::vector's: valid while
// the column lives and is not resized.
template <typename T>
class ColumnView {
 public:
  template <typename Allocator>
  ColumnView(const std::vector<T, Allocator>& v) noexcept : data_(v.data()), size_(v.size()) {}  // NOLINT: implicit
  ColumnView(const T* data, size_t size) noexcept : data_(data), size_(size) {}

  const T* data() const { return data_; }
  size_t size() const { return size_; }
  const T& operator[](size_t i) const { return data_[i]; }

 private:
  const T* data_;
  size_t size_;
};

}  // namespace mmu
