#include "kernels/attention_simd.h"

#include <algorithm>

namespace g4::attn {

#if defined(__x86_64__)
G4_AVX512_ATT inline float red512(__m256 acc) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma,f16c"))) float dot_f32_f16_avx2(const float* q, const uint16_t* k,
                                                                int n) {
  __m256 acc = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 vk = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + i)));
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), vk, acc);
  }
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  float r = _mm_cvtss_f32(s);
  for (; i < n; ++i) r += q[i] * fp16_to_fp32(k[i]);
  return r;
}

__attribute__((target("avx2,fma,f16c"))) void axpy_f16_avx2(float* y, float a, const uint16_t* x,
                                                            int n) {
  const __m256 va = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 vx = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, vx, _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += a * fp16_to_fp32(x[i]);
}

__attribute__((target("avx2,fma,f16c"))) float dot_f32_avx2(const float* q, const float* k, int n) {
  __m256 acc = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8)
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), acc);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_hadd_ps(s, s);
  s = _mm_hadd_ps(s, s);
  float r = _mm_cvtss_f32(s);
  for (; i < n; ++i) r += q[i] * k[i];
  return r;
}

__attribute__((target("avx2,fma,f16c"))) void axpy_f32_avx2(float* y, float a, const float* x,
                                                            int n) {
  const __m256 va = _mm256_set1_ps(a);
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

__attribute__((target("avx2,fma,f16c"))) void widen_avx2(const uint16_t* x, float* y, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  for (; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}

G4_AVX512_ATT void axpy_f16_avx512(float* y, float a, const uint16_t* x, int n) {
  const __m512 va = _mm512_set1_ps(a);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 vx = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, vx, _mm512_maskz_loadu_ps(m, y + i)));
  }
}

G4_AVX512_ATT void axpy_f32_avx512(float* y, float a, const float* x, int n) {
  const __m512 va = _mm512_set1_ps(a);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 vx = _mm512_maskz_loadu_ps(m, x + i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, vx, _mm512_maskz_loadu_ps(m, y + i)));
  }
}

G4_AVX512_ATT void qk_4x4(const float* q, int hd, const uint16_t* const* k, float* s) {
  __m256 acc[4][4];
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int i = 0; i < hd; i += 8) {
    __m256 vk[4];
    for (int c = 0; c < 4; ++c)
      vk[c] = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k[c] + i)));
    for (int r = 0; r < 4; ++r) {
      const __m256 vq = _mm256_loadu_ps(q + size_t(r) * size_t(hd) + size_t(i));
      for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_fmadd_ps(vq, vk[c], acc[r][c]);
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) s[r * 4 + c] = red512(acc[r][c]);
}

G4_AVX512_ATT void qk_4x4_f32(const float* q, int hd, const float* const* k, float* s) {
  __m256 acc[4][4];
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int i = 0; i < hd; i += 8) {
    __m256 vk[4];
    for (int c = 0; c < 4; ++c) vk[c] = _mm256_loadu_ps(k[c] + i);
    for (int r = 0; r < 4; ++r) {
      const __m256 vq = _mm256_loadu_ps(q + size_t(r) * size_t(hd) + size_t(i));
      for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_fmadd_ps(vq, vk[c], acc[r][c]);
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) s[r * 4 + c] = red512(acc[r][c]);
}

G4_AVX512_ATT void pv_rows_f32(const float* p, size_t ps, int nr, int hd, int64_t j0, int64_t j1,
                               const float* vt, int64_t vbase, float* out, bool acc) {
  for (int c0 = 0; c0 < hd; c0 += 64) {
    __m512 a[4][4];
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c)
        a[r][c] = acc && r < nr
                      ? _mm512_loadu_ps(out + size_t(r) * size_t(hd) + size_t(c0 + 16 * c))
                      : _mm512_setzero_ps();
    for (int64_t j = j0; j < j1; ++j) {
      const float* vr = vt + size_t(j - vbase) * size_t(hd) + size_t(c0);
      __m512 vx[4];
      for (int c = 0; c < 4; ++c) vx[c] = _mm512_loadu_ps(vr + 16 * c);
      for (int r = 0; r < nr; ++r) {
        const __m512 pr = _mm512_set1_ps(p[size_t(r) * ps + size_t(j)]);
        for (int c = 0; c < 4; ++c) a[r][c] = _mm512_fmadd_ps(pr, vx[c], a[r][c]);
      }
    }
    for (int r = 0; r < nr; ++r)
      for (int c = 0; c < 4; ++c)
        _mm512_storeu_ps(out + size_t(r) * size_t(hd) + size_t(c0 + 16 * c), a[r][c]);
  }
}

G4_AVX2_ATT void dequant_q4_0_avx2(const BlockQ4_0* b, float* y, int nb) {
  const __m256i eight = _mm256_set1_epi32(8);
  for (int i = 0; i < nb; ++i, y += kQK) {
    const __m256 d = _mm256_set1_ps(fp16_to_fp32(b[i].d));
    const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].qs));
    const __m128i lo = _mm_and_si128(qs, _mm_set1_epi8(0x0F));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(qs, 4), _mm_set1_epi8(0x0F));
    const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int c = 0; c < 4; ++c) {
      const __m256i q = _mm256_sub_epi32(_mm256_cvtepu8_epi32(parts[c]), eight);
      _mm256_storeu_ps(y + 8 * c, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
    }
  }
}

G4_AVX2_ATT void dequant_q8_0_avx2(const BlockQ8_0* b, float* y, int nb) {
  for (int i = 0; i < nb; ++i, y += kQK) {
    const __m256 d = _mm256_set1_ps(fp16_to_fp32(b[i].d));
    for (int c = 0; c < 4; ++c) {
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[i].qs + 8 * c));
      _mm256_storeu_ps(y + 8 * c, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), d));
    }
  }
}

G4_AVX2_ATT void widen_bf16_avx2(const uint16_t* x, float* y, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i w =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
  for (; i < n; ++i) y[i] = bf16_to_fp32(x[i]);
}

bool have_avx512() {
  static const bool ok = best_isa() == Isa::kAvx512;
  return ok;
}

bool have_avx2() {
  static const bool ok = best_isa() != Isa::kScalar;
  return ok;
}
#endif

float dot_f32_f16(const float* q, const uint16_t* k, int n) {
#if defined(__x86_64__)
  if (have_avx2()) return dot_f32_f16_avx2(q, k, n);
#endif
  float r = 0;
  for (int i = 0; i < n; ++i) r += q[i] * fp16_to_fp32(k[i]);
  return r;
}

void axpy_f16(float* y, float a, const uint16_t* x, int n) {
#if defined(__x86_64__)
  if (have_avx512()) return axpy_f16_avx512(y, a, x, n);
  if (have_avx2()) return axpy_f16_avx2(y, a, x, n);
#endif
  for (int i = 0; i < n; ++i) y[i] += a * fp16_to_fp32(x[i]);
}

float dot_f32(const float* q, const float* k, int n) {
#if defined(__x86_64__)
  if (have_avx2()) return dot_f32_avx2(q, k, n);
#endif
  float r = 0;
  for (int i = 0; i < n; ++i) r += q[i] * k[i];
  return r;
}

void axpy_f32(float* y, float a, const float* x, int n) {
#if defined(__x86_64__)
  if (have_avx512()) return axpy_f32_avx512(y, a, x, n);
  if (have_avx2()) return axpy_f32_avx2(y, a, x, n);
#endif
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

void widen(const uint16_t* x, float* y, int n) {
#if defined(__x86_64__)
  if (have_avx2()) return widen_avx2(x, y, n);
#endif
  for (int i = 0; i < n; ++i) y[i] = fp16_to_fp32(x[i]);
}

DType kv_dtype(const AttentionArgs& a) {
  return a.kv_q4 ? DType::kQ4_0 : a.kv_q8 ? DType::kQ8_0 : DType::kBF16;
}

void dequant_kv(DType t, const uint8_t* src, float* dst, int n) {
#if defined(__x86_64__)
  if (have_avx2()) {
    if (t == DType::kQ4_0)
      return dequant_q4_0_avx2(reinterpret_cast<const BlockQ4_0*>(src), dst, n / kQK);
    if (t == DType::kQ8_0)
      return dequant_q8_0_avx2(reinterpret_cast<const BlockQ8_0*>(src), dst, n / kQK);
    if (t == DType::kBF16) return widen_bf16_avx2(reinterpret_cast<const uint16_t*>(src), dst, n);
  }
#endif
  dequantize_row(t, src, dst, n);
}

}  // namespace g4::attn
