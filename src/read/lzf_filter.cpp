// HDF5 filter 32000 (LZF, as h5py writes it for MMU's legacysurvey files),
// registered in-process on liblzf. Debian's hdf5-plugin-lzf is built without
// liblzf and fails to load, so we never rely on it.
#include <hdf5.h>
#include <lzf.h>

#include <cerrno>
#include <cstdlib>

namespace mmu {
namespace {

constexpr H5Z_filter_t kLzfFilterId = 32000;

// Same contract as h5py's lzf_filter: cd_values[2], when present, holds the
// uncompressed chunk size; otherwise we grow the buffer until it fits.
size_t lzf_filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[], size_t nbytes,
                  size_t* buf_size, void** buf) {
  if (flags & H5Z_FLAG_REVERSE) {
    size_t out_size = (cd_nelmts >= 3 && cd_values[2] != 0) ? cd_values[2] : *buf_size;
    for (int attempt = 0; attempt < 32; ++attempt) {
      void* out = std::malloc(out_size);
      if (!out) return 0;
      unsigned n = lzf_decompress(*buf, static_cast<unsigned>(nbytes), out, static_cast<unsigned>(out_size));
      if (n != 0) {
        std::free(*buf);
        *buf = out;
        *buf_size = out_size;
        return n;
      }
      std::free(out);
      if (errno != E2BIG) return 0;  // corrupt data
      out_size *= 2;
    }
    return 0;
  }
  // Compression: if LZF cannot shrink the chunk, fail so HDF5 stores it raw
  // (the filter is registered optional by h5py's writer and ours alike).
  size_t out_size = nbytes;
  void* out = std::malloc(out_size);
  if (!out) return 0;
  unsigned n = lzf_compress(*buf, static_cast<unsigned>(nbytes), out, static_cast<unsigned>(out_size));
  if (n == 0) {
    std::free(out);
    return 0;
  }
  std::free(*buf);
  *buf = out;
  *buf_size = out_size;
  return n;
}

}  // namespace

void register_lzf_filter() {
  static const H5Z_class2_t kClass = {
      H5Z_CLASS_T_VERS, kLzfFilterId, 1, 1, "lzf", nullptr, nullptr, lzf_filter,
  };
  // Registering replaces any plugin HDF5 may have found for the same id.
  H5Zregister(&kClass);
}

}  // namespace mmu
