// The gallery's page files (web/), embedded in mmu-search at build time by
// cmake/embed_files.cmake: the page works offline with no install step.
#pragma once

#include <cstddef>

namespace mmu::cli {

struct WebAsset {
  const char* name;  // path under web/, e.g. "gallery.js"
  const unsigned char* data;
  size_t size;
};
extern const WebAsset kWebAssets[];
extern const size_t kNumWebAssets;

}  // namespace mmu::cli
