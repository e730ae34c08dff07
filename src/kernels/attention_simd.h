// SIMD primitives of the attention kernels (attention.cc): q.k dots, value passes, row
// widening for every KV cache type, register-blocked over heads and keys. Internal to
// src/kernels: the RowFn templates live here so attention.cc instantiates them over its
// row providers. Every variant gives the same floats as its scalar definition (see the notes
// at each), which the bit-identity tests rely on.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "core/fp16.h"
#include "kernels/attention.h"
#include "kernels/dot_simd.h"
#include "kernels/dtype.h"
#include "kernels/quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace g4::attn {

#if defined(__x86_64__)
// The CPU's attention ISA (best_isa(), read once).
bool have_avx512();
bool have_avx2();

// A decode streams each key's K and V row from memory once, a few rows at a time, and the
// loads stall: the hardware prefetchers stay too close (2026-12-07, `g4 bench MODEL --kv-fill
// random -d 8192 -p 0 -n 32 -t 2 --profile`: 70% of qk_4x4's samples on its K loads). So the
// key loops below ask for the rows kPrefetchKeys keys ahead (32: attention 3.2 -> 2.2 ms per
// token at depth 8192, 6.6-7.6 -> 4.5-4.9 at 32704; 16 and 64 within noise of 32). Prefetches
// change no result.
constexpr int64_t kPrefetchKeys = 32;
inline void prefetch_bytes(const void* p, int bytes) {
  const char* c = static_cast<const char*>(p);
  for (int b = 0; b < bytes; b += 64) _mm_prefetch(c + b, _MM_HINT_T0);
}

__attribute__((target("avx2,fma,f16c"))) float dot_f32_f16_avx2(const float* q, const uint16_t* k,
                                                                int n);
__attribute__((target("avx2,fma,f16c"))) void axpy_f16_avx2(float* y, float a, const uint16_t* x,
                                                            int n);
// The same two kernels on a K/V row already widened to f32 (the widening is exact, so the
// fma operands and the results are the same bits as the fp16 versions above).
__attribute__((target("avx2,fma,f16c"))) float dot_f32_avx2(const float* q, const float* k, int n);
__attribute__((target("avx2,fma,f16c"))) void axpy_f32_avx2(float* y, float a, const float* x,
                                                            int n);
__attribute__((target("avx2,fma,f16c"))) void widen_avx2(const uint16_t* x, float* y, int n);
#define G4_AVX512_ATT __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
// y += a * x is element-wise, so this is bit-identical to the AVX2 version. (The q.k dot
// stays on AVX2: a 16-lane sum would reorder it, and the tiny-model tests sit at their
// tolerance.)
G4_AVX512_ATT void axpy_f16_avx512(float* y, float a, const uint16_t* x, int n);
G4_AVX512_ATT void axpy_f32_avx512(float* y, float a, const float* x, int n);
// Register-blocked versions of the per-key loops of attend_group_f16, bit-identical to them:
// every q.k dot is the same 8-lane FMA chain and reduction as dot_f32_f16_avx2 (the chains of
// up to 4 heads x 2 keys run side by side instead of one after another), and every output
// element receives the same FMAs in key order as axpy_f16_avx512/avx2, but accumulates in
// registers instead of a load and a store per key. The q.k part needs AVX2 only, and pv has
// an 8-lane twin, so CPUs without AVX-512 run them too (before, their attention widened each
// row and went through dot_f32/axpy_f32: 18% of a G4_ISA=avx2 prefill).
#define G4_AVX2_ATT __attribute__((target("avx2,fma,f16c")))
G4_AVX2_ATT inline float red(__m256 acc) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
}

template <int NH>
G4_AVX2_ATT void qk_block(const float* q, int hd, const uint16_t* k0, const uint16_t* k1, float* s0,
                          float* s1) {
  __m256 a0[NH], a1[NH];
  for (int h = 0; h < NH; ++h) a0[h] = a1[h] = _mm256_setzero_ps();
  for (int i = 0; i < hd; i += 8) {
    const __m256 v0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k0 + i)));
    const __m256 v1 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k1 + i)));
    for (int h = 0; h < NH; ++h) {
      const __m256 vq = _mm256_loadu_ps(q + size_t(h) * size_t(hd) + size_t(i));
      a0[h] = _mm256_fmadd_ps(vq, v0, a0[h]);
      a1[h] = _mm256_fmadd_ps(vq, v1, a1[h]);
    }
  }
  for (int h = 0; h < NH; ++h) {
    s0[h] = red(a0[h]);
    s1[h] = red(a1[h]);
  }
}

G4_AVX512_ATT void qk_4x4(const float* q, int hd, const uint16_t* const* k, float* s);

// scores[h][j] (raw q.k) for heads [0, nh) against keys j < n of one KV head; key j at row(j).
// Groups of four heads take four keys per pass where AVX-512VL has the registers (qk_4x4: the
// same chains, so the same scores).
template <typename RowFn>
G4_AVX2_ATT void qk_scores_avx2(const float* q, int nh, int hd, int64_t n, RowFn row,
                                float* scores) {
  if (nh % 4 == 0 && have_avx512()) {
    for (int64_t j = 0; j < n; j += 4) {
      const uint16_t* kk[4];
      for (int c = 0; c < 4; ++c) kk[c] = row(std::min(j + c, n - 1));  // tail: repeats, dropped
      if (j + kPrefetchKeys + 3 < n) {
        for (int c = 0; c < 4; ++c) prefetch_bytes(row(j + kPrefetchKeys + c), 2 * hd);
      }
      for (int h = 0; h < nh; h += 4) {
        float s[16];
        qk_4x4(q + size_t(h) * size_t(hd), hd, kk, s);
        for (int i = 0; i < 4; ++i)
          for (int c = 0; c < 4 && j + c < n; ++c)
            scores[size_t(h + i) * size_t(n) + size_t(j + c)] = s[i * 4 + c];
      }
    }
    return;
  }
  for (int64_t j = 0; j < n; j += 2) {
    const uint16_t* k0 = row(j);
    const uint16_t* k1 = j + 1 < n ? row(j + 1) : k0;  // odd tail: computed twice, kept once
    if (j + kPrefetchKeys + 1 < n) {
      prefetch_bytes(row(j + kPrefetchKeys), 2 * hd);
      prefetch_bytes(row(j + kPrefetchKeys + 1), 2 * hd);
    }
    for (int h = 0; h < nh; h += 4) {
      float s0[4], s1[4];
      const float* qh = q + size_t(h) * size_t(hd);
      const int m = std::min(4, nh - h);
      if (m == 4) qk_block<4>(qh, hd, k0, k1, s0, s1);
      if (m == 3) qk_block<3>(qh, hd, k0, k1, s0, s1);
      if (m == 2) qk_block<2>(qh, hd, k0, k1, s0, s1);
      if (m == 1) qk_block<1>(qh, hd, k0, k1, s0, s1);
      for (int i = 0; i < m; ++i) {
        scores[size_t(h + i) * size_t(n) + size_t(j)] = s0[i];
        if (j + 1 < n) scores[size_t(h + i) * size_t(n) + size_t(j + 1)] = s1[i];
      }
    }
  }
}

// out[h][0, hd) = sum over j in [j0, j1) of p[h * ps + j] * V_j for heads [0, nh), two heads
// and 128 columns (8 registers each) at a time. acc: continue the sums already in out (a later
// key tile of attend_block) instead of starting from zero: each element's FMA chain over the
// keys is then the same as one call over all of them.
template <typename RowFn>
G4_AVX512_ATT void pv_avx512(const float* p, size_t ps, int nh, int hd, int64_t j0, int64_t j1,
                             RowFn row, float* out, bool acc) {
  for (int h = 0; h < nh; h += 2) {
    const bool two = h + 1 < nh;
    for (int c0 = 0; c0 < hd; c0 += 128) {
      const int nc = std::min(8, (hd - c0) / 16);
      __m512 a[8], b[8];
      for (int c = 0; c < 8; ++c) a[c] = b[c] = _mm512_setzero_ps();
      if (acc) {
        for (int c = 0; c < nc; ++c) {
          a[c] = _mm512_loadu_ps(out + size_t(h) * size_t(hd) + size_t(c0 + 16 * c));
          if (two) b[c] = _mm512_loadu_ps(out + size_t(h + 1) * size_t(hd) + size_t(c0 + 16 * c));
        }
      }
      for (int64_t j = j0; j < j1; ++j) {
        const uint16_t* vr = row(j) + c0;
        if (j + kPrefetchKeys < j1) prefetch_bytes(row(j + kPrefetchKeys) + c0, 32 * nc);
        const __m512 pa = _mm512_set1_ps(p[size_t(h) * ps + size_t(j)]);
        const __m512 pb = _mm512_set1_ps(two ? p[size_t(h + 1) * ps + size_t(j)] : 0.f);
        for (int c = 0; c < nc; ++c) {
          const __m512 vx =
              _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(vr + 16 * c)));
          a[c] = _mm512_fmadd_ps(pa, vx, a[c]);
          if (two) b[c] = _mm512_fmadd_ps(pb, vx, b[c]);
        }
      }
      for (int c = 0; c < nc; ++c) {
        _mm512_storeu_ps(out + size_t(h) * size_t(hd) + size_t(c0 + 16 * c), a[c]);
        if (two) _mm512_storeu_ps(out + size_t(h + 1) * size_t(hd) + size_t(c0 + 16 * c), b[c]);
      }
    }
  }
}
// pv_avx512 on 8 lanes for CPUs without AVX-512 (and head sizes that are not a multiple of
// 16): two heads and 32 columns (4 registers each) at a time, the same FMAs per element.
template <typename RowFn>
G4_AVX2_ATT void pv_avx2(const float* p, size_t ps, int nh, int hd, int64_t j0, int64_t j1,
                         RowFn row, float* out, bool acc) {
  for (int h = 0; h < nh; h += 2) {
    const bool two = h + 1 < nh;
    for (int c0 = 0; c0 < hd; c0 += 32) {
      const int nc = std::min(4, (hd - c0) / 8);
      __m256 a[4], b[4];
      for (int c = 0; c < 4; ++c) a[c] = b[c] = _mm256_setzero_ps();
      if (acc) {
        for (int c = 0; c < nc; ++c) {
          a[c] = _mm256_loadu_ps(out + size_t(h) * size_t(hd) + size_t(c0 + 8 * c));
          if (two) b[c] = _mm256_loadu_ps(out + size_t(h + 1) * size_t(hd) + size_t(c0 + 8 * c));
        }
      }
      for (int64_t j = j0; j < j1; ++j) {
        const uint16_t* vr = row(j) + c0;
        if (j + kPrefetchKeys < j1) prefetch_bytes(row(j + kPrefetchKeys) + c0, 16 * nc);
        const __m256 pa = _mm256_set1_ps(p[size_t(h) * ps + size_t(j)]);
        const __m256 pb = _mm256_set1_ps(two ? p[size_t(h + 1) * ps + size_t(j)] : 0.f);
        for (int c = 0; c < nc; ++c) {
          const __m256 vx =
              _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(vr + 8 * c)));
          a[c] = _mm256_fmadd_ps(pa, vx, a[c]);
          if (two) b[c] = _mm256_fmadd_ps(pb, vx, b[c]);
        }
      }
      for (int c = 0; c < nc; ++c) {
        _mm256_storeu_ps(out + size_t(h) * size_t(hd) + size_t(c0 + 8 * c), a[c]);
        if (two) _mm256_storeu_ps(out + size_t(h + 1) * size_t(hd) + size_t(c0 + 8 * c), b[c]);
      }
    }
  }
}
// Four rows against four keys: the q.k chains of qk_block (one 8-lane FMA chain per row and key,
// the same reduction), sixteen at a time in AVX-512VL's 32 ymm registers, so each q and key
// chunk load feeds four FMAs instead of two. Query blocks only (attend_block_f16).
G4_AVX512_ATT void qk_4x4(const float* q, int hd, const uint16_t* const* k, float* s);

// qk_4x4 on K rows already widened to f32 (q8_0, q4_0 and bf16 caches): each chain is
// dot_f32_avx2's, so each score is the one-token path's.
G4_AVX512_ATT void qk_4x4_f32(const float* q, int hd, const float* const* k, float* s);

// Up to four rows of one token (their probabilities p[r * ps + j]) times V rows already
// widened to f32 (vt[j * hd ...], exact), 64 columns (4 registers per row) at a time, for keys
// [j0, j1): each element gets pv_avx512's FMA chain in key order, continued from out when acc.
G4_AVX512_ATT void pv_rows_f32(const float* p, size_t ps, int nr, int hd, int64_t j0, int64_t j1,
                               const float* vt, int64_t vbase, float* out, bool acc);

// pv_avx512 for four heads at once, 64 columns (4 registers per head) per pass: each V row
// chunk is read once for the four heads instead of once per pair (a decode over a long
// context streams V from memory once, not twice). The same FMA chain per element.
template <typename RowFn>
G4_AVX512_ATT void pv4_avx512(const float* p, size_t ps, int hd, int64_t j0, int64_t j1, RowFn row,
                              float* out, bool acc) {
  for (int c0 = 0; c0 < hd; c0 += 64) {
    __m512 a[4][4];
    for (int h = 0; h < 4; ++h)
      for (int c = 0; c < 4; ++c)
        a[h][c] = acc ? _mm512_loadu_ps(out + size_t(h) * size_t(hd) + size_t(c0 + 16 * c))
                      : _mm512_setzero_ps();
    for (int64_t j = j0; j < j1; ++j) {
      const uint16_t* vr = row(j) + c0;
      if (j + kPrefetchKeys < j1) prefetch_bytes(row(j + kPrefetchKeys) + c0, 128);
      __m512 vx[4];
      for (int c = 0; c < 4; ++c)
        vx[c] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(vr + 16 * c)));
      for (int h = 0; h < 4; ++h) {
        const __m512 ph = _mm512_set1_ps(p[size_t(h) * ps + size_t(j)]);
        for (int c = 0; c < 4; ++c) a[h][c] = _mm512_fmadd_ps(ph, vx[c], a[h][c]);
      }
    }
    for (int h = 0; h < 4; ++h)
      for (int c = 0; c < 4; ++c)
        _mm512_storeu_ps(out + size_t(h) * size_t(hd) + size_t(c0 + 16 * c), a[h][c]);
  }
}

// pv_avx512 where the CPU and head size allow (four heads at a time where it can), else
// pv_avx2 (the same values per element).
template <typename RowFn>
void pv_f16(const float* p, size_t ps, int nh, int hd, int64_t j0, int64_t j1, RowFn row,
            float* out, bool acc) {
  if (have_avx512() && hd % 64 == 0 && nh >= 4) {
    int h = 0;
    for (; h + 4 <= nh; h += 4)
      pv4_avx512(p + size_t(h) * ps, ps, hd, j0, j1, row, out + size_t(h) * size_t(hd), acc);
    if (h < nh)
      pv_avx512(p + size_t(h) * ps, ps, nh - h, hd, j0, j1, row, out + size_t(h) * size_t(hd), acc);
    return;
  }
  if (have_avx512() && hd % 16 == 0) {
    pv_avx512(p, ps, nh, hd, j0, j1, row, out, acc);
  } else {
    pv_avx2(p, ps, nh, hd, j0, j1, row, out, acc);
  }
}

// Row widening of the quantized and bf16 caches, bit-identical to dequantize_row: each value
// is float(q - offset) * d (one rounding) or the bf16 bits shifted into place.
G4_AVX2_ATT void dequant_q4_0_avx2(const BlockQ4_0* b, float* y, int nb);
G4_AVX2_ATT void dequant_q8_0_avx2(const BlockQ8_0* b, float* y, int nb);
G4_AVX2_ATT void widen_bf16_avx2(const uint16_t* x, float* y, int n);
#endif

float dot_f32_f16(const float* q, const uint16_t* k, int n);

void axpy_f16(float* y, float a, const uint16_t* x, int n);

float dot_f32(const float* q, const float* k, int n);

void axpy_f32(float* y, float a, const float* x, int n);

void widen(const uint16_t* x, float* y, int n);

DType kv_dtype(const AttentionArgs& a);

// One row of a q8_0, q4_0 or bf16 cache (n values, a multiple of 32 for the block types) as
// f32: SIMD where the CPU has it, dequantize_row otherwise (the same values either way).
void dequant_kv(DType t, const uint8_t* src, float* dst, int n);

}  // namespace g4::attn
