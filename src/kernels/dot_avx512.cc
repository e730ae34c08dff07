// AVX-512 (F/BW/VL/DQ + VNNI) block dot products, selected at run time like the AVX2 ones.
//
// 32-element block weights (Q4_0, Q5_0, Q8_0) take activations in a packed layout (below)
// built once per activation row, so the inner loop is one VNNI `vpdpbusd` per two blocks and
// per token. K-quant weights (Q4_K, Q6_K) keep Q8_K activation blocks. Every kernel is written
// for N tokens at once (a GEMM tile): the weight blocks are unpacked once per tile and the
// per-token instruction sequence is the same for every N, so a token's result never depends
// on the tile it sat in (batch invariance; tests/unit/kernels_avx512_test.cc).
#include "kernels/dot_simd.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstring>

#include "core/fp16.h"

#define G4_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

namespace g4 {
namespace {

// ---- Packed activations for 32-element blocks ------------------------------------------
// One row of n elements (nb = n / 32 blocks), all arrays contiguous:
//   int8  qs[n]         the Q8_0 quants (x86 llama.cpp rule, identical to quantize_activation)
//   int32 corr[n / 4]   -K * (sum of 4 consecutive quants). VNNI multiplies unsigned bytes by
//                       signed bytes, so weights are fed as w + K >= 0 and corr removes the
//                       K * a part exactly (K = 8 for Q4_0, 16 for Q5_0, 128 for Q8_0).
//   float dy[nb][8]     each block's fp16 scale, widened and repeated for 8 lanes.
// The integer lane sums equal the AVX2 kernel's; only the float accumulation order differs.
struct Packed32 {
  const int8_t* qs;
  const int32_t* corr;
  const float* dy;
};
G4_AVX512 inline Packed32 packed32(const void* a, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(a);
  return {reinterpret_cast<const int8_t*>(p), reinterpret_cast<const int32_t*>(p + n),
          reinterpret_cast<const float*>(p + 2 * n)};
}
size_t packed32_bytes(int64_t n) {
  return size_t(2 * n + (n / 32) * 32);
}

template <int K>
G4_AVX512 void prepare_packed32(const float* x, void* dst, int64_t n) {
  auto* qs = static_cast<int8_t*>(dst);
  auto* corr = reinterpret_cast<int32_t*>(static_cast<uint8_t*>(dst) + n);
  auto* dy = reinterpret_cast<float*>(static_cast<uint8_t*>(dst) + 2 * n);
  const __m512 sign = _mm512_set1_ps(-0.f);
  const __m512i ones = _mm512_set1_epi8(1);
  constexpr int kShift = K == 8 ? 3 : K == 16 ? 4 : 7;
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    const __m512 ax = _mm512_max_ps(_mm512_andnot_ps(sign, x0), _mm512_andnot_ps(sign, x1));
    const float amax = _mm512_reduce_max_ps(ax);
    const float d = amax / 127.f;
    const float id = amax != 0.f ? 127.f / amax : 0.f;
    const uint16_t dh = fp32_to_fp16(d);
    const __m512 vid = _mm512_set1_ps(id);
    // cvtps rounds half to even (MXCSR default), as nearbyint in the reference.
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, vid));
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, vid));
    const __m256i q8 = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm512_cvtepi32_epi8(q0)),
                                               _mm512_cvtepi32_epi8(q1), 1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + kQK * i), q8);
    // Lane sums of 4 quants (1 * q through VNNI), times -K.
    const __m256i s4 =
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm512_castsi512_si256(ones), q8);
    const __m256i c = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(s4, kShift));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(corr + 8 * i), c);
    _mm256_storeu_ps(dy + 8 * i, _mm256_set1_ps(fp16_to_fp32(dh)));
  }
}

// Two weight blocks' fp16 scales as [dA x8, dB x8] (masked load: never reads past block B's d).
template <int BB>
G4_AVX512 inline __m512 pair_scales(const uint8_t* p) {
  const __m512i h = _mm512_maskz_loadu_epi16(__mmask32((1u << (BB / 2 + 1)) - 1), p);
  constexpr short kB = BB / 2;  // word index of block B's scale
  const __m512i idx = _mm512_castsi256_si512(
      _mm256_setr_epi16(0, 0, 0, 0, 0, 0, 0, 0, kB, kB, kB, kB, kB, kB, kB, kB));
  return _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(idx, h)));
}

// 16 bytes of nibbles at p and at q -> [p & 15, p >> 4, q & 15, q >> 4] (64 bytes).
G4_AVX512 inline __m512i nibbles_pair(const uint8_t* p, const uint8_t* q) {
  const __m256i b = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)), 1);
  const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(b), _mm256_srli_epi16(b, 4), 1);
  const __m512i r = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 4, 5, 2, 3, 6, 7), z);
  return _mm512_and_si512(r, _mm512_set1_epi8(0xF));
}

struct UnpackQ8_0 {
  static constexpr int kBB = 34;
  G4_AVX512 static __m512i pair(const uint8_t* p) {
    const __m512i w = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2))),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + kBB + 2)), 1);
    return _mm512_xor_si512(w, _mm512_set1_epi8(char(0x80)));  // w + 128
  }
  G4_AVX512 static __m256i one(const uint8_t* p) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2)),
                            _mm256_set1_epi8(char(0x80)));
  }
};

struct UnpackQ4_0 {
  static constexpr int kBB = 18;
  G4_AVX512 static __m512i pair(const uint8_t* p) { return nibbles_pair(p + 2, p + kBB + 2); }
  G4_AVX512 static __m256i one(const uint8_t* p) {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0xF));
  }
};

struct UnpackQ5_0 {
  static constexpr int kBB = 22;
  G4_AVX512 static __m512i pair(const uint8_t* p) {
    uint32_t ha, hb;
    std::memcpy(&ha, p + 2, 4);
    std::memcpy(&hb, p + kBB + 2, 4);
    const __m512i lo = nibbles_pair(p + 6, p + kBB + 6);
    const __mmask64 k = _cvtu64_mask64(uint64_t(ha) | (uint64_t(hb) << 32));
    return _mm512_mask_add_epi8(lo, k, lo, _mm512_set1_epi8(16));  // fifth bit: value + 16
  }
  G4_AVX512 static __m256i one(const uint8_t* p) {
    uint32_t h;
    std::memcpy(&h, p + 2, 4);
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 6));
    const __m256i lo =
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0xF));
    return _mm256_mask_add_epi8(lo, _cvtu32_mask32(h), lo, _mm256_set1_epi8(16));
  }
};

// out[t] = sum over blocks of dw * dy * (integer block dot), for N packed activation rows.
// Lanes 0-7 of acc take the even blocks, lanes 8-15 the odd ones; an odd last block goes to
// a 256-bit accumulator added at the end.
template <int N, typename U>
G4_AVX512 void dot_q32_n(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* p = static_cast<const uint8_t*>(w);
  const int64_t nb = n / kQK;
  Packed32 y[N];
  __m512 acc[N];
  for (int t = 0; t < N; ++t) {
    y[t] = packed32(a[t], n);
    acc[t] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2, p += 2 * U::kBB) {
    const __m512i u = U::pair(p);
    const __m512 dx = pair_scales<U::kBB>(p);
    for (int t = 0; t < N; ++t) {
      __m512i s = _mm512_loadu_si512(y[t].corr + 8 * i);
      s = _mm512_dpbusd_epi32(s, u, _mm512_loadu_si512(y[t].qs + kQK * i));
      const __m512 d = _mm512_mul_ps(dx, _mm512_loadu_ps(y[t].dy + 8 * i));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, acc[t]);
    }
  }
  if (i < nb) {
    const __m256i u = U::one(p);
    uint16_t dh;
    std::memcpy(&dh, p, 2);
    const __m256 dx = _mm256_set1_ps(fp16_to_fp32(dh));
    for (int t = 0; t < N; ++t) {
      __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[t].corr + 8 * i));
      s = _mm256_dpbusd_epi32(
          s, u, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[t].qs + kQK * i)));
      const __m256 d = _mm256_mul_ps(dx, _mm256_loadu_ps(y[t].dy + 8 * i));
      const __m256 tail = _mm256_mul_ps(_mm256_cvtepi32_ps(s), d);
      acc[t] = _mm512_add_ps(acc[t], _mm512_zextps256_ps512(tail));  // upper lanes: + 0
    }
  }
  for (int t = 0; t < N; ++t) out[t] = _mm512_reduce_add_ps(acc[t]);
}

// ---- K-quants against Q8_K activation blocks --------------------------------------------

// The 8 six-bit scales (bytes 0-7) and mins (bytes 8-15) of a Q4_K block (llama.cpp's trick).
inline void q4k_scales(const uint8_t* s, uint32_t utmp[4]) {
  constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
  std::memcpy(utmp, s, 12);
  utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
  const uint32_t uaux = utmp[1] & kmask1;
  utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
  utmp[2] = uaux;
  utmp[0] &= kmask1;
}

G4_AVX512 inline int hsum_i32_256(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// Same integers and the same float formula per super-block as the AVX2 kernel (so the
// results are bit-identical to it); 64 elements per instruction instead of 32.
template <int N>
G4_AVX512 void dot_q4_k_n(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockQ4_K*>(w);
  const __m256i m4 = _mm256_set1_epi8(0xF);
  float sum[N];
  for (int t = 0; t < N; ++t) sum[t] = 0.f;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    uint32_t utmp[4];
    q4k_scales(x[i].scales, utmp);
    // scales as int16: [sc(2j) x16, sc(2j+1) x16] for each j; mins as pairs for the bsums.
    const __m512i sc16 = _mm512_cvtepu8_epi16(_mm256_castsi128_si256(
        _mm_cvtsi64_si128(int64_t(uint64_t(utmp[0]) | (uint64_t(utmp[1]) << 32)))));
    __m512i scv[4];
    for (int j = 0; j < 4; ++j) {
      const __m512i idx =
          _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(short(2 * j))),
                             _mm256_set1_epi16(short(2 * j + 1)), 1);
      scv[j] = _mm512_permutexvar_epi16(idx, sc16);
    }
    const __m128i mins8 = _mm_cvtsi64_si128(int64_t(uint64_t(utmp[2]) | (uint64_t(utmp[3]) << 32)));
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins8, mins8));
    __m512i q[4];
    for (int j = 0; j < 4; ++j) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs + 32 * j));
      q[j] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(b, m4)),
                                _mm256_and_si256(_mm256_srli_epi16(b, 4), m4), 1);
    }
    const float dx = fp16_to_fp32(x[i].d), dmx = fp16_to_fp32(x[i].dmin);
    for (int t = 0; t < N; ++t) {
      const BlockQ8_K& y = static_cast<const BlockQ8_K*>(a[t])[i];
      __m512i acc = _mm512_setzero_si512();
      for (int j = 0; j < 4; ++j) {
        const __m512i y8 = _mm512_loadu_si512(y.qs + 64 * j);
        acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(q[j], y8), scv[j]));
      }
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.bsums));
      const int summ = hsum_i32_256(_mm256_madd_epi16(bs, mins));
      const float d = dx * y.d, dmin = dmx * y.d;
      sum[t] += d * float(_mm512_reduce_add_epi32(acc)) - dmin * float(summ);
    }
  }
  for (int t = 0; t < N; ++t) out[t] = sum[t];
}

template <int N>
G4_AVX512 void dot_q6_k_n(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockQ6_K*>(w);
  const __m512i m4 = _mm512_set1_epi8(0xF);
  const __m512i m3 = _mm512_set1_epi8(3);
  // qh bit pairs: groups 0/1 use shifts 0/2, groups 2/3 use shifts 4/6 (per 256-bit half).
  const __m512i sh01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
  const __m512i sh23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
  float sum[N];
  for (int t = 0; t < N; ++t) sum[t] = 0.f;
  for (int64_t i = 0; i < n / kQKK; ++i) {
    // scale of each 16-element group as int16, spread to the 32 int16 lanes of 64 elements.
    const __m512i sc16 = _mm512_castsi256_si512(
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales))));
    __m512i scv[4];
    for (int g = 0; g < 4; ++g) {
      const __m512i idx = _mm512_setr_epi32(
          (4 * g) * 0x10001, (4 * g) * 0x10001, (4 * g) * 0x10001, (4 * g) * 0x10001,
          (4 * g + 1) * 0x10001, (4 * g + 1) * 0x10001, (4 * g + 1) * 0x10001,
          (4 * g + 1) * 0x10001, (4 * g + 2) * 0x10001, (4 * g + 2) * 0x10001,
          (4 * g + 2) * 0x10001, (4 * g + 2) * 0x10001, (4 * g + 3) * 0x10001,
          (4 * g + 3) * 0x10001, (4 * g + 3) * 0x10001, (4 * g + 3) * 0x10001);
      scv[g] = _mm512_permutexvar_epi16(idx, sc16);
    }
    __m512i q[4];  // 64 six-bit values each: elements 64k .. 64k+63
    for (int h = 0; h < 2; ++h) {
      const __m512i l = _mm512_loadu_si512(x[i].ql + 64 * h);
      const __m512i qh = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qh + 32 * h)));
      const __m512i h01 = _mm512_and_si512(_mm512_srlv_epi16(qh, sh01), m3);
      const __m512i h23 = _mm512_and_si512(_mm512_srlv_epi16(qh, sh23), m3);
      q[2 * h] = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_slli_epi16(h01, 4));
      q[2 * h + 1] =
          _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), _mm512_slli_epi16(h23, 4));
    }
    const __m256i sc_b = _mm512_castsi512_si256(sc16);
    const float dx = fp16_to_fp32(x[i].d);
    for (int t = 0; t < N; ++t) {
      const BlockQ8_K& y = static_cast<const BlockQ8_K*>(a[t])[i];
      __m512i acc = _mm512_setzero_si512();
      for (int k = 0; k < 4; ++k) {
        const __m512i y8 = _mm512_loadu_si512(y.qs + 64 * k);
        acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(q[k], y8), scv[k]));
      }
      // The -32 offset of every value: 32 * sum over groups of scale * (sum of 16 quants).
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y.bsums));
      const int off = hsum_i32_256(_mm256_madd_epi16(bs, sc_b));
      sum[t] += dx * y.d * float(_mm512_reduce_add_epi32(acc) - 32 * off);
    }
  }
  for (int t = 0; t < N; ++t) out[t] = sum[t];
}

// ---- f32 / f16 / bf16 weights against f32 activations ------------------------------------

// f32 / f16 rows: bit-identical to the AVX2 kernels (whose two 8-lane accumulators over
// elements 16k..16k+7 and 16k+8..16k+15 are exactly the halves of one 16-lane register),
// with half the instructions. The tiny-model tests sit close to their tolerance, so these
// keep the AVX2 summation order rather than a new one.
G4_AVX512 inline float hsum_ps_avx2_order(__m512 acc) {
  const __m256 v = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  __m128 sh = _mm_movehdup_ps(lo);
  lo = _mm_add_ps(lo, sh);
  sh = _mm_movehl_ps(sh, lo);
  lo = _mm_add_ss(lo, sh);
  return _mm_cvtss_f32(lo);
}

G4_AVX512 float dot_f32(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const float*>(w);
  const auto* y = static_cast<const float*>(a);
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), acc);
  float s = hsum_ps_avx2_order(acc);
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

G4_AVX512 float dot_f16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const float*>(a);
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 xv = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)));
    acc = _mm512_fmadd_ps(xv, _mm512_loadu_ps(y + i), acc);
  }
  float s = hsum_ps_avx2_order(acc);
  for (; i < n; ++i) s += fp16_to_fp32(x[i]) * y[i];
  return s;
}

// bf16 rows: 16-lane accumulator, the last n % 16 elements through a masked load.
G4_AVX512 float dot_bf16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const float*>(a);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512i ix = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, x + i));
    acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(ix, 16)),
                          _mm512_maskz_loadu_ps(m, y + i), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

template <void (*F)(int64_t, const void*, const void* const*, float*)>
G4_AVX512 float one(int64_t n, const void* w, const void* a) {
  float r;
  F(n, w, &a, &r);
  return r;
}

void copy_f32(const float* x, void* dst, int64_t n) {
  std::memcpy(dst, x, sizeof(float) * size_t(n));
}
size_t f32_bytes(int64_t n) {
  return sizeof(float) * size_t(n);
}
// quantize_activation(kQ8_K) vectorised, bit for bit: the scale comes from the first element
// of largest magnitude (with its sign), values round half to even (cvtps under the default
// MXCSR, as the magic-number nearest_int), 16-element sums.
G4_AVX512 void to_q8_k(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ8_K*>(dst);
  const __m512 sign = _mm512_set1_ps(-0.f);
  for (int64_t i = 0; i < n / kQKK; ++i, x += kQKK) {
    __m512 ax = _mm512_setzero_ps();
    for (int k = 0; k < 16; ++k)
      ax = _mm512_max_ps(ax, _mm512_andnot_ps(sign, _mm512_loadu_ps(x + 16 * k)));
    const float amax = _mm512_reduce_max_ps(ax);
    if (amax == 0.f) {
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    float max = 0.f;
    const __m512 vamax = _mm512_set1_ps(amax);
    for (int k = 0; k < 16; ++k) {
      const __mmask16 m = _mm512_cmp_ps_mask(_mm512_andnot_ps(sign, _mm512_loadu_ps(x + 16 * k)),
                                             vamax, _CMP_EQ_OQ);
      if (m != 0) {
        max = x[16 * k + __builtin_ctz(unsigned(m))];
        break;
      }
    }
    const float iscale = -127.f / max;
    const __m512 vs = _mm512_set1_ps(iscale);
    for (int k = 0; k < 16; ++k) {
      __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(vs, _mm512_loadu_ps(x + 16 * k)));
      v = _mm512_min_epi32(v, _mm512_set1_epi32(127));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs + 16 * k), _mm512_cvtepi32_epi8(v));
      y[i].bsums[k] = int16_t(_mm512_reduce_add_epi32(v));
    }
    y[i].d = 1.f / iscale;
  }
}
size_t q8_k_bytes(int64_t n) {
  return row_bytes(DType::kQ8_K, n);
}

template <typename U, int K>
KernelSet q32_set() {
  return {prepare_packed32<K>, packed32_bytes, one<dot_q32_n<1, U>>, dot_q32_n<4, U>,
          dot_q32_n<8, U>};
}

}  // namespace

KernelSet kernels_avx512(DType w) {
  switch (w) {
    case DType::kF32:
      return {copy_f32, f32_bytes, dot_f32, nullptr, nullptr};
    case DType::kF16:
      return {copy_f32, f32_bytes, dot_f16, nullptr, nullptr};
    case DType::kBF16:
      return {copy_f32, f32_bytes, dot_bf16, nullptr, nullptr};
    case DType::kQ4_0:
      return q32_set<UnpackQ4_0, 8>();
    case DType::kQ5_0:
      return q32_set<UnpackQ5_0, 16>();
    case DType::kQ8_0:
      return q32_set<UnpackQ8_0, 128>();
    case DType::kQ4_K:
      return {to_q8_k, q8_k_bytes, one<dot_q4_k_n<1>>, dot_q4_k_n<4>, dot_q4_k_n<8>};
    case DType::kQ6_K:
      return {to_q8_k, q8_k_bytes, one<dot_q6_k_n<1>>, dot_q6_k_n<4>, dot_q6_k_n<8>};
    default:
      return {};
  }
}

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
}

}  // namespace g4

#else
namespace g4 {
KernelSet kernels_avx512(DType) {
  return {};
}
bool cpu_has_avx512() {
  return false;
}
}  // namespace g4
#endif
