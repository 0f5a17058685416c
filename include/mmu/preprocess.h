// Baseline, weight-free feature transforms: turn one image or spectrum into a
// fixed-length feature vector that a PCA then projects. Pure functions over
// batches; thread-safe; parallel inside (OpenMP over objects).
#pragma once

#include <cstdint>

#include "mmu/mmu_files.h"

namespace mmu {

struct ImageFeatureOptions {
  int64_t crop = 96;         // centre crop (pixels); galaxies sit at the cutout centre
  int64_t block = 4;         // block-average factor after the crop (96/4 = 24x24 per band)
  float softening = 0.01f;   // asinh softening in image units (~ sky noise in nanomaggies)
};

// Feature length for `bands` bands.
int64_t image_feature_dim(int64_t bands, const ImageFeatureOptions& opt);

// Writes batch.count rows of image_feature_dim floats to out: asinh stretch,
// masked pixels ignored in each block average (a fully masked block is 0),
// then each row scaled to unit L2 norm so brightness does not dominate shape.
// Returns -1, or the index of the first object with a NaN/Inf unmasked pixel
// (masked non-finite pixels are expected in real data and ignored).
int64_t image_features(const ImageBatch& batch, const ImageFeatureOptions& opt, float* out);

struct SpectrumFeatureOptions {
  double lambda_min = 3600.0;  // Angstrom; DESI's b+r+z coadd range
  double lambda_max = 9825.0;
  int64_t bins = 512;          // log-spaced common grid (~590 km/s per bin)
};

int64_t spectrum_feature_dim(const SpectrumFeatureOptions& opt);

// Rebins each spectrum onto the common log-lambda grid (inverse-variance
// weighted means of usable pixels; empty bins interpolated), standardises it
// (zero mean, unit std) and writes batch.count rows to out. Returns -1, or the
// index of the first object with a NaN/Inf flux in a usable pixel, or with no
// usable pixel at all.
int64_t spectrum_features(const SpectrumBatch& batch, const SpectrumFeatureOptions& opt, float* out);

}  // namespace mmu
