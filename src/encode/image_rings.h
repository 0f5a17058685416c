// Orientation-free description of one image band (issue 15: a galaxy has no
// preferred orientation on the sky). The disc inscribed in a square crop is cut
// into concentric rings; per ring, the mean of the asinh-stretched pixels and
// the moduli of their angular Fourier modes m = 1..modes. A rotation about the
// centre only shifts each mode's phase and a flip conjugates it, so all these
// numbers are unchanged by the eight 90-degree/flip copies exactly and by any
// rotation up to resampling.
#pragma once

#include <cstdint>
#include <vector>

namespace mmu {

class RingGeometry {
 public:
  // A crop x crop square; rings of equal width out to crop / 2.
  RingGeometry(int64_t crop, int64_t rings, int64_t modes);

  int64_t crop() const { return crop_; }
  int64_t features() const { return rings_ * (modes_ + 1); }

  // out[features()] = ring means (rings values), then for m = 1..modes the
  // moduli |mean of v * exp(-i m theta)| per ring. px/ok point at the crop's
  // top-left pixel of a plane `stride` pixels wide; pixels with ok == 0 are
  // skipped (a ring without a usable pixel gives 0s). Returns false when an
  // unmasked pixel of the crop is not finite (it is skipped too).
  bool describe(const float* px, const uint8_t* ok, int64_t stride, double inv_softening, float* out) const;

 private:
  int64_t crop_, rings_, modes_;
  std::vector<int32_t> ring_;   // crop * crop: ring of each pixel, -1 outside the disc
  std::vector<double> cos_, sin_;  // crop * crop * modes: cos(m theta), sin(m theta)
};

}  // namespace mmu
