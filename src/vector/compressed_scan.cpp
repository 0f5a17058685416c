#include "vector/compressed_scan.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>

#include "mmu/error.h"
#include "vector/canonical_dot.h"
#include "vector/hit_order.h"

// Why the answer is exact (one query q, scan positions p = rows, or indexes
// into `subset`; x_hat_d = min_d + scale_d * c_d in real arithmetic):
//
//   <q, x> = Q0 + sum_d w_d c_d + <q, x - x_hat>,  Q0 = sum_d q_d min_d,  w_d = q_d scale_d
//   w_d = s_w * w16_d + delta_d   (w16 integers, |w16_d| <= M, see below)
//   => <q, x> = Q0 + s_w * I(x) + E1 + E2,  I(x) = sum_d w16_d c_d (exact int32),
//      |E1| = |sum_d delta_d c_d| <= 255 * sum_d |delta_d| = D,
//      |E2| = |<q, x - x_hat>| <= min(sum_d |q_d| err_d, ||q|| * residual_x) = B_x
//             (each |x_d - x_hat_d| <= err_d; Cauchy-Schwarz for the second).
//   The score reported, f(x), is the canonical one (vector/canonical_dot.h):
//   |f(x) - <q, x>| <= u |<q, x>| + 2^-150 + (1 + u) gamma^d_dim sum_d |q_d x_d|
//   (a double sum rounded once to float). G keeps the bound of any float
//   summation, gamma_dim * sum_d |q_d x_d| <= gamma_dim * min(sum_d |q_d|
//   absmax_d, ||q|| max_norm) = G, gamma_n = n u / (1 - n u), u = 2^-24,
//   from when f was a BLAS score: it is at least f's relative term (gamma_dim
//   >= 2u >= u + (1 + u) gamma^d_dim for dim >= 2; at dim 1 f is the product
//   rounded once), so it stays valid, and the 2^-149 added to W covers the
//   underflow term.
//   The bounds are computed in double; `margin` covers their own rounding
//   (far below 2^-40 relative at any dim this tool stores), and every stored
//   bound (err, absmax, residual, max_norm) was rounded up when written.
//   So lo(x) = est - W - B_x <= f(x) <= est + W + B_x = hi(x), W = D + G + margin + 2^-149.
//
//   The 8-bit filter (cheaper: u8 codes times s8 weights, 32 dims per
//   vpdpbusd or vpmaddubsw) runs first and bounds hi(x) from above:
//   w_d = s8 * w8_d + e_d (w8 integers, |w8_d| <= M8, M8 <= 127 for vpdpbusd,
//   which adds four products to int32 without saturating, <= 64 for
//   vpmaddubsw, whose int16 pairs 2 * 255 * 64 never saturate; and
//   |I8| <= 255 M8 dim < 2^31 for every partial sum), so
//   sum_d w_d c_d = s8 I8(x) + 127.5 sum_d e_d + sum_d e_d (c_d - 127.5), and
//   |c_d - 127.5| <= 127.5 bounds the last term by D8 = 127.5 sum_d |e_d|.
//   With B_x <= Bmax = min(sum_d |q_d| err_d, ||q|| max_x residual_x):
//   hi(x) <= Q0 + s8 I8(x) + C8 + D8 + Bmax + W + margin8 = hi8(x), C8 = 127.5 sum_d e_d
//   (margin8 covers the double rounding of C8, D8 and their sum). A row with
//   hi8(x) < tau_t, the k-th lower bound its thread has seen, is skipped: its
//   f(x) <= hi(x) < tau_t <= tau, and its lo(x) < tau_t would not enter the
//   thread's k largest. The test is done in integers, I8(x) < T with
//   T = floor((tau_t - (hi8(x) - s8 I8(x))) / s8) - 1 (the -1 absorbs the
//   rounding of that double quotient, far below 1 while |T| < 2^31), so a
//   skipped row has s8 I8(x) < tau_t - (hi8(x) - s8 I8(x)). Every other row
//   gets the 16-bit estimate and its own bounds below.
//
//   Let tau be the k-th largest lo. k rows have f >= lo >= tau, so the k-th
//   best score f_k >= tau; any row with f(x) >= f_k (ties at the k-th score
//   included) has hi(x) >= f(x) >= tau. Every such row is a candidate and is
//   re-scored canonically, a score that depends on the row alone (not on its
//   place in a block, as a BLAS score did), so the top-k of the candidates by
//   (score, then row) is exact_top_k's top-k, bit for bit.

namespace mmu {

namespace {

constexpr char kMagic[8] = {'M', 'M', 'U', 'S', 'Q', '8', 'v', '1'};
constexpr int64_t kCodeAlign = 16;    // code bytes per row rounded up to this (one AVX2 step)
constexpr int64_t kRowsPerTask = 4096;

int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// The smallest float >= v.
float float_up(double v) {
  float f = static_cast<float>(v);
  if (static_cast<double>(f) < v) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

struct Layout {
  int64_t rows, dim, stride;
  size_t header, min, scale, err, absmax, residual, codes, total;
};

Layout layout_of(int64_t rows, int64_t dim) {
  Layout l{rows, dim, round_up(dim, kCodeAlign), 0, 0, 0, 0, 0, 0, 0, 0};
  l.header = 8 + 4 * 8 + 64 + 8;
  const size_t fd = static_cast<size_t>(round_up(dim * 4, 8));
  l.min = l.header;
  l.scale = l.min + fd;
  l.err = l.scale + fd;
  l.absmax = l.err + fd;
  l.residual = l.absmax + fd;
  l.codes = static_cast<size_t>(round_up(static_cast<int64_t>(l.residual) + rows * 4, 64));
  l.total = l.codes + static_cast<size_t>(rows * l.stride);
  return l;
}

// sum_d w[d] * c[d] over n (a multiple of 16) values; exact in int32 by the
// choice of M in top_k.
int32_t dot_scalar(const uint8_t* c, const int16_t* w, int64_t n) {
  int32_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<int32_t>(c[i]) * w[i];
  return s;
}

__attribute__((target("avx2"))) int32_t dot_avx2(const uint8_t* c, const int16_t* w, int64_t n) {
  __m256i acc = _mm256_setzero_si256();
  for (int64_t i = 0; i < n; i += 16) {
    const __m256i c16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + i)));
    const __m256i w16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(c16, w16));
  }
  const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  const __m128i s2 = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  return _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0xb1)));
}

using DotFn = int32_t (*)(const uint8_t*, const int16_t*, int64_t);

DotFn pick_dot() {
  static const DotFn f = __builtin_cpu_supports("avx2") ? dot_avx2 : dot_scalar;
  return f;
}

// The k largest lower bounds seen by one thread (a min-heap: front = k-th),
// and the positions whose upper bound reached the k-th at the time.
struct Bounds {
  size_t k = 0;  // 0 when k exceeds the rows scanned: every row is a candidate
  std::vector<double> lows;
  std::vector<std::pair<int64_t, double>> cands;  // (scan position, hi)
  int32_t t8 = std::numeric_limits<int32_t>::min();  // I8 threshold of the current tau (see the top)
  double tau() const {
    return k > 0 && lows.size() == k ? lows.front() : -std::numeric_limits<double>::infinity();
  }
};

// T of the proof at the top for tau: rows with I8 < T are skipped. `rest` =
// hi8(x) - s8 I8(x), s8 > 0.
int32_t coarse_threshold(double tau, double rest, double s8) {
  const double r = std::floor((tau - rest) / s8) - 1;
  if (!(r > static_cast<double>(std::numeric_limits<int32_t>::min()))) return std::numeric_limits<int32_t>::min();
  if (r >= static_cast<double>(std::numeric_limits<int32_t>::max())) return std::numeric_limits<int32_t>::max();
  return static_cast<int32_t>(r);
}

}  // namespace

uint32_t sq8_filter8_scalar(const uint8_t* const* rows, const int8_t* w8, int64_t stride, int32_t t) {
  uint32_t keep = 0;
  for (int j = 0; j < 8; ++j) {
    int32_t s = 0;
    for (int64_t i = 0; i < stride; ++i) s += static_cast<int32_t>(rows[j][i]) * w8[i];
    if (s >= t) keep |= 1u << j;
  }
  return keep;
}

namespace {

// The 8 sums of the filter kernels below, reduced by an hadd tree ((01 23 | 01 23),
// then (0123 | 0123), halves added), compared with t.
__attribute__((target("avx2"))) inline uint32_t reduce8(const __m256i* acc, int32_t t) {
  const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(acc[0], acc[1]), _mm256_hadd_epi32(acc[2], acc[3]));
  const __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(acc[4], acc[5]), _mm256_hadd_epi32(acc[6], acc[7]));
  const __m256i sums = _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
  const __m256i below = _mm256_cmpgt_epi32(_mm256_set1_epi32(t), sums);
  return ~static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(below))) & 0xffu;
}

__attribute__((target("avx2"))) inline __m256i load32(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

__attribute__((target("avx2"))) inline __m256i load32w(const int8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// The last 16 codes of a stride that is an odd multiple of 16, read alone
// (never past the row's end) and zero-extended.
__attribute__((target("avx2"))) inline __m256i load16(const uint8_t* p) {
  return _mm256_set_m128i(_mm_setzero_si128(), _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

}  // namespace

// Row by row (rows side by side defeat the hardware prefetcher: measured 2.5x
// slower from memory); vpmaddubsw pairs stay in int16 for |w8| <= 64.
__attribute__((target("avx2"))) uint32_t sq8_filter8_avx2(const uint8_t* const* rows, const int8_t* w8,
                                                           int64_t stride, int32_t t) {
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t whole = stride / 32 * 32;
  __m256i acc[8];
  for (int j = 0; j < 8; ++j) {
    const uint8_t* r = rows[j];
    __m256i a = _mm256_setzero_si256();
    for (int64_t i = 0; i < whole; i += 32)
      a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(load32(r + i), load32w(w8 + i)), ones));
    if (whole < stride)
      a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(load16(r + whole), load32w(w8 + whole)), ones));
    acc[j] = a;
  }
  return reduce8(acc, t);
}

bool sq8_filter8_vnni_available() {
  static const bool ok = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl");
  return ok;
}

// vpdpbusd: four u8 x s8 products added to an int32 lane, no intermediate
// saturation, so |w8| may reach 127. Two accumulators per row hide its latency.
__attribute__((target("avx2,avx512vnni,avx512vl"))) uint32_t sq8_filter8_vnni(const uint8_t* const* rows,
                                                                                 const int8_t* w8, int64_t stride,
                                                                                 int32_t t) {
  const int64_t pairs = stride / 64 * 64, whole = stride / 32 * 32;
  __m256i acc[8];
  for (int j = 0; j < 8; ++j) {
    const uint8_t* r = rows[j];
    __m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
    for (int64_t i = 0; i < pairs; i += 64) {
      a = _mm256_dpbusd_epi32(a, load32(r + i), load32w(w8 + i));
      b = _mm256_dpbusd_epi32(b, load32(r + i + 32), load32w(w8 + i + 32));
    }
    if (pairs < whole) a = _mm256_dpbusd_epi32(a, load32(r + pairs), load32w(w8 + pairs));
    if (whole < stride) b = _mm256_dpbusd_epi32(b, load16(r + whole), load32w(w8 + whole));
    acc[j] = _mm256_add_epi32(a, b);
  }
  return reduce8(acc, t);
}

namespace {

// The fastest exact kernel of this CPU; none (every row gets the 16-bit bounds) without AVX2.
Sq8Filter best_filter() {
  if (sq8_filter8_vnni_available()) return {sq8_filter8_vnni, 127};
  if (__builtin_cpu_supports("avx2")) return {sq8_filter8_avx2, 64};
  return {nullptr, 0};
}

}  // namespace

std::vector<uint8_t> encode_sq8(const VectorMatrix& f32, const std::string& vectors_sha256) {
  if (f32.type != VectorType::kF32) throw InvalidArgument("sq8 encodes fp32 vectors only");
  if (vectors_sha256.size() != 64) throw InvalidArgument("sq8 needs the SHA-256 (hex) of the vectors it encodes");
  const int64_t n = f32.rows, dim = f32.dim;
  const float* x = static_cast<const float*>(f32.data);
  if (dim < 1 || dim > (int64_t{1} << 20)) throw InvalidArgument("sq8 takes 1 to 2^20 dimensions, not " + std::to_string(dim));
  const Layout l = layout_of(n, dim);
  std::vector<uint8_t> out(l.total, 0);
  std::vector<float> lo(static_cast<size_t>(dim), std::numeric_limits<float>::infinity());
  std::vector<float> hi(static_cast<size_t>(dim), -std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < dim; ++d) {
      const float v = x[i * dim + d];
      if (!std::isfinite(v))
        throw FormatError("vector row " + std::to_string(i) + " has a non-finite value at position " +
                          std::to_string(d));
      lo[d] = std::min(lo[d], v);
      hi[d] = std::max(hi[d], v);
    }
  std::vector<float> scale(static_cast<size_t>(dim), 0.0f), absmax(static_cast<size_t>(dim), 0.0f);
  for (int64_t d = 0; d < dim && n > 0; ++d) {
    scale[d] = static_cast<float>((static_cast<double>(hi[d]) - lo[d]) / 255.0);
    absmax[d] = std::max(std::fabs(lo[d]), std::fabs(hi[d]));
  }
  if (n == 0) std::fill(lo.begin(), lo.end(), 0.0f);
  // Rounding error of a residual computed in double, per dimension (x and
  // x_hat are both at most about mag_d in size): added before rounding up.
  std::vector<double> slack(static_cast<size_t>(dim));
  for (int64_t d = 0; d < dim; ++d)
    slack[d] = std::ldexp(std::fabs(lo[d]) + 255.0 * scale[d] + absmax[d], -48);
  std::vector<double> err(static_cast<size_t>(dim), 0.0);
  float* residual = reinterpret_cast<float*>(out.data() + l.residual);
  uint8_t* codes = out.data() + l.codes;
  double max_norm = 0;
  for (int64_t i = 0; i < n; ++i) {
    double r2 = 0, x2 = 0, s2 = 0;
    for (int64_t d = 0; d < dim; ++d) {
      const double v = x[i * dim + d];
      int64_t c = 0;
      if (scale[d] > 0) c = std::clamp<int64_t>(std::llround((v - lo[d]) / scale[d]), 0, 255);
      codes[i * l.stride + d] = static_cast<uint8_t>(c);
      const double r = std::fabs(v - (static_cast<double>(lo[d]) + static_cast<double>(scale[d]) * c)) + slack[d];
      err[d] = std::max(err[d], r);
      r2 += r * r;
      x2 += v * v;
      s2 += slack[d] * slack[d];
    }
    residual[i] = float_up((std::sqrt(r2) + std::sqrt(s2)) * (1 + std::ldexp(1.0, -40)));
    max_norm = std::max(max_norm, std::sqrt(x2) * (1 + std::ldexp(1.0, -40)));
  }
  uint8_t* p = out.data();
  std::memcpy(p, kMagic, 8);
  const int64_t head[4] = {n, dim, l.stride, n * dim * 4};
  std::memcpy(p + 8, head, sizeof(head));
  std::memcpy(p + 40, vectors_sha256.data(), 64);
  std::memcpy(p + 104, &max_norm, 8);
  for (int64_t d = 0; d < dim; ++d) {
    reinterpret_cast<float*>(p + l.min)[d] = lo[d];
    reinterpret_cast<float*>(p + l.scale)[d] = scale[d];
    reinterpret_cast<float*>(p + l.err)[d] = float_up(err[d] * (1 + std::ldexp(1.0, -40)));
    reinterpret_cast<float*>(p + l.absmax)[d] = absmax[d];
  }
  return out;
}

Sq8Copy::Sq8Copy(const void* data, size_t size, const std::string& name) {
  const auto* p = static_cast<const uint8_t*>(data);
  const auto damaged = [&](const std::string& why) { return FormatError("'" + name + "' is damaged: " + why); };
  if (size < 112 || std::memcmp(p, kMagic, 8) != 0) throw damaged("not an sq8 vectors file");
  int64_t head[4];
  std::memcpy(head, p + 8, sizeof(head));
  rows_ = head[0];
  dim_ = head[1];
  if (rows_ < 0 || dim_ < 1 || dim_ > (int64_t{1} << 20) || rows_ > (int64_t{1} << 40))
    throw damaged("impossible shape " + std::to_string(rows_) + " x " + std::to_string(dim_));
  const Layout l = layout_of(rows_, dim_);
  if (head[2] != l.stride || size != l.total)
    throw damaged(std::to_string(size) + " bytes where " + std::to_string(rows_) + " x " + std::to_string(dim_) +
                  " codes take " + std::to_string(l.total));
  vectors_bytes_ = static_cast<uint64_t>(head[3]);
  sha_.assign(reinterpret_cast<const char*>(p + 40), 64);
  std::memcpy(&max_norm_, p + 104, 8);
  stride_ = l.stride;
  min_ = reinterpret_cast<const float*>(p + l.min);
  scale_ = reinterpret_cast<const float*>(p + l.scale);
  err_ = reinterpret_cast<const float*>(p + l.err);
  absmax_ = reinterpret_cast<const float*>(p + l.absmax);
  residual_ = reinterpret_cast<const float*>(p + l.residual);
  codes_ = p + l.codes;
  codes_offset_ = l.codes;
  // A NaN bound would compare false and drop its row silently: every bound is checked once here.
  if (!std::isfinite(max_norm_) || max_norm_ < 0) throw damaged("its norm bound is not a finite number >= 0");
  for (int64_t d = 0; d < dim_; ++d)
    if (!std::isfinite(min_[d]) || !(scale_[d] >= 0) || !(err_[d] >= 0) || !(absmax_[d] >= 0) ||
        !std::isfinite(scale_[d]) || !std::isfinite(err_[d]) || !std::isfinite(absmax_[d]))
      throw damaged("dimension " + std::to_string(d) + " has a non-finite or negative bound");
  // Branch-free (it vectorises: every cold process opens the copy); the row
  // is looked for only when one is bad. NaN fails r >= 0, +Inf r <= FLT_MAX.
  bool sound = true;
  float max_r = 0;
  for (int64_t i = 0; i < rows_; ++i) {
    const float r = residual_[i];
    sound &= (r >= 0) & (r <= std::numeric_limits<float>::max());
    max_r = r > max_r ? r : max_r;
  }
  if (!sound)
    for (int64_t i = 0; i < rows_; ++i)
      if (!(residual_[i] >= 0) || !std::isfinite(residual_[i]))
        throw damaged("row " + std::to_string(i) + " has a non-finite or negative error bound");
  max_residual_ = max_r;
}

std::vector<Hit> Sq8Copy::top_k(const VectorMatrix& f32, const float* query, int64_t k,
                                const std::vector<int64_t>* subset, const Sq8Scan& how) const {
  if (k <= 0) throw InvalidArgument("k must be at least 1, got " + std::to_string(k));
  if (f32.rows != rows_ || f32.dim != dim_ || f32.type != VectorType::kF32)
    throw Error(ErrorKind::kInternal, "sq8 copy and fp32 vectors differ in shape");
  for (int64_t d = 0; d < dim_; ++d)
    if (!std::isfinite(query[d]))
      throw InvalidArgument("query vector 0 has a non-finite value at position " + std::to_string(d));
  const int64_t dim = dim_;
  const int64_t n_items = subset ? static_cast<int64_t>(subset->size()) : rows_;

  // The query in integers: |I(x)| <= dim * 255 * M < 2^31, so no partial sum overflows.
  const int64_t M = std::min<int64_t>(32767, (int64_t{1} << 31) / (255 * dim) - 1);
  std::vector<double> w(static_cast<size_t>(dim));
  double maxw = 0, q0 = 0, l1b = 0, qn2 = 0, a1 = 0, mag = 0;
  for (int64_t d = 0; d < dim; ++d) {
    const double q = query[d];
    w[d] = q * scale_[d];  // exact: a product of two floats fits a double
    maxw = std::max(maxw, std::fabs(w[d]));
    q0 += q * min_[d];
    l1b += std::fabs(q) * err_[d];
    qn2 += q * q;
    a1 += std::fabs(q) * absmax_[d];
    mag += std::fabs(q) * (std::fabs(min_[d]) + 255.0 * scale_[d]);
  }
  const double s_w = maxw > 0 ? maxw / static_cast<double>(M) : 1.0;
  std::vector<int16_t> w16(static_cast<size_t>(stride_), 0);
  double dsum = 0;
  for (int64_t d = 0; d < dim; ++d) {
    const int64_t v = std::clamp<int64_t>(std::llround(w[d] / s_w), -M, M);
    w16[d] = static_cast<int16_t>(v);
    dsum += std::fabs(w[d] - s_w * static_cast<double>(v));
  }
  const double D = 255.0 * dsum;
  const double qn = std::sqrt(qn2) * (1 + std::ldexp(1.0, -40));
  const double u = std::ldexp(1.0, -24), nu = static_cast<double>(dim) * u;
  const double G = (nu < 0.5 ? nu / (1 - nu) : 1.0) * std::min(a1, qn * max_norm_) * (1 + std::ldexp(1.0, -40));
  const double margin = std::ldexp(static_cast<double>(dim + 64), -40) * (mag + std::fabs(q0) + D + l1b + G + maxw);
  const double W = D + G + margin + 0x1p-149;

  // The 8-bit filter's weights and the part of hi8 that is the same for every row.
  const Sq8Filter filter = how.filter.fn ? how.filter : best_filter();
  const int64_t M8 = std::min<int64_t>(std::max<int64_t>(filter.max_weight, 1), ((int64_t{1} << 31) - 1) / (255 * dim));
  const double s8 = maxw > 0 ? maxw / static_cast<double>(M8) : 1.0;
  std::vector<int8_t> w8(static_cast<size_t>(round_up(stride_, 32)), 0);
  double esum = 0, eabs = 0;
  for (int64_t d = 0; d < dim; ++d) {
    const int64_t v = std::clamp<int64_t>(std::llround(w[d] / s8), -M8, M8);
    w8[d] = static_cast<int8_t>(v);
    const double e = w[d] - s8 * static_cast<double>(v);
    esum += e;
    eabs += std::fabs(e);
  }
  const double C8 = 127.5 * esum, D8 = 127.5 * eabs;
  const double b_max = std::min(l1b, qn * max_residual_);
  const double margin8 = std::ldexp(static_cast<double>(dim + 64), -40) *
                         (mag + std::fabs(q0) + std::fabs(C8) + D8 + b_max + W + maxw);
  const double rest8 = q0 + C8 + D8 + b_max + W + margin8;
  const bool coarse = filter.fn != nullptr;

  // Pass 1: bounds of every scanned row; candidates whose upper bound reaches
  // the k-th lower bound seen so far (never above the final one).
  const int64_t n_tasks = (n_items + kRowsPerTask - 1) / kRowsPerTask;
  const int threads =
      static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), n_tasks)));
  std::vector<Bounds> per(static_cast<size_t>(threads));
  const DotFn dot = pick_dot();
  const size_t kk = k <= n_items ? static_cast<size_t>(k) : 0;
  int64_t n_passed = 0;
  // Streamed: each thread copies chunk_rows rows of codes at a time into its
  // own buffer (256 KB, cache-resident) and scans them there.
  const bool streamed = how.codes_file != nullptr;
  if (streamed && (subset || how.codes_file->size() != codes_offset_ + static_cast<size_t>(rows_ * stride_)))
    throw Error(ErrorKind::kInternal, "an sq8 scan streams whole files of its own size only");
  if (how.vectors_file && how.vectors_file->size() != static_cast<size_t>(rows_ * dim_) * sizeof(float))
    throw Error(ErrorKind::kInternal, "an sq8 scan re-scores from a vectors file of its own shape only");
  const int64_t chunk_rows = std::max<int64_t>(8, (int64_t{256} << 10) / stride_ / 8 * 8);
  std::vector<std::exception_ptr> failed(static_cast<size_t>(threads));
  std::atomic<bool> stop{false};
#pragma omp parallel num_threads(threads)
  {
    const size_t me = static_cast<size_t>(omp_get_thread_num());
    Bounds& b = per[me];
    b.k = kk;
    b.lows.reserve(kk);
    int64_t passed = 0;
    // The 16-bit estimate and bounds of scan position p (a row the 8-bit filter kept).
    const auto examine = [&](int64_t p, int64_t row, const uint8_t* code) {
      ++passed;
      const double est = q0 + s_w * static_cast<double>(dot(code, w16.data(), stride_));
      const double half = W + std::min(l1b, qn * static_cast<double>(residual_[row]));
      const double lo = est - half, hi = est + half;
      if (hi < b.tau()) return;
      b.cands.emplace_back(p, hi);
      if (kk == 0) return;
      if (b.lows.size() < kk) {
        b.lows.push_back(lo);
        std::push_heap(b.lows.begin(), b.lows.end(), std::greater<double>());
      } else if (lo > b.lows.front()) {
        std::pop_heap(b.lows.begin(), b.lows.end(), std::greater<double>());
        b.lows.back() = lo;
        std::push_heap(b.lows.begin(), b.lows.end(), std::greater<double>());
      } else {
        return;  // tau did not move
      }
      if (coarse) b.t8 = coarse_threshold(b.tau(), rest8, s8);
      if (b.cands.size() > 4 * kk + 4096) {  // drop those the risen threshold rules out
        const double tau = b.tau();
        b.cands.erase(std::remove_if(b.cands.begin(), b.cands.end(), [&](const auto& c) { return c.second < tau; }),
                      b.cands.end());
      }
    };
    // Scan positions [first, last); `codes` holds the codes of rows from code_row0 on.
    const auto scan = [&](int64_t first, int64_t last, const uint8_t* codes, int64_t code_row0) {
      for (int64_t p0 = first; p0 < last; p0 += 8) {
        const int64_t nb = std::min<int64_t>(8, last - p0);
        int64_t rows[8];
        const uint8_t* ptrs[8];
        for (int64_t j = 0; j < 8; ++j) {  // a short block repeats its first row, masked off below
          rows[j] = j < nb ? (subset ? (*subset)[static_cast<size_t>(p0 + j)] : p0 + j) : rows[0];
          ptrs[j] = codes + (rows[j] - code_row0) * stride_;
        }
        uint32_t keep = (1u << nb) - 1;
        if (coarse) keep &= filter.fn(ptrs, w8.data(), stride_, b.t8);
        for (; keep != 0; keep &= keep - 1) {
          const int j = __builtin_ctz(keep);
          examine(p0 + j, rows[j], ptrs[j]);
        }
      }
    };
    std::vector<uint8_t> buf(streamed ? static_cast<size_t>(chunk_rows * stride_) : 0);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < n_tasks; ++t) {
      if (stop.load(std::memory_order_relaxed)) continue;
      const int64_t first = t * kRowsPerTask, last = std::min(n_items, first + kRowsPerTask);
      if (!streamed) {
        scan(first, last, codes_, 0);
        continue;
      }
      try {  // an exception may not leave the parallel region
        for (int64_t c0 = first; c0 < last; c0 += chunk_rows) {
          const int64_t c1 = std::min(last, c0 + chunk_rows);
          how.codes_file->read_at(codes_offset_ + static_cast<size_t>(c0 * stride_), buf.data(),
                                  static_cast<size_t>((c1 - c0) * stride_));
          scan(c0, c1, buf.data(), c0);
        }
      } catch (...) {
        failed[me] = std::current_exception();
        stop = true;
      }
    }
#pragma omp atomic
    n_passed += passed;
  }
  for (const std::exception_ptr& e : failed)
    if (e) std::rethrow_exception(e);
  // A row not pushed to its thread's heap had hi < tau_t, hence lo < tau_t: the
  // k largest lows overall are all in the heaps.
  std::vector<double> lows;
  for (const Bounds& b : per) lows.insert(lows.end(), b.lows.begin(), b.lows.end());
  double tau = -std::numeric_limits<double>::infinity();
  if (kk > 0 && lows.size() >= kk) {
    std::nth_element(lows.begin(), lows.begin() + static_cast<std::ptrdiff_t>(kk - 1), lows.end(), std::greater<double>());
    tau = lows[kk - 1];
  }
  std::vector<int64_t> pos;
  for (const Bounds& b : per)
    for (const auto& c : b.cands)
      if (c.second >= tau) pos.push_back(c.first);
  std::sort(pos.begin(), pos.end());
  if (how.candidates) *how.candidates = static_cast<int64_t>(pos.size());
  if (how.filtered) *how.filtered = n_passed;

  // Pass 2: the candidates' canonical scores (their rows read, when streamed,
  // one by one: a few hundred rows).
  std::vector<Hit> hits;
  hits.reserve(pos.size());
  const float* base = static_cast<const float*>(f32.data);
  const std::vector<double> wide = widen_query(query, dim);
  std::vector<float> row_buf(how.vectors_file ? static_cast<size_t>(dim) : 0);
  for (const int64_t p : pos) {
    const int64_t row = subset ? (*subset)[static_cast<size_t>(p)] : p;
    const float* x = base + row * dim;
    if (how.vectors_file) {
      how.vectors_file->read_at(static_cast<size_t>(row * dim) * sizeof(float), row_buf.data(),
                                row_buf.size() * sizeof(float));
      x = row_buf.data();
    }
    hits.push_back({row, canonical_dot(wide.data(), x, dim)});
  }
  // Bytes copied from a file rewritten meanwhile may be a mix of old and new.
  if (how.codes_file) how.codes_file->check_unchanged();
  if (how.vectors_file) how.vectors_file->check_unchanged();
  const size_t keep = std::min(hits.size(), static_cast<size_t>(k));
  std::partial_sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(keep), hits.end(), ranks_before);
  hits.resize(keep);
  return hits;
}

}  // namespace mmu
