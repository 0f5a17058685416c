// Baseline, weight-free feature transforms: turn one image or spectrum into a
// fixed-length feature vector that a PCA then projects. Pure functions over
// batches; thread-safe; parallel inside (OpenMP over objects).
#pragma once

#include <cstdint>
#include <vector>

#include "mmu/mmu_files.h"

namespace mmu {

struct ImageFeatureOptions {
  double crop_arcsec = 25.152;  // centre field kept: 96 legacysurvey pixels of 0.262"
  double default_scale = 0.262; // arcsec/pixel when the file has no image_scale
  int64_t rings = 24;           // concentric rings out to the crop's edge (2 px wide at 96 px)
  int64_t modes = 4;            // angular Fourier modes m = 1..modes kept per ring
  float softening = 0.01f;      // asinh softening in image units (~ sky noise in nanomaggies)
};

// The features take the bands of the batch's space in its order
// (ImageBatch::space_bands: g, r, i, z through the MMU band table for the
// shared `image` space of legacysurvey and hsc; see mmu/image_bands.h), or
// every band in file order when the batch names none.
inline constexpr int64_t kImageBands = 4;  // the `image` space's g, r, i, z
int64_t image_feature_dim(const ImageFeatureOptions& opt, int64_t bands = kImageBands);
std::vector<int64_t> image_feature_bands(const ImageBatch& batch);

// Writes batch.count rows of image_feature_dim floats to out: the centre
// crop_arcsec field (pixel scale from the file), asinh stretch, then per band
// and ring of the disc inscribed in the crop the mean and the moduli of the
// angular Fourier modes (encode/image_rings.h), masked pixels ignored (a ring
// with none usable is 0), each row scaled to unit L2 norm so brightness does
// not dominate shape. A galaxy rotated or flipped about the centre gives the
// same row (issue 15); morphology (concentration, ellipticity, arms, colour
// gradients) stays in the profiles and modes.
// Returns -1, or the index of the first object with a NaN/Inf unmasked pixel
// (masked non-finite pixels are expected in real data and ignored).
int64_t image_features(const ImageBatch& batch, const ImageFeatureOptions& opt, float* out);

struct SpectrumFeatureOptions {
  double lambda_min = 3600.0;  // Angstrom; DESI's b+r+z coadd range
  double lambda_max = 9825.0;
  int64_t bins = 512;          // log-spaced common grid (~590 km/s per bin)
};

int64_t spectrum_feature_dim(const SpectrumFeatureOptions& opt);

// Rebins each spectrum onto the common log-lambda grid: values (batch.count x
// bins) are the inverse-variance weighted means of usable pixels, weights the
// summed ivar of each bin (0, with value 0, for a bin no usable pixel reaches).
// Returns -1, or the index of the first object with a NaN/Inf flux in a usable
// pixel, or with no usable pixel at all (its row is all 0).
int64_t spectrum_bins(const SpectrumBatch& batch, const SpectrumFeatureOptions& opt, float* values, float* weights);

// out (n x bins) = each row of values with its empty bins (weight 0) filled by
// linear interpolation (edge value beyond the ends), then standardised (zero
// mean, unit std). weights == nullptr: no bin is empty. out may be values.
void standardise_spectra(const float* values, const float* weights, int64_t n, int64_t bins, float* out);

// spectrum_bins then standardise_spectra: features with gaps interpolated.
// The spectrum baseline itself fills gaps by gappy PCA (mmu/pca.h) instead.
int64_t spectrum_features(const SpectrumBatch& batch, const SpectrumFeatureOptions& opt, float* out);

struct LightCurveFeatureOptions {
  double phase_min = -30.0;  // days from the brightest point
  double phase_max = 90.0;
  int64_t phase_bins = 12;
};

// Band-agnostic light-curve shape: brightness relative to the peak (magnitudes;
// fluxes converted with a 1-sigma floor) averaged in phase bins around the
// brightest point, plus the number of bands, points and the time span.
// Returns -1, or the first object with no usable point or a NaN in one.
int64_t light_curve_feature_dim(const LightCurveFeatureOptions& opt);
int64_t light_curve_features(const LightCurveBatch& batch, const LightCurveFeatureOptions& opt, float* out);

// Gaia XP coefficients scaled to unit norm (shape, not brightness).
// Returns -1, or the first object with a non-finite or all-zero vector.
int64_t xp_features(const CoeffBatch& batch, float* out);

}  // namespace mmu
