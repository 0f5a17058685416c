// Gappy PCA's fill model (issue 15 point 3): it survives serialisation, the
// projection's own bytes stay readable alone, and a masked spectrum that the
// model describes gets its gap back where interpolation cannot.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <vector>

#include "mmu/error.h"
#include "mmu/pca.h"
#include "mmu/preprocess.h"

namespace {

constexpr int64_t kBins = 64, kSpectra = 200;

// Continuum + three smooth shapes with random amplitudes + small noise (sigma
// 0.01, so ivar 1e4): a family a few PCA components describe.
void spectra(std::vector<float>* values, std::vector<float>* weights) {
  std::mt19937 rng(15);
  std::normal_distribution<float> amp(0.0f, 1.0f), noise(0.0f, 0.01f);
  values->resize(kSpectra * kBins);
  weights->assign(kSpectra * kBins, 1e4f);
  for (int64_t i = 0; i < kSpectra; ++i) {
    const float a = amp(rng), b = amp(rng), c = amp(rng);
    for (int64_t j = 0; j < kBins; ++j) {
      const double t = static_cast<double>(j) / kBins;
      (*values)[i * kBins + j] = static_cast<float>(10.0 + a * std::sin(3.0 * t) + b * std::cos(7.0 * t) +
                                                    c * std::exp(-20.0 * (t - 0.5) * (t - 0.5))) +
                                 noise(rng);
    }
  }
}

}  // namespace

TEST_CASE("gappy fill model: round trip, projection bytes unchanged, damage refused", "[pca][gappy]") {
  std::vector<float> v, w;
  spectra(&v, &w);
  const mmu::PcaModel m = mmu::fit_spectrum_pca(v.data(), w.data(), kSpectra, kBins, 4);
  CHECK(m.output_dim == 4);
  CHECK(m.fill_dim == 16);  // min(4 k, bins / 2)
  CHECK(m.residual_variance >= 0.0f);
  const std::string bytes = mmu::serialize_pca(m);
  const mmu::PcaModel back = mmu::parse_pca(bytes, "fit.bin");
  CHECK(back.components == m.components);
  CHECK(back.variances == m.variances);
  CHECK(back.fill_dim == m.fill_dim);
  CHECK(back.residual_variance == m.residual_variance);
  // The projection alone, as a reader that knows only "MMUPCA01" sees it.
  mmu::PcaModel projection = m;
  projection.fill_dim = 0;
  projection.components.resize(static_cast<size_t>(4 * kBins));
  projection.variances.resize(4);
  const std::string base = mmu::serialize_pca(projection);
  CHECK(bytes.compare(0, base.size(), base) == 0);
  CHECK(mmu::parse_pca(base, "fit.bin").fill_dim == 0);
  CHECK_THROWS_WITH(mmu::parse_pca(bytes.substr(0, bytes.size() - 4), "x/fit.bin"), Catch::Contains("x/fit.bin"));
}

TEST_CASE("gappy fill recovers a masked spectrum the model describes, better than interpolation", "[pca][gappy]") {
  std::vector<float> v, w;
  spectra(&v, &w);
  const mmu::PcaModel m = mmu::fit_spectrum_pca(v.data(), w.data(), kSpectra, kBins, 4);
  std::vector<double> errs, errs_interp;
  int better = 0;
  for (int64_t i = 0; i < 10; ++i) {
    const float* full = v.data() + i * kBins;
    std::vector<float> want(kBins), got(kBins), interpolated(kBins), gap(w.begin() + i * kBins, w.begin() + (i + 1) * kBins);
    std::fill(gap.begin() + 20, gap.begin() + 46, 0.0f);  // 40 % masked, the central bump's peak included
    mmu::standardise_spectra(full, nullptr, 1, kBins, want.data());
    REQUIRE(mmu::gappy_spectrum_features(m, full, gap.data(), 1, got.data()) == -1);
    mmu::standardise_spectra(full, gap.data(), 1, kBins, interpolated.data());
    double err = 0.0, err_interp = 0.0;
    for (int64_t j = 0; j < kBins; ++j) {
      err += (double(got[j]) - want[j]) * (double(got[j]) - want[j]);
      err_interp += (double(interpolated[j]) - want[j]) * (double(interpolated[j]) - want[j]);
    }
    err = std::sqrt(err / kBins);
    err_interp = std::sqrt(err_interp / kBins);
    INFO("spectrum " << i << ": gappy rms error " << err << ", interpolation " << err_interp);
    // Not exact everywhere: where the visible bins leave the bump's height
    // open, the posterior mean leans on the prior.
    better += err < err_interp;
    errs.push_back(err);
    errs_interp.push_back(err_interp);
    // A fully covered spectrum: exactly standardise_spectra's features.
    REQUIRE(mmu::gappy_spectrum_features(m, full, w.data() + i * kBins, 1, got.data()) == -1);
    CHECK(got == want);
  }
  std::nth_element(errs.begin(), errs.begin() + 5, errs.end());
  std::nth_element(errs_interp.begin(), errs_interp.begin() + 5, errs_interp.end());
  INFO("median rms error: gappy " << errs[5] << ", interpolation " << errs_interp[5]);
  CHECK(better >= 8);  // where interpolation wins, the masked stretch happens to be near-linear
  CHECK(errs[5] < 0.05);
  CHECK(errs[5] < 0.25 * errs_interp[5]);
}
