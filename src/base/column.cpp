#include "mmu/column.h"

#include <cstdlib>
#include <new>

#include "base/fresh_buffer.h"

namespace mmu {

void* allocate_column_bytes(size_t bytes) {
  if (bytes < kHugePage / 2) {
    void* p = std::malloc(bytes == 0 ? 1 : bytes);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  const size_t rounded = (bytes + kHugePage - 1) & ~(kHugePage - 1);
  if (rounded < bytes) throw std::bad_alloc();
  void* p = std::aligned_alloc(kHugePage, rounded);
  if (p == nullptr) throw std::bad_alloc();
  advise_huge_pages(p, rounded);
  return p;
}

void free_column_bytes(void* p) noexcept { std::free(p); }

}  // namespace mmu
