// mmu_bench_stages: where `mmu-index build` spends its time, stage by stage,
// using the same public calls as src/ingest/build.cpp but writing nothing.
//
//   mmu_bench_stages ROOT... [--batch-size 64] [--dim 64]
//
// Prints one JSON object: per modality, objects and seconds for HDF5 reads
// (MmuFileReader::read_images / read_spectra, LZF decompression included),
// features (image_features; spectrum_bins for spectra), the fit (fit_pca;
// fit_spectrum_pca), the gappy fill of spectra's empty bins
// (gappy_spectrum_features) and project_pca, plus the catalog pass (open + read_catalog). The catalog, FAISS index and
// SQLite writes of a real build are not included: the difference between the
// sum here and `mmu-index build`'s wall time is roughly their cost.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "mmu/error.h"
#include "mmu/mmu_files.h"
#include "mmu/pca.h"
#include "mmu/preprocess.h"

namespace {

using Clock = std::chrono::steady_clock;
double sec_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Stage {
  int64_t objects = 0, dim = 0;
  double read = 0, features = 0, fit = 0, fill = 0, project = 0;
  std::vector<float> x, weights;  // weights: spectra only (the bins' summed ivar)
};

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> roots;
  int64_t batch = 64, dim = 64;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--batch-size" || a == "--dim") && i + 1 < argc) {
      (a == "--dim" ? dim : batch) = std::atoll(argv[++i]);
    } else if (!a.empty() && a[0] == '-') {
      std::cerr << "usage: mmu_bench_stages ROOT... [--batch-size 64] [--dim 64]\n";
      return 2;
    } else {
      roots.push_back(a);
    }
  }
  if (roots.empty() || batch < 1 || dim < 1) {
    std::cerr << "usage: mmu_bench_stages ROOT... [--batch-size 64] [--dim 64]\n";
    return 2;
  }
  try {
    const auto t_all = Clock::now();
    double catalog_s = 0;
    std::map<std::string, Stage> stages;
    const mmu::ImageFeatureOptions iopt;
    const mmu::SpectrumFeatureOptions sopt;
    mmu::ImageBatch images;
    mmu::SpectrumBatch spectra;
    for (const mmu::SourceFile& f : mmu::discover_files(roots)) {
      auto t0 = Clock::now();
      mmu::MmuFileReader reader(f);
      (void)reader.read_catalog();
      catalog_s += sec_since(t0);
      if (reader.modality() == mmu::Modality::kNone) continue;
      Stage& st = stages[mmu::modality_name(reader.modality())];
      const int64_t n = reader.rows();
      for (int64_t start = 0; start < n; start += batch) {
        const int64_t count = std::min(batch, n - start);
        t0 = Clock::now();
        if (reader.modality() == mmu::Modality::kImage) {
          reader.read_images(start, count, &images);
          st.read += sec_since(t0);
          st.dim = mmu::image_feature_dim(iopt);
          st.x.resize(static_cast<size_t>((st.objects + count) * st.dim));
          t0 = Clock::now();
          mmu::image_features(images, iopt, st.x.data() + st.objects * st.dim);
        } else {
          reader.read_spectra(start, count, &spectra);
          st.read += sec_since(t0);
          st.dim = mmu::spectrum_feature_dim(sopt);
          st.x.resize(static_cast<size_t>((st.objects + count) * st.dim));
          st.weights.resize(st.x.size());
          t0 = Clock::now();
          // As a build: raw bins and weights; the gappy fill below standardises them.
          mmu::spectrum_bins(spectra, sopt, st.x.data() + st.objects * st.dim,
                             st.weights.data() + st.objects * st.dim);
        }
        st.features += sec_since(t0);
        st.objects += count;
      }
    }
    for (auto& [name, st] : stages) {
      if (st.objects < 2) continue;
      auto t0 = Clock::now();
      const bool spectra = !st.weights.empty();
      const mmu::PcaModel m = spectra ? mmu::fit_spectrum_pca(st.x.data(), st.weights.data(), st.objects, st.dim, dim)
                                      : mmu::fit_pca(st.x.data(), st.objects, st.dim, dim);
      st.fit = sec_since(t0);
      std::vector<float> filled;
      if (spectra) {
        filled.resize(st.x.size());
        t0 = Clock::now();
        const int64_t bad = mmu::gappy_spectrum_features(m, st.x.data(), st.weights.data(), st.objects, filled.data());
        st.fill = sec_since(t0);
        if (bad >= 0) throw mmu::FormatError("the gappy fill failed at object " + std::to_string(bad));
      }
      std::vector<float> out(static_cast<size_t>(st.objects * m.output_dim));
      t0 = Clock::now();
      mmu::project_pca(m, spectra ? filled.data() : st.x.data(), st.objects, out.data());
      st.project = sec_since(t0);
    }
    const char* coretype = std::getenv("OPENBLAS_CORETYPE");
    std::cout << "{\"openblas_coretype\": \"" << (coretype ? coretype : "") << "\", \"catalog_s\": " << catalog_s
              << ", \"total_s\": " << sec_since(t_all) << ", \"spaces\": {";
    bool first = true;
    for (const auto& [name, st] : stages) {
      std::cout << (first ? "" : ", ") << "\"" << name << "\": {\"objects\": " << st.objects
                << ", \"feature_dim\": " << st.dim << ", \"read_s\": " << st.read
                << ", \"features_s\": " << st.features << ", \"fit_pca_s\": " << st.fit << ", \"gappy_fill_s\": " << st.fill
                << ", \"project_pca_s\": " << st.project << "}";
      first = false;
    }
    std::cout << "}}\n";
    return 0;
  } catch (const mmu::Error& e) {
    std::cerr << "mmu_bench_stages: " << e.what() << "\n";
    return 1;
  }
}
