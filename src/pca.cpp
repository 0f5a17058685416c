#include "mmu/pca.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "mmu/error.h"

// Fortran BLAS/LAPACK (OpenBLAS through Debian's alternatives).
extern "C" {
void ssyrk_(const char* uplo, const char* trans, const int* n, const int* k, const float* alpha, const float* a,
            const int* lda, const float* beta, float* c, const int* ldc);
void sgemm_(const char* ta, const char* tb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc);
void ssyevr_(const char* jobz, const char* range, const char* uplo, const int* n, float* a, const int* lda,
             const float* vl, const float* vu, const int* il, const int* iu, const float* abstol, int* m, float* w,
             float* z, const int* ldz, int* isuppz, float* work, const int* lwork, int* iwork, const int* liwork,
             int* info);
}

namespace mmu {

PcaModel fit_pca(const float* x, int64_t n, int64_t d, int64_t k, int64_t max_rows) {
  if (n < 2) throw InvalidArgument("a PCA needs at least 2 objects, got " + std::to_string(n));
  const int64_t stride = (n + max_rows - 1) / max_rows;
  const int64_t m = (n + stride - 1) / stride;
  k = std::min({k, d, m - 1});

  PcaModel model;
  model.input_dim = d;
  model.output_dim = k;
  std::vector<double> mean(d, 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < d; ++j) mean[j] += x[i * stride * d + j];
  model.mean.resize(d);
  for (int64_t j = 0; j < d; ++j) model.mean[j] = static_cast<float>(mean[j] / m);

  std::vector<float> centered(static_cast<size_t>(m * d));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < d; ++j) centered[i * d + j] = x[i * stride * d + j] - model.mean[j];

  // Row-major m x d is column-major d x m: C = A A^T / (m - 1), upper triangle.
  const int di = static_cast<int>(d), mi = static_cast<int>(m);
  const float alpha = 1.0f / static_cast<float>(m - 1), beta = 0.0f;
  std::vector<float> cov(static_cast<size_t>(d * d), 0.0f);
  ssyrk_("U", "N", &di, &mi, &alpha, centered.data(), &di, &beta, cov.data(), &di);

  const int il = static_cast<int>(d - k + 1), iu = di;
  const float vl = 0, vu = 0, abstol = 0;
  int found = 0, info = 0;
  std::vector<float> w(d), z(static_cast<size_t>(d * k));
  std::vector<int> isuppz(2 * k);
  float work_query = 0;
  int iwork_query = 0, lwork = -1, liwork = -1;
  ssyevr_("V", "I", "U", &di, cov.data(), &di, &vl, &vu, &il, &iu, &abstol, &found, w.data(), z.data(), &di,
          isuppz.data(), &work_query, &lwork, &iwork_query, &liwork, &info);
  lwork = static_cast<int>(work_query);
  liwork = iwork_query;
  std::vector<float> work(lwork);
  std::vector<int> iwork(liwork);
  ssyevr_("V", "I", "U", &di, cov.data(), &di, &vl, &vu, &il, &iu, &abstol, &found, w.data(), z.data(), &di,
          isuppz.data(), work.data(), &lwork, iwork.data(), &liwork, &info);
  if (info != 0 || found != k) throw InternalError("PCA eigen-decomposition failed (ssyevr info " + std::to_string(info) + ")");

  // LAPACK returns ascending eigenvalues; we want descending, with a fixed
  // sign (largest |entry| positive) so results do not depend on the solver.
  model.components.resize(static_cast<size_t>(k * d));
  model.variances.resize(k);
  for (int64_t c = 0; c < k; ++c) {
    const float* src = z.data() + (k - 1 - c) * d;
    int64_t arg = 0;
    for (int64_t j = 1; j < d; ++j)
      if (std::fabs(src[j]) > std::fabs(src[arg])) arg = j;
    const float sign = src[arg] < 0 ? -1.0f : 1.0f;
    for (int64_t j = 0; j < d; ++j) model.components[c * d + j] = sign * src[j];
    model.variances[c] = std::max(0.0f, w[k - 1 - c]);
  }
  return model;
}

void project_pca(const PcaModel& m, const float* x, int64_t n, float* out) {
  if (n == 0) return;
  const int64_t d = m.input_dim, k = m.output_dim;
  std::vector<float> centered(static_cast<size_t>(n * d));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) centered[i * d + j] = x[i * d + j] - m.mean[j];
  // Column-major: out^T (k x n) = components (k x d) * centered^T (d x n).
  const int ki = static_cast<int>(k), ni = static_cast<int>(n), di = static_cast<int>(d);
  const float one = 1.0f, zero = 0.0f;
  sgemm_("T", "N", &ki, &ni, &di, &one, m.components.data(), &di, centered.data(), &di, &zero, out, &ki);
  for (int64_t i = 0; i < n; ++i) {
    double s = 0.0;
    for (int64_t j = 0; j < k; ++j) s += static_cast<double>(out[i * k + j]) * out[i * k + j];
    if (s > 0.0) {
      const float inv = static_cast<float>(1.0 / std::sqrt(s));
      for (int64_t j = 0; j < k; ++j) out[i * k + j] *= inv;
    }
  }
}

namespace {
constexpr char kMagic[8] = {'M', 'M', 'U', 'P', 'C', 'A', '0', '1'};

template <typename T>
void put(std::string& s, const T& v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_floats(std::string& s, const std::vector<float>& v) {
  s.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}
}  // namespace

std::string serialize_pca(const PcaModel& m) {
  std::string s(kMagic, sizeof(kMagic));
  put(s, m.input_dim);
  put(s, m.output_dim);
  put_floats(s, m.mean);
  put_floats(s, m.components);
  put_floats(s, m.variances);
  return s;
}

PcaModel parse_pca(const std::string& bytes, const std::string& origin) {
  const size_t head = sizeof(kMagic) + 2 * sizeof(int64_t);
  if (bytes.size() < head || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0)
    throw FormatError("'" + origin + "' is not a PCA fit written by mmu-search (bad magic)");
  PcaModel m;
  std::memcpy(&m.input_dim, bytes.data() + 8, 8);
  std::memcpy(&m.output_dim, bytes.data() + 16, 8);
  if (m.input_dim <= 0 || m.output_dim <= 0 || m.output_dim > m.input_dim || m.input_dim > (1 << 24))
    throw FormatError("'" + origin + "' has invalid PCA dimensions");
  const size_t floats = static_cast<size_t>(m.input_dim + m.output_dim * m.input_dim + m.output_dim);
  if (bytes.size() != head + floats * sizeof(float))
    throw FormatError("'" + origin + "' is truncated or has trailing bytes");
  const float* p = reinterpret_cast<const float*>(bytes.data() + head);
  m.mean.assign(p, p + m.input_dim);
  p += m.input_dim;
  m.components.assign(p, p + m.output_dim * m.input_dim);
  p += m.output_dim * m.input_dim;
  m.variances.assign(p, p + m.output_dim);
  return m;
}

}  // namespace mmu
