#include "mmu/pca.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <random>

#include "mmu/error.h"

namespace {

// Points spread mostly along known orthogonal directions with known variances.
std::vector<float> anisotropic_cloud(int64_t n, int64_t d, std::vector<std::vector<float>>* axes) {
  std::mt19937 rng(42);
  std::normal_distribution<float> g(0.0f, 1.0f);
  axes->assign(2, std::vector<float>(d, 0.0f));
  for (int64_t j = 0; j < d; ++j) {
    (*axes)[0][j] = (j % 2 ? 1.0f : -1.0f) / std::sqrt(float(d));
    (*axes)[1][j] = (j < d / 2 ? 1.0f : -1.0f) / std::sqrt(float(d));
  }
  std::vector<float> x(n * d);
  for (int64_t i = 0; i < n; ++i) {
    const float a = 10.0f * g(rng), b = 3.0f * g(rng);
    for (int64_t j = 0; j < d; ++j) x[i * d + j] = 5.0f + a * (*axes)[0][j] + b * (*axes)[1][j] + 0.01f * g(rng);
  }
  return x;
}

double dot(const float* a, const std::vector<float>& b) {
  double s = 0;
  for (size_t j = 0; j < b.size(); ++j) s += a[j] * b[j];
  return s;
}

}  // namespace

TEST_CASE("PCA recovers the principal axes in order, with a fixed sign", "[pca]") {
  const int64_t n = 2000, d = 16;
  std::vector<std::vector<float>> axes;
  auto x = anisotropic_cloud(n, d, &axes);
  auto m = mmu::fit_pca(x.data(), n, d, 4);
  REQUIRE(m.output_dim == 4);
  CHECK(std::fabs(dot(&m.components[0], axes[0])) == Approx(1.0).margin(1e-3));
  CHECK(std::fabs(dot(&m.components[d], axes[1])) == Approx(1.0).margin(1e-3));
  CHECK(m.variances[0] == Approx(100.0).epsilon(0.1));
  CHECK(m.variances[1] == Approx(9.0).epsilon(0.1));
  CHECK(m.variances[1] > m.variances[2]);
  CHECK(m.mean[3] == Approx(5.0).margin(0.5));
  for (int64_t c = 0; c < 4; ++c) {
    int64_t arg = 0;
    for (int64_t j = 1; j < d; ++j)
      if (std::fabs(m.components[c * d + j]) > std::fabs(m.components[c * d + arg])) arg = j;
    CHECK(m.components[c * d + arg] > 0);
  }
}

TEST_CASE("PCA projections are unit vectors and equal a direct computation", "[pca]") {
  const int64_t n = 300, d = 10;
  std::vector<std::vector<float>> axes;
  auto x = anisotropic_cloud(n, d, &axes);
  auto m = mmu::fit_pca(x.data(), n, d, 3);
  std::vector<float> out(n * 3);
  mmu::project_pca(m, x.data(), n, out.data());
  for (int64_t i : {0, 17, 299}) {
    double ref[3], norm = 0;
    for (int c = 0; c < 3; ++c) {
      ref[c] = 0;
      for (int64_t j = 0; j < d; ++j) ref[c] += (x[i * d + j] - m.mean[j]) * m.components[c * d + j];
      norm += ref[c] * ref[c];
    }
    for (int c = 0; c < 3; ++c) CHECK(out[i * 3 + c] == Approx(ref[c] / std::sqrt(norm)).margin(1e-5));
  }
}

TEST_CASE("PCA fits serialise exactly and reject damage", "[pca]") {
  std::vector<std::vector<float>> axes;
  auto x = anisotropic_cloud(50, 6, &axes);
  auto m = mmu::fit_pca(x.data(), 50, 6, 2);
  const std::string bytes = mmu::serialize_pca(m);
  auto back = mmu::parse_pca(bytes, "fit.bin");
  CHECK(back.components == m.components);
  CHECK(back.mean == m.mean);
  CHECK_THROWS_WITH(mmu::parse_pca(bytes.substr(0, bytes.size() - 3), "fit.bin"), Catch::Contains("fit.bin"));
  CHECK_THROWS_WITH(mmu::parse_pca("garbage-garbage-garbage", "x/fit.bin"), Catch::Contains("bad magic"));
  CHECK_THROWS_AS(mmu::fit_pca(x.data(), 1, 6, 2), mmu::Error);
}
