// AVX-512 VNNI kernels for R16 (16-row interleaved) weights; layout in kernels/repack.h.
//
// Per 32-element block and token: 8 vpdpbusd (64-byte weight load x broadcast 4 activation
// bytes) add the block's integer dot into 16 row lanes, starting from the -128 * sum(a)
// correction; then one convert, one multiply (16 row scales x the token's scale) and one FMA.
// The weights of a block are loaded once for all N tokens of a tile, and every token runs
// the same instruction sequence for any N, so results do not depend on the batch. The
// arithmetic is exactly packed_group_ref's.
#include "kernels/repack.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstring>

#include "core/fp16.h"
#include "kernels/dot_simd.h"

#define G4_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

namespace g4 {
namespace {

G4_AVX512 void prepare_packed_avx512(const float* x, void* dst, int64_t n) {
  const int64_t nb = n / kQK;
  auto* qs = static_cast<int8_t*>(dst);
  const __m512 sign = _mm512_set1_ps(-0.f);
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    const __m512 ax = _mm512_max_ps(_mm512_andnot_ps(sign, x0), _mm512_andnot_ps(sign, x1));
    const float amax = _mm512_reduce_max_ps(ax);
    // The Q8_0 activation rule of quantize_activation (cvtps rounds half to even).
    const float id = amax != 0.f ? 127.f / amax : 0.f;
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, vid));
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, vid));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + kQK * i), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + kQK * i + 16), _mm512_cvtepi32_epi8(q1));
    const int32_t s0 = _mm512_reduce_add_epi32(q0), s1 = _mm512_reduce_add_epi32(q1);
    store_packed_act_block(dst, n, i, s0, s1, fp16_to_fp32(fp32_to_fp16(amax / 127.f)));
  }
}

// The 8 vpdpbusd of one block: chunks 0-3 into s0, 4-7 into s1 (two dependency chains; the
// integer sums are exact, so the split never changes a result).
G4_AVX512 inline void block_sums(const __m512i w[8], const int32_t* x, __m512i& s0, __m512i& s1) {
  for (int c = 0; c < 4; ++c) {
    s0 = _mm512_dpbusd_epi32(s0, w[c], _mm512_set1_epi32(x[c]));
    s1 = _mm512_dpbusd_epi32(s1, w[c + 4], _mm512_set1_epi32(x[c + 4]));
  }
}

// One 16-row group of a 32-block kind (kQ8, kQ5, kQ4) against N prepared activation rows:
// out[t * ostride + r]. kQ5/kQ4 unpack nibbles (and fifth bits) once per block for all N.
template <int N, PackKind KIND>
G4_AVX512 void group_n(int64_t n, const uint8_t* grp, const void* const* a, float* out,
                       size_t ostride) {
  const int64_t nb = n / kQK;
  constexpr int kShift = KIND == PackKind::kQ8 ? 0 : KIND == PackKind::kQ5 ? 3 : 4;
  PackedActView act[N];
  __m512 acc[N];
  for (int t = 0; t < N; ++t) {
    act[t] = PackedActView(a[t], n);
    acc[t] = _mm512_setzero_ps();
  }
  const __m512i lo4 = _mm512_set1_epi8(0x0F), b16 = _mm512_set1_epi8(16);
  constexpr int kPairBytes = 64 + 2 * int(packed_q_block_bytes(KIND));
  for (int64_t j = 0; j < nb; ++j) {
    if (j % 2 == 0) prefetch_weights<N>(grp + packed_scales_offset(KIND, j), kPairBytes);
    const uint8_t* q = grp + packed_quants_offset(KIND, j);
    const __m512 dw = _mm512_cvtph_ps(
        _mm256_load_si256(reinterpret_cast<const __m256i*>(grp + packed_scales_offset(KIND, j))));
    __m512i w[8];
    if constexpr (KIND == PackKind::kQ8) {
      for (int c = 0; c < 8; ++c) w[c] = _mm512_load_si512(q + 64 * c);
    } else {
      for (int m = 0; m < 4; ++m) {
        const __m512i p = _mm512_load_si512(q + 64 * m);
        w[2 * m] = _mm512_and_si512(p, lo4);
        w[2 * m + 1] = _mm512_and_si512(_mm512_srli_epi16(p, 4), lo4);
      }
      if constexpr (KIND == PackKind::kQ5) {
        for (int c = 0; c < 8; ++c) {
          uint64_t bits;
          std::memcpy(&bits, q + 256 + 8 * c, 8);
          w[c] = _mm512_mask_add_epi8(w[c], _cvtu64_mask64(bits), w[c], b16);
        }
      }
    }
    for (int t = 0; t < N; ++t) {
      const int32_t* x = act[t].qs + 8 * j;
      // corr = -128 * sum(a); value + K operands need -K * sum(a) (an exact shift).
      __m512i s0 = _mm512_set1_epi32(act[t].corr[j] >> kShift);
      __m512i s1 = _mm512_setzero_si512();
      block_sums(w, x, s0, s1);
      const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(act[t].d[j]));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), d, acc[t]);
    }
  }
  for (int t = 0; t < N; ++t) _mm512_storeu_ps(out + size_t(t) * ostride, acc[t]);
}

// K-quant groups (kKMin: Q4_K, kKTwo: Q6_K): per super-block the head's fp16 d (and dmin)
// widened once; per block the 16 rows' integer scales times them (exact in float), then the
// nibbles (kKTwo: with their two high bits); the halves (chunks 0-3 and 4-7) are summed apart.
// 16 scale bytes as floats (kKMin's 6-bit ones unsigned, kKTwo's signed).
template <bool kUnsigned>
G4_AVX512 inline __m512 widen8(const uint8_t* p) {
  const __m128i v = _mm_load_si128(reinterpret_cast<const __m128i*>(p));
  return _mm512_cvtepi32_ps(kUnsigned ? _mm512_cvtepu8_epi32(v) : _mm512_cvtepi8_epi32(v));
}

template <int N, bool kMin>
G4_AVX512 void group_k(int64_t n, const uint8_t* grp, const void* const* a, float* out,
                       size_t ostride) {
  const int64_t nb = n / kQK;
  PackedActView act[N];
  __m512 acc[N];
  for (int t = 0; t < N; ++t) {
    act[t] = PackedActView(a[t], n);
    acc[t] = _mm512_setzero_ps();
  }
  constexpr PackKind kKind = kMin ? PackKind::kKMin : PackKind::kKTwo;
  constexpr size_t kQuant = packed_k_quant_bytes(kKind);
  const __m512i lo4 = _mm512_set1_epi8(0x0F), hi2 = _mm512_set1_epi8(0x30);
  __m512 d = _mm512_setzero_ps(), dmin = _mm512_setzero_ps();
  for (int64_t j = 0; j < nb; ++j) {
    const uint8_t* head = grp + packed_k_head_offset(kKind, j);
    const int s = int(j % 8);
    if (s == 0) {
      prefetch_weights<N>(head, int(kKHeadBytes));
      d = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(head)));
      if (kMin)
        dmin = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(head + 32)));
    }
    const uint8_t* q = grp + packed_k_quants_offset(kKind, j);
    prefetch_weights<N>(q, int(kQuant));
    const __m512 x = _mm512_mul_ps(d, widen8<kMin>(head + 64 + (kMin ? 16 : 32) * s));
    const __m512 y = kMin ? _mm512_mul_ps(dmin, widen8<kMin>(head + 192 + 16 * s))
                          : _mm512_mul_ps(d, widen8<kMin>(head + 64 + 32 * s + 16));
    __m512i w[8];
    for (int m = 0; m < 4; ++m) {  // kQ4's nibble order
      const __m512i p = _mm512_load_si512(q + 64 * m);
      w[2 * m] = _mm512_and_si512(p, lo4);
      w[2 * m + 1] = _mm512_and_si512(_mm512_srli_epi16(p, 4), lo4);
    }
    if constexpr (!kMin) {  // chunk 4h+i's high bits at bits 2i of vector h, moved to bits 4-5
      for (int h = 0; h < 2; ++h) {
        const __m512i hb = _mm512_load_si512(q + 256 + 64 * h);
        const __m512i at4[4] = {_mm512_slli_epi16(hb, 4), _mm512_slli_epi16(hb, 2), hb,
                                _mm512_srli_epi16(hb, 2)};
        for (int i = 0; i < 4; ++i)
          w[4 * h + i] = _mm512_or_si512(w[4 * h + i], _mm512_and_si512(at4[i], hi2));
      }
    }
    for (int t = 0; t < N; ++t) {
      const int32_t* xq = act[t].qs + 8 * j;
      __m512i s0 = kMin ? _mm512_setzero_si512() : _mm512_set1_epi32(-32 * act[t].h0[j]);
      __m512i s1 = kMin ? _mm512_setzero_si512() : _mm512_set1_epi32(-32 * act[t].h1[j]);
      block_sums(w, xq, s0, s1);
      const float dt = act[t].d[j];
      const __m512 vd = _mm512_set1_ps(dt);
      if (kMin) {
        const __m512 s = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
        acc[t] = _mm512_fmadd_ps(s, _mm512_mul_ps(x, vd), acc[t]);
        const float hs = dt * float(act[t].h0[j] + act[t].h1[j]);
        acc[t] = _mm512_fnmadd_ps(y, _mm512_set1_ps(hs), acc[t]);
      } else {
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_mul_ps(x, vd), acc[t]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_mul_ps(y, vd), acc[t]);
      }
    }
  }
  for (int t = 0; t < N; ++t) _mm512_storeu_ps(out + size_t(t) * ostride, acc[t]);
}

// F16/BF16 groups against N f32 activation rows: per column, the 16 rows' weights widened
// once for all N tokens; per 32-column block, four FMA chains per token (column c into chain
// c % 4), summed pairwise and added to the row's total: 8 + 3 roundings per block, where one
// chain per block would take 32 (the tiny 62-layer Gemma 3 fixture amplifies the difference
// past its bound through fp16 K/V rounding).
template <bool kBf>
G4_AVX512 inline __m512 widen16(const uint8_t* p) {
  const __m256i h = _mm256_load_si256(reinterpret_cast<const __m256i*>(p));
  if constexpr (kBf) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  return _mm512_cvtph_ps(h);
}

template <int N, bool kBf>
G4_AVX512 void group_f(int64_t n, const uint8_t* grp, const void* const* a, float* out,
                       size_t ostride) {
  static_assert(N <= 4, "4 chains x N accumulators must fit the 32 registers");
  const float* x[N];
  __m512 acc[N][4], sum[N];
  for (int t = 0; t < N; ++t) {
    x[t] = static_cast<const float*>(a[t]);
    sum[t] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < n; b += 32) {
    prefetch_weights<N>(grp, 1024);
    for (int t = 0; t < N; ++t)
      for (int m = 0; m < 4; ++m) acc[t][m] = _mm512_setzero_ps();
    for (int64_t c = b; c < b + 32; c += 4, grp += 128) {
      __m512 w[4];
      for (int m = 0; m < 4; ++m) w[m] = widen16<kBf>(grp + 32 * m);
      for (int t = 0; t < N; ++t)
        for (int m = 0; m < 4; ++m)
          acc[t][m] = _mm512_fmadd_ps(w[m], _mm512_set1_ps(x[t][c + m]), acc[t][m]);
    }
    for (int t = 0; t < N; ++t) {
      const __m512 s =
          _mm512_add_ps(_mm512_add_ps(acc[t][0], acc[t][1]), _mm512_add_ps(acc[t][2], acc[t][3]));
      sum[t] = _mm512_add_ps(sum[t], s);
    }
  }
  for (int t = 0; t < N; ++t) _mm512_storeu_ps(out + size_t(t) * ostride, sum[t]);
}

// Tiles of 8 as two tiles of 4 (the second reads the group from cache).
template <bool kBf>
G4_AVX512 void group_f8(int64_t n, const uint8_t* grp, const void* const* a, float* out,
                        size_t ostride) {
  group_f<4, kBf>(n, grp, a, out, ostride);
  group_f<4, kBf>(n, grp, a + 4, out + 4 * ostride, ostride);
}

}  // namespace

static_assert(sizeof(PackedKernels::group) / sizeof(PackedKernels::group[0]) == kPackKinds,
              "one kernel row per PackKind");

PackedKernels packed_kernels_avx512() {
  if (!cpu_has_avx512()) return {};
  PackedKernels k;
  k.prepare = prepare_packed_avx512;
  k.act_bytes = packed_act_bytes;
  k.group[0][0] = group_n<1, PackKind::kQ8>;
  k.group[0][1] = group_n<4, PackKind::kQ8>;
  k.group[0][2] = group_n<8, PackKind::kQ8>;
  k.group[3][0] = group_n<1, PackKind::kQ5>;
  k.group[3][1] = group_n<4, PackKind::kQ5>;
  k.group[3][2] = group_n<8, PackKind::kQ5>;
  k.group[4][0] = group_n<1, PackKind::kQ4>;
  k.group[4][1] = group_n<4, PackKind::kQ4>;
  k.group[4][2] = group_n<8, PackKind::kQ4>;
  k.group[1][0] = group_k<1, true>;
  k.group[1][1] = group_k<4, true>;
  k.group[1][2] = group_k<8, true>;
  k.group[2][0] = group_k<1, false>;
  k.group[2][1] = group_k<4, false>;
  k.group[2][2] = group_k<8, false>;
  k.group[5][0] = group_f<1, false>;
  k.group[5][1] = group_f<4, false>;
  k.group[5][2] = group_f8<false>;
  k.group[6][0] = group_f<1, true>;
  k.group[6][1] = group_f<4, true>;
  k.group[6][2] = group_f8<true>;
  return k;
}

}  // namespace g4

#else
namespace g4 {
PackedKernels packed_kernels_avx512() {
  return {};
}
}  // namespace g4
#endif
