#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "kernels/dot_simd.h"
#include "kernels/ops.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace g4 {

namespace {

#if defined(__x86_64__)
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
#define G4_AVX512_ATT __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
// y += a * x is element-wise, so this is bit-identical to the AVX2 version. (The q.k dot
// stays on AVX2: a 16-lane sum would reorder it, and the tiny-model tests sit at their
// tolerance.)
G4_AVX512_ATT void axpy_f16_avx512(float* y, float a, const uint16_t* x, int n) {
  const __m512 va = _mm512_set1_ps(a);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 vx = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, vx, _mm512_maskz_loadu_ps(m, y + i)));
  }
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

}  // namespace

void attend_one(const AttentionArgs& a, const float* q, const uint16_t* k, const uint16_t* v,
                int64_t pos, int h0, int h1, float* out, float* scores) {
  const int64_t first = a.window > 0 ? std::max<int64_t>(0, pos - a.window + 1) : 0;
  const int64_t n = pos - first + 1;
  const int group = a.n_heads / a.n_kv_heads;
  const size_t slot_stride = size_t(a.n_kv_heads) * size_t(a.head_dim);
  for (int h = h0; h < h1; ++h) {
    const int kvh = h / group;
    const float* qh = q + size_t(h) * size_t(a.head_dim);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t slot = (first + j) % a.capacity;
      const uint16_t* kr = k + size_t(slot) * slot_stride + size_t(kvh) * size_t(a.head_dim);
      float s = dot_f32_f16(qh, kr, a.head_dim);
      if (a.softcap > 0.f) s = a.softcap * std::tanh(s / a.softcap);
      scores[j] = s;
    }
    softmax(scores, n);
    float* oh = out + size_t(h) * size_t(a.head_dim);
    std::memset(oh, 0, sizeof(float) * size_t(a.head_dim));
    for (int64_t j = 0; j < n; ++j) {
      const int64_t slot = (first + j) % a.capacity;
      const uint16_t* vr = v + size_t(slot) * slot_stride + size_t(kvh) * size_t(a.head_dim);
      axpy_f16(oh, scores[j], vr, a.head_dim);
    }
  }
}

}  // namespace g4
