// AVX2 kernels for R16 (16-row interleaved) weights; layout in kernels/repack.h.
//
// The same arithmetic as the AVX-512 VNNI kernels (packed_avx512.cc) and packed_group_ref,
// bit for bit, on 256-bit registers: a 16-row group is two halves of 8 row lanes (bytes
// [32h, 32h + 32) of every 64-byte quant vector, 16-byte halves of the scale lines), run one
// after the other so a half's 8 unpacked quant vectors and the tile's accumulators fit the 16
// registers (the second half reads the group from L1/L2). Without vpdpbusd, a 4-quant chunk's
// integer dot per row is vpmaddubsw (pairs into int16) and vpmaddwd against ones (into int32);
// pairs are summed in int16 while they cannot overflow (value bounds below), so the integer
// sums are exact and equal VNNI's. Q8_0 quants are signed here (the stored value + 128 would
// overflow vpmaddubsw's int16 pairs): |w| against sign(a, w), as llama.cpp's AVX2 Q8_0 dot.
// The float part is per lane the AVX-512 kernels' sequence, so every result is the same.
#include "kernels/repack.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstring>

#include "core/fp16.h"
#include "kernels/dot_simd.h"

#define G4_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace g4 {
namespace {

G4_AVX2 inline int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

G4_AVX2 inline float hmax_ps(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// The Q8_0 activation rule of quantize_activation in the packed layout (prepare_packed_ref).
G4_AVX2 void prepare_packed_avx2(const float* x, void* dst, int64_t n) {
  const int64_t nb = n / kQK;
  auto* qs = static_cast<int8_t*>(dst);
  const __m256 sign = _mm256_set1_ps(-0.f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    __m256 v[4];
    __m256 ax = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(x + 8 * k);
      ax = _mm256_max_ps(ax, _mm256_andnot_ps(sign, v[k]));
    }
    const float amax = hmax_ps(ax);
    const float id = amax != 0.f ? 127.f / amax : 0.f;
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], vid));
    // int32 -> int8 (|q| <= 127, no saturation); the packs interleave 128-bit lanes, the
    // permutation puts the 4-byte groups back in element order.
    const __m256i p =
        _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + kQK * i),
                        _mm256_permutevar8x32_epi32(p, order));
    const int32_t s0 = hsum_i32(_mm256_add_epi32(q[0], q[1]));
    const int32_t s1 = hsum_i32(_mm256_add_epi32(q[2], q[3]));
    store_packed_act_block(dst, n, i, s0, s1, fp16_to_fp32(fp32_to_fp16(amax / 127.f)));
  }
}

G4_AVX2 inline __m256i load32(const uint8_t* p) {
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(p));
}

// Chunks [c0, c0 + K) of unsigned quants w against the token's broadcast activation chunks,
// summed in int16 and widened to int32 once: each caller's K keeps K * 2 * max(w) * 127 (the
// activations are in [-127, 127]) below 2^15.
template <int K>
G4_AVX2 inline __m256i chunk_sums(const __m256i* w, const int32_t* x, int c0) {
  __m256i s = _mm256_maddubs_epi16(w[c0], _mm256_set1_epi32(x[c0]));
  for (int c = c0 + 1; c < c0 + K; ++c)
    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(w[c], _mm256_set1_epi32(x[c])));
  return _mm256_madd_epi16(s, _mm256_set1_epi16(1));
}

// The fifth bits of kQ5 chunk c for half h (bit r*4+k of the 64-bit mask, 32 bits per half)
// as 16 in each selected byte.
G4_AVX2 inline __m256i fifth_bits(const uint8_t* mask) {
  uint32_t bits;
  std::memcpy(&bits, mask, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(int32_t(bits)),
      _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit),
                          _mm256_set1_epi8(16));
}

// Halves [H0, H1) of one 16-row group of a 32-block kind (kQ8, kQ5, kQ4) against N prepared
// activation rows: out[t * ostride + 8h + r]. One token takes both halves per block (one
// sweep over the group); tiles of 4 one half per sweep.
template <int N, PackKind KIND, int H0, int H1>
G4_AVX2 void half_n(int64_t n, const uint8_t* grp, const void* const* a, float* out,
                    size_t ostride) {
  static_assert(N * (H1 - H0) <= 4, "8 quant vectors and the accumulators must fit 16 registers");
  const int64_t nb = n / kQK;
  constexpr int kShift = KIND == PackKind::kQ8 ? 0 : KIND == PackKind::kQ5 ? 3 : 4;
  PackedActView act[N];
  __m256 acc[2][N];
  for (int t = 0; t < N; ++t) {
    act[t] = PackedActView(a[t], n);
    acc[0][t] = acc[1][t] = _mm256_setzero_ps();
  }
  const __m256i lo4 = _mm256_set1_epi8(0x0F), b128 = _mm256_set1_epi8(char(0x80));
  constexpr int kPairBytes = 64 + 2 * int(packed_q_block_bytes(KIND));
  for (int64_t j = 0; j < nb; ++j) {
    if (H0 == 0 && j % 2 == 0)  // the first half's pass; the second reads what it brought in
      prefetch_weights<N>(grp + packed_scales_offset(KIND, j), kPairBytes);
    for (int h = H0; h < H1; ++h) {
      const uint8_t* q = grp + packed_quants_offset(KIND, j) + 32 * h;
      const __m256 dw = _mm256_cvtph_ps(_mm_load_si128(
          reinterpret_cast<const __m128i*>(grp + packed_scales_offset(KIND, j) + 16 * h)));
      __m256i w[8];
      if constexpr (KIND == PackKind::kQ8) {
        for (int c = 0; c < 8; ++c) w[c] = _mm256_xor_si256(load32(q + 64 * c), b128);  // signed
      } else {
        for (int m = 0; m < 4; ++m) {
          const __m256i p = load32(q + 64 * m);
          w[2 * m] = _mm256_and_si256(p, lo4);
          w[2 * m + 1] = _mm256_and_si256(_mm256_srli_epi16(p, 4), lo4);
        }
        if constexpr (KIND == PackKind::kQ5) {
          const uint8_t* masks = grp + packed_quants_offset(KIND, j) + 256 + 4 * h;
          for (int c = 0; c < 8; ++c) w[c] = _mm256_add_epi8(w[c], fifth_bits(masks + 8 * c));
        }
      }
      for (int t = 0; t < N; ++t) {
        const int32_t* x = act[t].qs + 8 * j;
        __m256i s;
        if constexpr (KIND == PackKind::kQ8) {
          // |w| * sign(a, w) per byte: pairs at most 2 * 128 * 127 < 2^15.
          s = _mm256_setzero_si256();
          for (int c = 0; c < 8; ++c) {
            const __m256i xa = _mm256_set1_epi32(x[c]);
            const __m256i p =
                _mm256_maddubs_epi16(_mm256_abs_epi8(w[c]), _mm256_sign_epi8(xa, w[c]));
            s = _mm256_add_epi32(s, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
          }
        } else {
          // Quants at most 31: four chunks' pairs sum to at most 8 * 31 * 127 < 2^15.
          // corr = -128 * sum(a); value + K operands need -K * sum(a) (an exact shift).
          s = _mm256_add_epi32(_mm256_set1_epi32(act[t].corr[j] >> kShift), chunk_sums<4>(w, x, 0));
          s = _mm256_add_epi32(s, chunk_sums<4>(w, x, 4));
        }
        const __m256 d = _mm256_mul_ps(dw, _mm256_set1_ps(act[t].d[j]));
        acc[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc[h][t]);
      }
    }
  }
  for (int h = H0; h < H1; ++h)
    for (int t = 0; t < N; ++t) _mm256_storeu_ps(out + size_t(t) * ostride + 8 * h, acc[h][t]);
}

// 8 row-scale bytes of a K-quant head as floats (kKMin's 6-bit ones unsigned, kKTwo's signed).
template <bool kUnsigned>
G4_AVX2 inline __m256 widen8(const uint8_t* p) {
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtepi32_ps(kUnsigned ? _mm256_cvtepu8_epi32(v) : _mm256_cvtepi8_epi32(v));
}

// Halves [H0, H1) of a K-quant group (kKMin: Q4_K, kKTwo: Q6_K); packed_avx512.cc's group_k
// per lane.
template <int N, bool kMin, int H0, int H1>
G4_AVX2 void half_k(int64_t n, const uint8_t* grp, const void* const* a, float* out,
                    size_t ostride) {
  static_assert(N * (H1 - H0) <= 4, "8 quant vectors and the accumulators must fit 16 registers");
  const int64_t nb = n / kQK;
  PackedActView act[N];
  __m256 acc[2][N];
  for (int t = 0; t < N; ++t) {
    act[t] = PackedActView(a[t], n);
    acc[0][t] = acc[1][t] = _mm256_setzero_ps();
  }
  constexpr PackKind kKind = kMin ? PackKind::kKMin : PackKind::kKTwo;
  constexpr size_t kQuant = packed_k_quant_bytes(kKind);
  const __m256i lo4 = _mm256_set1_epi8(0x0F), hi2 = _mm256_set1_epi8(0x30);
  __m256 d[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, dmin[2] = {d[0], d[0]};
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* head = grp + packed_k_head_offset(kKind, j);
    const int s = int(j % 8);
    const uint8_t* q = grp + packed_k_quants_offset(kKind, j);
    if (H0 == 0) {
      if (s == 0) prefetch_weights<N>(head, int(kKHeadBytes));
      prefetch_weights<N>(q, int(kQuant));
    }
    for (int h = H0; h < H1; ++h) {
      if (s == 0) {
        d[h] = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(head + 16 * h)));
        if (kMin)
          dmin[h] =
              _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(head + 32 + 16 * h)));
      }
      const __m256 x = _mm256_mul_ps(d[h], widen8<kMin>(head + 64 + (kMin ? 16 : 32) * s + 8 * h));
      const __m256 y = kMin ? _mm256_mul_ps(dmin[h], widen8<kMin>(head + 192 + 16 * s + 8 * h))
                            : _mm256_mul_ps(d[h], widen8<kMin>(head + 64 + 32 * s + 16 + 8 * h));
      __m256i w[8];
      for (int m = 0; m < 4; ++m) {  // kQ4's nibble order
        const __m256i p = load32(q + 64 * m + 32 * h);
        w[2 * m] = _mm256_and_si256(p, lo4);
        w[2 * m + 1] = _mm256_and_si256(_mm256_srli_epi16(p, 4), lo4);
      }
      if constexpr (!kMin) {  // chunk 4i+k's high bits at bits 2k of vector i, moved to bits 4-5
        for (int i = 0; i < 2; ++i) {
          const __m256i hb = load32(q + 256 + 64 * i + 32 * h);
          const __m256i at4[4] = {_mm256_slli_epi16(hb, 4), _mm256_slli_epi16(hb, 2), hb,
                                  _mm256_srli_epi16(hb, 2)};
          for (int k = 0; k < 4; ++k)
            w[4 * i + k] = _mm256_or_si256(w[4 * i + k], _mm256_and_si256(at4[k], hi2));
        }
      }
      for (int t = 0; t < N; ++t) {
        const int32_t* xq = act[t].qs + 8 * j;
        const float dt = act[t].d[j];
        const __m256 vd = _mm256_set1_ps(dt);
        if (kMin) {
          // Quants at most 15: four chunks' pairs sum to at most 8 * 15 * 127 < 2^15.
          const __m256i si = _mm256_add_epi32(chunk_sums<4>(w, xq, 0), chunk_sums<4>(w, xq, 4));
          acc[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), _mm256_mul_ps(x, vd), acc[h][t]);
          const float hs = dt * float(act[t].h0[j] + act[t].h1[j]);
          acc[h][t] = _mm256_fnmadd_ps(y, _mm256_set1_ps(hs), acc[h][t]);
        } else {
          // Quants at most 63: two chunks' pairs sum to at most 4 * 63 * 127 < 2^15.
          __m256i s0 =
              _mm256_add_epi32(_mm256_set1_epi32(-32 * act[t].h0[j]), chunk_sums<2>(w, xq, 0));
          s0 = _mm256_add_epi32(s0, chunk_sums<2>(w, xq, 2));
          __m256i s1 =
              _mm256_add_epi32(_mm256_set1_epi32(-32 * act[t].h1[j]), chunk_sums<2>(w, xq, 4));
          s1 = _mm256_add_epi32(s1, chunk_sums<2>(w, xq, 6));
          acc[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_mul_ps(x, vd), acc[h][t]);
          acc[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_mul_ps(y, vd), acc[h][t]);
        }
      }
    }
  }
  for (int h = H0; h < H1; ++h)
    for (int t = 0; t < N; ++t) _mm256_storeu_ps(out + size_t(t) * ostride + 8 * h, acc[h][t]);
}

// Half h of an F16/BF16 group against N <= 2 f32 rows: per column the half's 8 rows widened
// once, four FMA chains per token and block (column c into chain c % 4), pairwise into the
// total (packed_avx512.cc's group_f).
template <bool kBf>
G4_AVX2 inline __m256 widen16(const uint8_t* p) {
  const __m128i v = _mm_load_si128(reinterpret_cast<const __m128i*>(p));
  if constexpr (kBf) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  return _mm256_cvtph_ps(v);
}

template <int N, bool kBf, int H0, int H1>
G4_AVX2 void half_f(int64_t n, const uint8_t* grp, const void* const* a, float* out,
                    size_t ostride) {
  static_assert(N <= 2 && H1 - H0 == 1, "4 chains x N accumulators must fit the 16 registers");
  constexpr int h = H0;
  const float* x[N];
  __m256 sum[N];
  for (int t = 0; t < N; ++t) {
    x[t] = static_cast<const float*>(a[t]);
    sum[t] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < n; b += 32) {
    if (H0 == 0) prefetch_weights<N>(grp, 1024);
    __m256 acc[N][4];
    for (int t = 0; t < N; ++t)
      for (int m = 0; m < 4; ++m) acc[t][m] = _mm256_setzero_ps();
    for (int64_t c = b; c < b + 32; c += 4, grp += 128) {
      __m256 w[4];
      for (int m = 0; m < 4; ++m) w[m] = widen16<kBf>(grp + 32 * m + 16 * h);
      for (int t = 0; t < N; ++t)
        for (int m = 0; m < 4; ++m)
          acc[t][m] = _mm256_fmadd_ps(w[m], _mm256_set1_ps(x[t][c + m]), acc[t][m]);
    }
    for (int t = 0; t < N; ++t) {
      const __m256 s =
          _mm256_add_ps(_mm256_add_ps(acc[t][0], acc[t][1]), _mm256_add_ps(acc[t][2], acc[t][3]));
      sum[t] = _mm256_add_ps(sum[t], s);
    }
  }
  for (int t = 0; t < N; ++t) _mm256_storeu_ps(out + size_t(t) * ostride + 8 * h, sum[t]);
}

// A tile of T tokens as passes of N tokens: F0 covers halves [0, 2) (one sweep) or [0, 1)
// with F1 the second half.
using HalfFn = void (*)(int64_t, const uint8_t*, const void* const*, float*, size_t);
template <int T, int N, HalfFn F0, HalfFn F1 = nullptr>
G4_AVX2 void tile(int64_t n, const uint8_t* grp, const void* const* a, float* out, size_t ostride) {
  static_assert(T % N == 0, "whole passes");
  for (int t = 0; t < T; t += N) {
    F0(n, grp, a + t, out + size_t(t) * ostride, ostride);
    if constexpr (F1 != nullptr) F1(n, grp, a + t, out + size_t(t) * ostride, ostride);
  }
}

template <PackKind KIND>
void set_n(PackedKernels& k) {
  PackedGroupFn* g = k.group[int(KIND) - 1];
  g[0] = tile<1, 1, half_n<1, KIND, 0, 2>>;
  g[1] = tile<4, 4, half_n<4, KIND, 0, 1>, half_n<4, KIND, 1, 2>>;
  g[2] = tile<8, 4, half_n<4, KIND, 0, 1>, half_n<4, KIND, 1, 2>>;
}

template <bool kMin>
void set_k(PackedKernels& k) {
  PackedGroupFn* g = k.group[int(kMin ? PackKind::kKMin : PackKind::kKTwo) - 1];
  g[0] = tile<1, 1, half_k<1, kMin, 0, 2>>;
  g[1] = tile<4, 4, half_k<4, kMin, 0, 1>, half_k<4, kMin, 1, 2>>;
  g[2] = tile<8, 4, half_k<4, kMin, 0, 1>, half_k<4, kMin, 1, 2>>;
}

template <bool kBf>
void set_f(PackedKernels& k) {
  PackedGroupFn* g = k.group[int(kBf ? PackKind::kBF16 : PackKind::kF16) - 1];
  g[0] = tile<1, 1, half_f<1, kBf, 0, 1>, half_f<1, kBf, 1, 2>>;
  g[1] = tile<4, 2, half_f<2, kBf, 0, 1>, half_f<2, kBf, 1, 2>>;
  g[2] = tile<8, 2, half_f<2, kBf, 0, 1>, half_f<2, kBf, 1, 2>>;
}

}  // namespace

PackedKernels packed_kernels_avx2() {
  if (!cpu_has_avx2()) return {};
  PackedKernels k;
  k.prepare = prepare_packed_avx2;
  k.act_bytes = packed_act_bytes;
  set_n<PackKind::kQ8>(k);
  set_n<PackKind::kQ5>(k);
  set_n<PackKind::kQ4>(k);
  set_k<true>(k);
  set_k<false>(k);
  set_f<false>(k);
  set_f<true>(k);
  return k;
}

}  // namespace g4

#else
namespace g4 {
PackedKernels packed_kernels_avx2() {
  return {};
}
}  // namespace g4
#endif
