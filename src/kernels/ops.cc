#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/dot_simd.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace g4 {

namespace {
// exp(t) for softmax (t = score - max <= 0), one fixed sequence of operations per element
// shared by softmax_exp8 and the scalar softmax_exp below, so every CPU and every tail gets the
// same bits: in double, reduction by ln 2 (Cephes' two-part constant) and Taylor's series to
// r^11 on |r| <= ln 2 / 2 (error ~1e-14, so the float it rounds to is expf's correctly rounded
// value but in ~1e-7 of cases), times 2^n from n's bits; 0 below -87 (expf's denormal range:
// weights below 2^-125 of the largest), NaN stays NaN. (A float polynomial's 1-2 ulp moved the
// tiny-model logits against NumPy 10x: Shapes/TinyGemma3.MatchesNumpyReference.)
constexpr float kSoftmaxExpMin = -87.f;
constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2Hi = 6.93145751953125E-1, kLn2Lo = 1.42860682030941723212E-6;
// 1/k! for k = 11 down to 0 (Horner).
constexpr double kExpTaylor[12] = {1.0 / 39916800, 1.0 / 3628800, 1.0 / 362880, 1.0 / 40320,
                                   1.0 / 5040,     1.0 / 720,     1.0 / 120,    1.0 / 24,
                                   1.0 / 6,        0.5,           1.0,          1.0};
// softcap's tanh(x) = expm1(2x) / (expm1(2x) + 2), in double with the same reduction and
// series (expm1(r) = r * (1 + r/2 + ... + r^10/11!), so no cancellation near 0); |x| is
// clamped to 10, where float's tanh is already +-1.
constexpr double kTanhClamp = 10.0;

// exp_parts4's operations on one value (std::fma for its fmadd/fnmadd, nearbyint for its
// round to nearest even).
template <int kTerms>
double exp_parts(double y, double& r, double& pow2n) {
  const double n = std::nearbyint(y * kLog2e);
  r = std::fma(-n, kLn2Hi, y);
  r = std::fma(-n, kLn2Lo, r);
  double p = kExpTaylor[0];
  for (int k = 1; k < kTerms; ++k) p = std::fma(p, r, kExpTaylor[k]);
  const uint64_t bits = uint64_t(int64_t(n) + 1023) << 52;
  std::memcpy(&pow2n, &bits, sizeof(pow2n));
  return p;
}
}  // namespace

#if defined(__x86_64__)
namespace {
#define G4_AVX512_OPS __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))

// Cephes expf's degree-5 polynomial, highest power first (Horner).
constexpr float kExpPoly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                               4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

// exp(t) for t <= 0 (Cephes expf: range reduction by ln 2, degree-5 polynomial, ~1 ulp;
// t < -88 gives 0 through scalef).
G4_AVX512_OPS inline __m512 exp_nonpos(__m512 t) {
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(t, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), t);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(kExpPoly[0]);
  for (int k = 1; k < 6; ++k) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpPoly[k]));
  const __m512 r2 = _mm512_mul_ps(r, r);
  const __m512 e = _mm512_add_ps(_mm512_fmadd_ps(p, r2, r), _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(e, n);
}

// gelu_tanh of 16 values: the same argument as the scalar version, tanh(z) as
// sign(z) (1 - e) / (1 + e) with e = exp(-2|z|). Absolute error of tanh ~1e-7, so the GELU
// value is within ~2e-7 relative of the scalar one.
G4_AVX512_OPS inline __m512 gelu16(__m512 x) {
  const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.044715f), x), x), x);
  const __m512 z = _mm512_mul_ps(_mm512_set1_ps(0.7978845608028654f), _mm512_add_ps(x, x3));
  const __m512 az = _mm512_abs_ps(z);
  const __m512 e = exp_nonpos(_mm512_mul_ps(az, _mm512_set1_ps(-2.f)));
  const __m512 one = _mm512_set1_ps(1.f);
  __m512 th = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
  th = _mm512_or_ps(th, _mm512_and_ps(z, _mm512_set1_ps(-0.f)));  // sign of z
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), _mm512_add_ps(one, th));
}

G4_AVX512_OPS void geglu_avx512(float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 x = _mm512_maskz_loadu_ps(m, g + i);
    _mm512_mask_storeu_ps(g + i, m, _mm512_mul_ps(gelu16(x), _mm512_maskz_loadu_ps(m, u + i)));
  }
}

// The same GELU on 8 AVX2 lanes, bit-identical to gelu16: roundscale -> round, abs by mask,
// and scalef(e, n) -> e * 2^n with 2^n built from n's bits. Below n = -126 the factor stays
// 2^-126 instead of vanishing, but then tanh = (1 - e) / (1 + e) rounds to 1 either way (as
// it does for any e below 2^-25).
#define G4_AVX2_OPS __attribute__((target("avx2,fma")))
G4_AVX2_OPS inline __m256 exp_nonpos8(__m256 t) {
  // t = -inf (|x| so large that x^3 overflows) would turn the reduction into inf - inf;
  // from -104 down every exp is below 2^-126 and gives tanh = 1 as on AVX-512.
  t = _mm256_max_ps(t, _mm256_set1_ps(-104.f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), t);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(kExpPoly[0]);
  for (int k = 1; k < 6; ++k) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpPoly[k]));
  const __m256 r2 = _mm256_mul_ps(r, r);
  const __m256 e = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.f));
  const __m256i ni = _mm256_max_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(-126));
  const __m256 pow2n =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
  return _mm256_mul_ps(e, pow2n);
}

G4_AVX2_OPS inline __m256 gelu8(__m256 x) {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), x), x), x);
  const __m256 z = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_add_ps(x, x3));
  const __m256 az = _mm256_andnot_ps(_mm256_set1_ps(-0.f), z);
  const __m256 e = exp_nonpos8(_mm256_mul_ps(az, _mm256_set1_ps(-2.f)));
  const __m256 one = _mm256_set1_ps(1.f);
  __m256 th = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
  th = _mm256_or_ps(th, _mm256_and_ps(z, _mm256_set1_ps(-0.f)));  // sign of z
  return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), _mm256_add_ps(one, th));
}

G4_AVX2_OPS void geglu_avx2(float* g, const float* u, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(g + i, _mm256_mul_ps(gelu8(_mm256_loadu_ps(g + i)), _mm256_loadu_ps(u + i)));
  if (i < n) {  // the tail through a padded copy: the same lanes' arithmetic
    float gt[8] = {}, ut[8] = {};
    for (int64_t k = i; k < n; ++k) gt[k - i] = g[k], ut[k - i] = u[k];
    _mm256_storeu_ps(gt, _mm256_mul_ps(gelu8(_mm256_loadu_ps(gt)), _mm256_loadu_ps(ut)));
    for (int64_t k = i; k < n; ++k) g[k] = gt[k - i];
  }
}
// y = n ln 2 + r (Cephes' two-part ln 2); returns Horner's sum of kExpTaylor[0, kTerms) at r
// (12 terms: e^r; 11: (e^r - 1) / r) and sets pow2n = 2^n. The scalar exp_parts repeats it.
template <int kTerms>
G4_AVX2_OPS inline __m256d exp_parts4(__m256d y, __m256d& r, __m256d& pow2n) {
  const __m256d n = _mm256_round_pd(_mm256_mul_pd(y, _mm256_set1_pd(kLog2e)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  r = _mm256_fnmadd_pd(n, _mm256_set1_pd(kLn2Hi), y);
  r = _mm256_fnmadd_pd(n, _mm256_set1_pd(kLn2Lo), r);
  __m256d p = _mm256_set1_pd(kExpTaylor[0]);
  for (int k = 1; k < kTerms; ++k) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kExpTaylor[k]));
  const __m256i ni = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n));
  pow2n =
      _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(ni, _mm256_set1_epi64x(1023)), 52));
  return p;
}
G4_AVX2_OPS inline __m256d softmax_exp4(__m256d t) {
  __m256d r, pow2n;
  const __m256d p = exp_parts4<12>(t, r, pow2n);
  return _mm256_mul_pd(p, pow2n);
}
G4_AVX2_OPS inline __m256 softmax_exp8(__m256 t) {
  const __m256 tt = _mm256_max_ps(t, _mm256_set1_ps(kSoftmaxExpMin));
  const __m128 lo = _mm256_cvtpd_ps(softmax_exp4(_mm256_cvtps_pd(_mm256_castps256_ps128(tt))));
  const __m128 hi = _mm256_cvtpd_ps(softmax_exp4(_mm256_cvtps_pd(_mm256_extractf128_ps(tt, 1))));
  const __m256 e = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
  const __m256 r0 =
      _mm256_andnot_ps(_mm256_cmp_ps(t, _mm256_set1_ps(kSoftmaxExpMin), _CMP_LT_OQ), e);
  return _mm256_blendv_ps(r0, t, _mm256_cmp_ps(t, t, _CMP_UNORD_Q));  // NaN stays NaN
}

// x[i] = softmax_exp(x[i] - mx) for i < n8 (a multiple of 8), each added in double to
// lane[i % 8].
G4_AVX2_OPS void softmax_exp_avx2(float* x, int64_t n8, float mx, double* lane) {
  __m256d lo = _mm256_loadu_pd(lane), hi = _mm256_loadu_pd(lane + 4);
  const __m256 vm = _mm256_set1_ps(mx);
  for (int64_t i = 0; i < n8; i += 8) {
    const __m256 e = softmax_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    _mm256_storeu_ps(x + i, e);
    lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
  }
  _mm256_storeu_pd(lane, lo);
  _mm256_storeu_pd(lane + 4, hi);
}

// tanh of 4 doubles (softcap's sequence; the scalar softcap repeats it).
G4_AVX2_OPS inline __m256d softcap_tanh4(__m256d x) {
  x = _mm256_min_pd(_mm256_max_pd(x, _mm256_set1_pd(-kTanhClamp)), _mm256_set1_pd(kTanhClamp));
  const __m256d y = _mm256_add_pd(x, x);
  __m256d r, pow2n;
  const __m256d p = exp_parts4<11>(y, r, pow2n);
  const __m256d em1 =
      _mm256_fmadd_pd(pow2n, _mm256_mul_pd(r, p), _mm256_sub_pd(pow2n, _mm256_set1_pd(1.0)));
  return _mm256_div_pd(em1, _mm256_add_pd(em1, _mm256_set1_pd(2.0)));
}

// x[i] = softcap(x[i], cap) for i < n8 (a multiple of 8).
G4_AVX2_OPS void softcap_avx2(float* x, int64_t n8, float cap) {
  const __m256 vc = _mm256_set1_ps(cap);
  for (int64_t i = 0; i < n8; i += 8) {
    const __m256 v = _mm256_div_ps(_mm256_loadu_ps(x + i), vc);
    const __m128 lo = _mm256_cvtpd_ps(softcap_tanh4(_mm256_cvtps_pd(_mm256_castps256_ps128(v))));
    const __m128 hi = _mm256_cvtpd_ps(softcap_tanh4(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
    const __m256 t = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
    const __m256 c = _mm256_mul_ps(vc, t);
    _mm256_storeu_ps(x + i, _mm256_blendv_ps(c, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  }
}
}  // namespace
#endif

float softcap(float z, float cap) {
  const float x = z / cap;
  if (x != x) return x;  // NaN stays NaN (as softcap_avx2's blend)
  const double xd = std::min(std::max(double(x), -kTanhClamp), kTanhClamp);
  double r, pow2n;
  const double p = exp_parts<11>(xd + xd, r, pow2n);
  const double em1 = std::fma(pow2n, r * p, pow2n - 1.0);
  return cap * float(em1 / (em1 + 2.0));
}

void softcap_inplace(float* x, int64_t n, float cap) {
  int64_t i = 0;
#if defined(__x86_64__)
  if (best_isa() != Isa::kScalar) {
    i = n & ~int64_t(7);
    softcap_avx2(x, i, cap);
  }
#endif
  for (; i < n; ++i) x[i] = softcap(x[i], cap);
}

// softmax_exp8's operations on one value (through exp_parts).
float softmax_exp(float t) {
  if (t != t) return t;  // NaN stays NaN (as softmax_exp8's blend)
  if (t < kSoftmaxExpMin) return 0.f;
  double r, pow2n;
  const double p = exp_parts<12>(double(t), r, pow2n);
  return float(p * pow2n);
}

void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps) {
  // Sum of squares in 8 double lanes (element i into lane i % 8; each square is exact in
  // double), then a fixed pairwise order: the same bits on every CPU, and no serial chain of
  // n dependent adds (which made this 3.6% of a prefill).
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) lane[k] += double(x[i + k]) * double(x[i + k]);
  for (int k = 0; i < n; ++i, ++k) lane[k] += double(x[i]) * double(x[i]);
  const double ss =
      ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  const float scale = 1.0f / std::sqrt(float(ss / double(n)) + eps);
  if (w != nullptr) {
    for (i = 0; i < n; ++i) y[i] = x[i] * scale * w[i];
  } else {
    for (i = 0; i < n; ++i) y[i] = x[i] * scale;
  }
}

float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
}

void geglu_fast(float* g, const float* u, int64_t n, Isa isa) {
#if defined(__x86_64__)
  if (isa == Isa::kAvx512) return geglu_avx512(g, u, n);
  if (isa == Isa::kAvx2) return geglu_avx2(g, u, n);
#endif
  (void)isa;
  for (int64_t i = 0; i < n; ++i) g[i] = gelu_tanh(g[i]) * u[i];
}

void geglu_inplace(float* g, const float* u, int64_t n, bool fast) {
  if (fast) return geglu_fast(g, u, n, best_isa());
  for (int64_t i = 0; i < n; ++i) g[i] = gelu_tanh(g[i]) * u[i];
}

void rope_neox(float* x, int n_rot, const float* inv_freq, double pos) {
  const int half = n_rot / 2;
  for (int i = 0; i < half; ++i) {
    const double theta = pos * double(inv_freq[i]);
    const float c = float(std::cos(theta)), s = float(std::sin(theta));
    const float a = x[i], b = x[i + half];
    x[i] = a * c - b * s;
    x[i + half] = b * c + a * s;
  }
}

void rope_angles(int n_rot, const float* inv_freq, double pos, float* cs, float* sn) {
  for (int i = 0; i < n_rot / 2; ++i) {
    const double theta = pos * double(inv_freq[i]);
    cs[i] = float(std::cos(theta));
    sn[i] = float(std::sin(theta));
  }
}

void rope_neox_cs(float* x, int n_rot, const float* cs, const float* sn) {
  const int half = n_rot / 2;
  for (int i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    x[i] = a * cs[i] - b * sn[i];
    x[i + half] = b * cs[i] + a * sn[i];
  }
}

void softmax_stats(float* x, int64_t n, float* stats) {
  float mx = -INFINITY;
  // fmax's NaN rule without the libm call (mx is never NaN): vectorises.
  for (int64_t i = 0; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  // The exponentials (softmax_exp: 8 lanes where the CPU has AVX2, the same bits on one),
  // summed in 8 double lanes (element i into lane i % 8) combined in a fixed order, as
  // rmsnorm: no libm call and no serial chain of n dependent adds (std::exp and one double
  // sum were 19% of a prefill at depth 16K).
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
#if defined(__x86_64__)
  if (best_isa() != Isa::kScalar) {
    i = n & ~int64_t(7);
    softmax_exp_avx2(x, i, mx, lane);
  }
#endif
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) {
      x[i + k] = softmax_exp(x[i + k] - mx);
      lane[k] += double(x[i + k]);
    }
  }
  for (int k = 0; i < n; ++i, ++k) {
    x[i] = softmax_exp(x[i] - mx);
    lane[k] += double(x[i]);
  }
  const double sum =
      ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  const float inv = float(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
  if (stats != nullptr) {
    stats[0] = mx;
    stats[1] = float(sum);
  }
}

void softmax(float* x, int64_t n) {
  softmax_stats(x, n, nullptr);
}

}  // namespace g4
