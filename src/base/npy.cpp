#include "mmu/npy.h"

#include <cstring>

#include "base/file_util.h"
#include "mmu/error.h"

namespace mmu {

std::vector<float> read_npy_f32(const std::string& path, std::vector<int64_t>* shape) {
  const std::string bytes = files::read_all(path);
  auto bad = [&](const std::string& why) { return FormatError("'" + path + "' is not a readable .npy file: " + why); };
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw bad("no NUMPY magic");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw bad("truncated header");
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    start = 12;
  } else {
    throw bad("format version " + std::to_string(major));
  }
  if (bytes.size() < start + header_len) throw bad("truncated header");
  const std::string header = bytes.substr(start, header_len);
  auto value_of = [&](const std::string& key) {
    const size_t k = header.find("'" + key + "'");
    if (k == std::string::npos) throw bad("no '" + key + "' in the header");
    return header.substr(header.find(':', k) + 1);
  };
  const std::string descr = value_of("descr");
  const bool f4 = descr.find("'<f4'") != std::string::npos, f8 = descr.find("'<f8'") != std::string::npos;
  if (!f4 && !f8) throw bad("dtype must be float32 or float64 (little-endian)");
  const std::string order = value_of("fortran_order");
  if (order.find_first_not_of(' ') != std::string::npos && order.compare(order.find_first_not_of(' '), 4, "True") == 0)
    throw bad("Fortran order");
  const std::string sh = value_of("shape");
  const size_t open = sh.find('('), close = sh.find(')');
  if (open == std::string::npos || close == std::string::npos) throw bad("no shape");
  shape->clear();
  int64_t n = 1;
  std::string cur;
  for (size_t i = open + 1; i <= close; ++i) {
    const char c = sh[i];
    if (c >= '0' && c <= '9') {
      cur += c;
    } else if (c == ',' || c == ')') {
      if (!cur.empty()) {
        shape->push_back(std::stoll(cur));
        n *= shape->back();
        cur.clear();
      }
    } else if (c != ' ') {
      throw bad("bad shape");
    }
  }
  const size_t elem = f4 ? 4 : 8, data_start = start + header_len;
  if (bytes.size() != data_start + static_cast<size_t>(n) * elem)
    throw bad("holds " + std::to_string(bytes.size() - data_start) + " data bytes, its shape needs " +
              std::to_string(static_cast<size_t>(n) * elem));
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (f4) {
      std::memcpy(&out[i], bytes.data() + data_start + i * 4, 4);
    } else {
      double d;
      std::memcpy(&d, bytes.data() + data_start + i * 8, 8);
      out[i] = static_cast<float>(d);
    }
  }
  return out;
}

std::string npy_header_f32(const std::vector<int64_t>& shape) {
  std::string dims;
  for (int64_t v : shape) dims += std::to_string(v) + ", ";
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
  return out + header;
}

void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  int64_t n = 1;
  for (int64_t v : shape) n *= v;
  std::string out = npy_header_f32(shape);
  out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n) * sizeof(float));
  files::write_atomic(path, out);
}

}  // namespace mmu
