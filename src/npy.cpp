#include "mmu/npy.h"

#include "file_util.h"

namespace mmu {

void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  std::string dims;
  int64_t n = 1;
  for (int64_t v : shape) {
    dims += std::to_string(v) + ", ";
    n *= v;
  }
  if (shape.size() > 1) dims.erase(dims.size() - 2);  // "(3,)" keeps its comma, "(3, 4)" does not
  else if (!shape.empty()) dims.erase(dims.size() - 1);
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64, ending in '\n'.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n) * sizeof(float));
  files::write_atomic(path, out);
}

}  // namespace mmu
