// NumPy .npy files (format 1.0, little-endian float32, C order): what a
// Python user loads with np.load. Written atomically (temp + rename).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmu {

void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data);

}  // namespace mmu
