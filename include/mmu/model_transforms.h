// The published preprocessing of the foundation models, as named transforms.
// Each maps a batch read by MmuFileReader to the exact tensor the model takes.
// Masks are applied with each survey's polarity before the transform:
// unusable image pixels become 0 (sky level), unusable spectrum pixels are
// linearly interpolated from their usable neighbours (the published code has
// no masks; these are our rules, and the reference tests implement them too).
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mmu/mmu_files.h"

namespace mmu {

// AstroCLIP image (Parker et al. 2024; Legacy Survey viewer RGB): g, r, z
// scaled, asinh(Q*I)/sqrt(Q) stretch on the band mean I, clipped to [0, 1],
// centre crop, channels (z, r, g), no transpose.
struct AstroclipImageParams {
  int64_t crop = 144;
  double q = 20.0;     // Q, hard-coded in the published ToRGB
  double m = 0.03;
  double scale_g = 6.0, scale_r = 3.4, scale_z = 2.2;
};
// out: count x 3 x crop x crop. Throws FormatError naming a missing band.
void astroclip_image(const ImageBatch& b, const AstroclipImageParams& p, float* out);

// SpecFormer (AstroCLIP spectrum tower): standardise with the mean and the
// unbiased std floored at 0.2, cut windows of 20 with stride 10 (the last,
// short window dropped), left-pad features by 2 and prepend a statistics token
// [(mean-2)/2, (std-2)/8, 0, ...].
struct SpecformerParams {
  int64_t section = 20;
  int64_t stride = 10;
  double std_floor = 0.2;
};
int64_t specformer_tokens(int64_t length, const SpecformerParams& p);  // 778 for 7781
// out: count x specformer_tokens(length) x (section + 2).
void specformer_spectrum(const SpectrumBatch& b, const SpecformerParams& p, float* out);

// AION-1 image codec input: centre crop 96, per-band clamp to +-{g 6, r 15,
// i 20, z 25}, range compression asinh(x/0.01)*0.1; bands g, r, i, z.
struct AionImageParams {
  int64_t crop = 96;
  double clamp_g = 6.0, clamp_r = 15.0, clamp_i = 20.0, clamp_z = 25.0;
};
// out: count x 4 x crop x crop.
void aion_image(const ImageBatch& b, const AionImageParams& p, float* out);

// Index of band "g", "r", "i" or "z" in the batch (the image_band name whose
// MMU table filter it is, mmu/image_bands.h; the g,r,i,z position when the
// batch has no names), or -1.
int64_t find_band(const ImageBatch& b, char band);

}  // namespace mmu
