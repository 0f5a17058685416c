#include "mmu/pca.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <omp.h>

#include "mmu/error.h"

#include "base/blas.h"
#include "base/finite.h"

// Fortran LAPACK (OpenBLAS through Debian's alternatives).
extern "C" {
void sgeqrf_(const int* m, const int* n, float* a, const int* lda, float* tau, float* work, const int* lwork, int* info);
void sorgqr_(const int* m, const int* n, const int* k, float* a, const int* lda, const float* tau, float* work,
             const int* lwork, int* info);
void ssyevr_(const char* jobz, const char* range, const char* uplo, const int* n, float* a, const int* lda,
             const float* vl, const float* vu, const int* il, const int* iu, const float* abstol, int* m, float* w,
             float* z, const int* ldz, int* isuppz, float* work, const int* lwork, int* iwork, const int* liwork,
             int* info);
}

namespace mmu {

namespace {

// Column-major helpers (the Fortran convention of the BLAS/LAPACK calls).
// C (m x n) = op(A) * op(B).
void gemm(const char* ta, const char* tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
          float* c, int ldc) {
  const float one = 1.0f, zero = 0.0f;
  sgemm_(ta, tb, &m, &n, &k, &one, a, &lda, b, &ldb, &zero, c, &ldc);
}

// Runs f with OpenMP (and so OpenBLAS-openmp) limited to one thread: QR and
// small eigenproblems are thousands of tiny BLAS-2 calls, each of which would
// otherwise start a parallel region; on a loaded machine that took seconds.
template <typename F>
void single_threaded(F f) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  f();
  omp_set_num_threads(saved);
}

// Replaces the m x n column-major matrix a (m >= n) by an orthonormal basis of its columns.
void orthonormalize(int m, int n, std::vector<float>* a) {
  std::vector<float> tau(n);
  int info = 0, lwork = -1;
  float q = 0;
  sgeqrf_(&m, &n, a->data(), &m, tau.data(), &q, &lwork, &info);
  lwork = std::max(1, static_cast<int>(q));
  std::vector<float> work(lwork);
  sgeqrf_(&m, &n, a->data(), &m, tau.data(), work.data(), &lwork, &info);
  if (info != 0) throw InternalError("QR factorisation failed (sgeqrf info " + std::to_string(info) + ")");
  lwork = -1;
  sorgqr_(&m, &n, &n, a->data(), &m, tau.data(), &q, &lwork, &info);
  lwork = std::max(1, static_cast<int>(q));
  work.resize(lwork);
  sorgqr_(&m, &n, &n, a->data(), &m, tau.data(), work.data(), &lwork, &info);
  if (info != 0) throw InternalError("QR factorisation failed (sorgqr info " + std::to_string(info) + ")");
}

// All eigenpairs of the symmetric n x n matrix a (upper triangle used), ascending.
void eigen_symmetric(int n, std::vector<float>* a, std::vector<float>* w, std::vector<float>* z) {
  const int il = 1, iu = n;
  const float vl = 0, vu = 0, abstol = 0;
  int found = 0, info = 0, lwork = -1, liwork = -1, iq = 0;
  float q = 0;
  w->assign(n, 0.0f);
  z->assign(static_cast<size_t>(n) * n, 0.0f);
  std::vector<int> isuppz(2 * n);
  ssyevr_("V", "A", "U", &n, a->data(), &n, &vl, &vu, &il, &iu, &abstol, &found, w->data(), z->data(), &n,
          isuppz.data(), &q, &lwork, &iq, &liwork, &info);
  lwork = static_cast<int>(q);
  liwork = iq;
  std::vector<float> work(lwork);
  std::vector<int> iwork(liwork);
  ssyevr_("V", "A", "U", &n, a->data(), &n, &vl, &vu, &il, &iu, &abstol, &found, w->data(), z->data(), &n,
          isuppz.data(), work.data(), &lwork, iwork.data(), &liwork, &info);
  if (info != 0 || found != n)
    throw InternalError("eigen-decomposition of the " + std::to_string(n) + " x " + std::to_string(n) +
                        " Gram matrix failed (ssyevr info " + std::to_string(info) + ", " + std::to_string(found) +
                        " of " + std::to_string(n) + " eigenpairs found)");
}

}  // namespace

PcaModel fit_pca(const float* x, int64_t n, int64_t d, int64_t k, int64_t max_rows) {
  if (n < 2) throw InvalidArgument("a PCA needs at least 2 objects, got " + std::to_string(n));
  // One NaN would turn every component into NaN (LAPACK then fails or returns garbage).
  const int64_t bad = first_non_finite_row(x, n, d);
  if (bad >= 0) throw InvalidArgument("PCA input row " + std::to_string(bad) + " has a NaN or Inf feature");
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

  // Row-major m x d data is the column-major d x m matrix A = Xc^T.
  std::vector<float> a(static_cast<size_t>(m * d));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < d; ++j) a[i * d + j] = x[i * stride * d + j] - model.mean[j];
  const int di = static_cast<int>(d), mi = static_cast<int>(m);

  // Randomised subspace iteration (Halko, Martinsson & Tropp 2011): the top-k
  // principal directions without an O(d^3) eigen-decomposition of the d x d
  // covariance. A fixed seed keeps the fit deterministic.
  const int l = static_cast<int>(std::min<int64_t>({k + 32, d, m}));
  std::vector<float> omega(static_cast<size_t>(d) * l);
  uint64_t state = 0x9E3779B97F4A7C15ull;
  for (auto& v : omega) {  // splitmix64 -> uniform in [-1, 1): portable across standard libraries
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    v = static_cast<float>(static_cast<double>(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
  }
  std::vector<float> y(static_cast<size_t>(m) * l), zmat(static_cast<size_t>(d) * l);
  gemm("T", "N", mi, l, di, a.data(), di, omega.data(), di, y.data(), mi);  // Y = Xc * Omega (m x l)
  single_threaded([&] { orthonormalize(mi, l, &y); });
  for (int it = 0; it < 10; ++it) {
    gemm("N", "N", di, l, mi, a.data(), di, y.data(), mi, zmat.data(), di);  // Z = Xc^T Q (d x l)
    single_threaded([&] { orthonormalize(di, l, &zmat); });
    gemm("T", "N", mi, l, di, a.data(), di, zmat.data(), di, y.data(), mi);  // Y = Xc Z (m x l)
    single_threaded([&] { orthonormalize(mi, l, &y); });
  }
  // B^T = Xc^T Q (d x l); its l x l Gram matrix gives B's singular values and
  // right singular vectors: V = B^T U / sigma.
  gemm("N", "N", di, l, mi, a.data(), di, y.data(), mi, zmat.data(), di);
  std::vector<float> gram(static_cast<size_t>(l) * l), w, u;
  gemm("T", "N", l, l, di, zmat.data(), di, zmat.data(), di, gram.data(), l);
  single_threaded([&] { eigen_symmetric(l, &gram, &w, &u); });
  std::vector<float> v(static_cast<size_t>(d) * l);
  gemm("N", "N", di, l, l, zmat.data(), di, u.data(), l, v.data(), di);

  // Descending order, unit length, fixed sign (largest |entry| positive) so
  // results do not depend on the solver's sign choices.
  model.components.resize(static_cast<size_t>(k * d));
  model.variances.resize(k);
  for (int64_t c = 0; c < k; ++c) {
    const int64_t src_col = l - 1 - c;
    const float* src = v.data() + src_col * d;
    double norm = 0.0;
    int64_t arg = 0;
    for (int64_t j = 0; j < d; ++j) {
      norm += static_cast<double>(src[j]) * src[j];
      if (std::fabs(src[j]) > std::fabs(src[arg])) arg = j;
    }
    const float scale = static_cast<float>((src[arg] < 0 ? -1.0 : 1.0) / std::sqrt(std::max(norm, 1e-300)));
    for (int64_t j = 0; j < d; ++j) model.components[c * d + j] = scale * src[j];
    model.variances[c] = std::max(0.0f, w[src_col]) / static_cast<float>(m - 1);
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
constexpr char kFillMagic[8] = {'M', 'M', 'U', 'G', 'A', 'P', '0', '1'};

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
  const size_t out_rows = static_cast<size_t>(m.output_dim);
  const size_t d = static_cast<size_t>(m.input_dim);
  s.append(reinterpret_cast<const char*>(m.components.data()), out_rows * d * sizeof(float));
  s.append(reinterpret_cast<const char*>(m.variances.data()), out_rows * sizeof(float));
  if (m.fill_dim > 0) {
    // The extra rows come after the projection's own, so a reader of the
    // projection alone sees the "MMUPCA01" layout unchanged.
    s.append(kFillMagic, sizeof(kFillMagic));
    put(s, m.fill_dim);
    const size_t extra = static_cast<size_t>(m.fill_dim - m.output_dim);
    s.append(reinterpret_cast<const char*>(m.components.data() + out_rows * d), extra * d * sizeof(float));
    s.append(reinterpret_cast<const char*>(m.variances.data() + out_rows), extra * sizeof(float));
    put(s, m.residual_variance);
  }
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
  const size_t base = head + floats * sizeof(float);
  const size_t fill_head = base + sizeof(kFillMagic) + sizeof(int64_t);
  const bool has_fill = bytes.size() >= fill_head && std::memcmp(bytes.data() + base, kFillMagic, 8) == 0;
  if (has_fill) {
    std::memcpy(&m.fill_dim, bytes.data() + base + 8, 8);
    if (m.fill_dim < m.output_dim || m.fill_dim > m.input_dim)
      throw FormatError("'" + origin + "' has an invalid gappy fill dimension");
  }
  const size_t extra = has_fill ? static_cast<size_t>(m.fill_dim - m.output_dim) : 0;
  const size_t want = has_fill ? fill_head + (extra * static_cast<size_t>(m.input_dim + 1) + 1) * sizeof(float) : base;
  if (bytes.size() != want) throw FormatError("'" + origin + "' is truncated or has trailing bytes");
  const float* p = reinterpret_cast<const float*>(bytes.data() + head);
  m.mean.assign(p, p + m.input_dim);
  p += m.input_dim;
  m.components.assign(p, p + m.output_dim * m.input_dim);
  p += m.output_dim * m.input_dim;
  m.variances.assign(p, p + m.output_dim);
  if (has_fill) {
    p = reinterpret_cast<const float*>(bytes.data() + fill_head);
    m.components.insert(m.components.end(), p, p + extra * m.input_dim);
    p += extra * m.input_dim;
    m.variances.insert(m.variances.end(), p, p + extra);
    p += extra;
    m.residual_variance = *p;
  }
  const int64_t rows = std::max(m.output_dim, m.fill_dim);
  if (first_non_finite_row(m.mean.data(), 1, m.input_dim) >= 0 ||
      first_non_finite_row(m.components.data(), rows, m.input_dim) >= 0 ||
      first_non_finite_row(m.variances.data(), 1, rows) >= 0 || !std::isfinite(m.residual_variance) ||
      m.residual_variance < 0.0f)
    throw FormatError("'" + origin + "' holds NaN or Inf values: it is damaged; rebuild with --refit");
  return m;
}

}  // namespace mmu
