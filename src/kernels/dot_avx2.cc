// AVX2+FMA+F16C block dot products. Compiled with function-level target attributes and
// selected at run time (kernels/matmul.cc), so the binary still runs on older CPUs.
// Each must equal vec_dot_ref() up to float summation order (tests/unit/kernels_test.cc).
#include "kernels/dot_simd.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

#include <cstring>

#include "core/fp16.h"

#define G4_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace g4 {
namespace {

G4_AVX2 inline float hsum_ps(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 sh = _mm_movehdup_ps(lo);
  lo = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, lo);
  lo = _mm_add_ss(lo, sh);
  return _mm_cvtss_f32(lo);
}

G4_AVX2 inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// Signed int8 x signed int8 products, pairwise summed into 8 int32 lanes.
G4_AVX2 inline __m256i dot_i8(__m256i x, __m256i y) {
  const __m256i ax = _mm256_sign_epi8(x, x);
  const __m256i sy = _mm256_sign_epi8(y, x);
  const __m256i p16 = _mm256_maddubs_epi16(ax, sy);
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// 32 bits -> 32 bytes of 0xFF (bit set) or 0x00.
G4_AVX2 inline __m256i bytes_from_bits32(const uint8_t* p) {
  uint32_t x32;
  std::memcpy(&x32, p, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101,
                                         0x0000000000000000);
  __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32(int(x32)), shuf);
  b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

// 16 bytes of nibbles -> 32 bytes: low nibbles in the low half, high nibbles in the high half.
G4_AVX2 inline __m256i nibbles32(const uint8_t* p) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
  return _mm256_and_si256(b, _mm256_set1_epi8(0xF));
}

// Each kernel is written for N activation rows at once so a weight block is loaded and
// unpacked once for N tokens (prefill, batched decode). The instruction sequence per token
// is the same for every N, so a token's result does not depend on how it was batched.

// 32-weight blocks (Q4_0 / Q5_0 / Q8_0) against Q8_0 activations.
template <int N, typename Block, typename Unpack>
G4_AVX2 inline void dot_q32_n(int64_t n, const void* w, const void* const* a, float* out,
                              Unpack unpack) {
  const auto* x = static_cast<const Block*>(w);
  __m256 acc[N];
  for (int t = 0; t < N; ++t) acc[t] = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK; ++i) {
    const float dx = fp16_to_fp32(x[i].d);
    const __m256i qx = unpack(x[i]);
    for (int t = 0; t < N; ++t) {
      const BlockQ8_0& y = static_cast<const BlockQ8_0*>(a[t])[i];
      const __m256 d = _mm256_set1_ps(dx * fp16_to_fp32(y.d));
      const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.qs));
      acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, qy)), acc[t]);
    }
  }
  for (int t = 0; t < N; ++t) out[t] = hsum_ps(acc[t]);
}

template <int N>
G4_AVX2 void dot_q8_0_n(int64_t n, const void* w, const void* const* a, float* out) {
  dot_q32_n<N, BlockQ8_0>(n, w, a, out, [](const BlockQ8_0& b) G4_AVX2 {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
  });
}

template <int N>
G4_AVX2 void dot_q4_0_n(int64_t n, const void* w, const void* const* a, float* out) {
  dot_q32_n<N, BlockQ4_0>(n, w, a, out, [](const BlockQ4_0& b) G4_AVX2 {
    return _mm256_sub_epi8(nibbles32(b.qs), _mm256_set1_epi8(8));
  });
}

template <int N>
G4_AVX2 void dot_q5_0_n(int64_t n, const void* w, const void* const* a, float* out) {
  dot_q32_n<N, BlockQ5_0>(n, w, a, out, [](const BlockQ5_0& b) G4_AVX2 {
    // A clear fifth bit means value - 16: OR in 0xF0 (two's complement of nibble - 16).
    const __m256i bxhi = _mm256_andnot_si256(bytes_from_bits32(b.qh), _mm256_set1_epi8(char(0xF0)));
    return _mm256_or_si256(nibbles32(b.qs), bxhi);
  });
}

template <int N>
G4_AVX2 void dot_q4_k_n(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockQ4_K*>(w);
  const __m256i m4 = _mm256_set1_epi8(0xF);
  float sum[N];
  for (int t = 0; t < N; ++t) sum[t] = 0.f;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    uint8_t sc[8], mn[8];
    for (int s = 0; s < 8; ++s) get_scale_min_k4(s, x[i].scales, &sc[s], &mn[s]);
    __m256i acc[N];
    for (int t = 0; t < N; ++t) acc[t] = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 32 * j));
      const __m256i lo = _mm256_and_si256(b, m4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
      const __m256i s0 = _mm256_set1_epi16(sc[2 * j]), s1 = _mm256_set1_epi16(sc[2 * j + 1]);
      for (int t = 0; t < N; ++t) {
        const int8_t* q8 = static_cast<const BlockQ8_K*>(a[t])[i].qs;
        const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 64 * j));
        const __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8 + 64 * j + 32));
        const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), s0);
        const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), s1);
        acc[t] = _mm256_add_epi32(acc[t], _mm256_add_epi32(p0, p1));
      }
    }
    const float dx = fp16_to_fp32(x[i].d), dmx = fp16_to_fp32(x[i].dmin);
    for (int t = 0; t < N; ++t) {
      const BlockQ8_K& y = static_cast<const BlockQ8_K*>(a[t])[i];
      int summ = 0;
      for (int s = 0; s < 8; ++s) summ += mn[s] * (y.bsums[2 * s] + y.bsums[2 * s + 1]);
      const float d = dx * y.d, dmin = dmx * y.d;
      sum[t] += d * float(hsum_i32(acc[t])) - dmin * float(summ);
    }
  }
  for (int t = 0; t < N; ++t) out[t] = sum[t];
}

template <int N>
G4_AVX2 void dot_q6_k_n(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockQ6_K*>(w);
  const __m256i m4 = _mm256_set1_epi8(0xF);
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m256i m32 = _mm256_set1_epi8(32);
  float sum[N];
  for (int t = 0; t < N; ++t) sum[t] = 0.f;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    __m256i acc[N];
    for (int t = 0; t < N; ++t) acc[t] = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = x[i].ql + 64 * h;
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh + 32 * h));
      __m256i q6[4];
      q6[0] =
          _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
      q6[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
      q6[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
      q6[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                              _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
      for (int g = 0; g < 4; ++g) {
        const int s0 = x[i].scales[8 * h + 2 * g];
        const int s1 = x[i].scales[8 * h + 2 * g + 1];
        const __m256i scv =
            _mm256_set_m128i(_mm_set1_epi16(int16_t(s1)), _mm_set1_epi16(int16_t(s0)));
        for (int t = 0; t < N; ++t) {
          const int8_t* q8p = static_cast<const BlockQ8_K*>(a[t])[i].qs + 128 * h + 32 * g;
          const __m256i q8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8p));
          const __m256i p =
              _mm256_sub_epi16(_mm256_maddubs_epi16(q6[g], q8), _mm256_maddubs_epi16(m32, q8));
          acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(p, scv));
        }
      }
    }
    const float dx = fp16_to_fp32(x[i].d);
    for (int t = 0; t < N; ++t) {
      sum[t] += dx * static_cast<const BlockQ8_K*>(a[t])[i].d * float(hsum_i32(acc[t]));
    }
  }
  for (int t = 0; t < N; ++t) out[t] = sum[t];
}

template <void (*F)(int64_t, const void*, const void* const*, float*)>
G4_AVX2 float one(int64_t n, const void* w, const void* a) {
  float r;
  F(n, w, &a, &r);
  return r;
}

G4_AVX2 float dot_f32(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const float*>(w);
  const auto* y = static_cast<const float*>(a);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), acc1);
  }
  float s = hsum_ps(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

G4_AVX2 float dot_f16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const float*>(a);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 x0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    const __m256 x1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i + 8)));
    acc0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(y + i), acc0);
    acc1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(y + i + 8), acc1);
  }
  float s = hsum_ps(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += fp16_to_fp32(x[i]) * y[i];
  return s;
}

G4_AVX2 float dot_bf16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const float*>(a);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i ix =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    acc = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(ix, 16)), _mm256_loadu_ps(y + i),
                          acc);
  }
  float s = hsum_ps(acc);
  for (; i < n; ++i) s += bf16_to_fp32(x[i]) * y[i];
  return s;
}

}  // namespace

VecDotFn vec_dot_avx2(DType w) {
  switch (w) {
    case DType::kF32:
      return dot_f32;
    case DType::kF16:
      return dot_f16;
    case DType::kBF16:
      return dot_bf16;
    case DType::kQ4_0:
      return one<dot_q4_0_n<1>>;
    case DType::kQ5_0:
      return one<dot_q5_0_n<1>>;
    case DType::kQ8_0:
      return one<dot_q8_0_n<1>>;
    case DType::kQ4_K:
      return one<dot_q4_k_n<1>>;
    case DType::kQ6_K:
      return one<dot_q6_k_n<1>>;
    default:
      return nullptr;
  }
}

VecDot4Fn vec_dot4_avx2(DType w) {
  switch (w) {
    case DType::kQ4_0:
      return dot_q4_0_n<4>;
    case DType::kQ5_0:
      return dot_q5_0_n<4>;
    case DType::kQ8_0:
      return dot_q8_0_n<4>;
    case DType::kQ4_K:
      return dot_q4_k_n<4>;
    case DType::kQ6_K:
      return dot_q6_k_n<4>;
    default:
      return nullptr;
  }
}

bool cpu_has_avx2() {
  // F16C is CPUID.1:ECX bit 29 (clang's __builtin_cpu_supports does not know "f16c").
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool f16c = (c >> 29) & 1;
  __builtin_cpu_init();
  return f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

}  // namespace g4

#else
namespace g4 {
VecDotFn vec_dot_avx2(DType) {
  return nullptr;
}
VecDot4Fn vec_dot4_avx2(DType w) {
  switch (w) {
    case DType::kQ4_0:
      return dot_q4_0_n<4>;
    case DType::kQ5_0:
      return dot_q5_0_n<4>;
    case DType::kQ8_0:
      return dot_q8_0_n<4>;
    case DType::kQ4_K:
      return dot_q4_k_n<4>;
    case DType::kQ6_K:
      return dot_q6_k_n<4>;
    default:
      return nullptr;
  }
}

bool cpu_has_avx2() {
  return false;
}
}  // namespace g4
#endif
