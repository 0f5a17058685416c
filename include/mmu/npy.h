// NumPy .npy files (format 1.0, little-endian float32, C order): what a
// Python user loads with np.load. Written atomically (temp + rename).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmu {

// Reads a float32 or float64 .npy (little-endian, C order) as floats; its shape
// goes to *shape. Throws FormatError naming the file for anything else.
std::vector<float> read_npy_f32(const std::string& path, std::vector<int64_t>* shape);

// The header of a .npy holding a little-endian float32 C-order array of
// `shape`: the product of shape floats follow it, so a writer may stream them.
std::string npy_header_f32(const std::vector<int64_t>& shape);

// shape's product floats at `data` as a .npy file at `path`.
void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data);

}  // namespace mmu
