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
// The same two kernels on a K/V row already widened to f32 (the widening is exact, so the
// fma operands and the results are the same bits as the fp16 versions above).
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
G4_AVX512_ATT void axpy_f32_avx512(float* y, float a, const float* x, int n) {
  const __m512 va = _mm512_set1_ps(a);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 vx = _mm512_maskz_loadu_ps(m, x + i);
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

}  // namespace

size_t attention_scratch_floats(const AttentionArgs& a, int64_t max_keys) {
  const int group = a.n_heads / a.n_kv_heads;
  return size_t(group) * size_t(max_keys) + size_t(a.head_dim);
}

namespace {

void attend_group_f16(const AttentionArgs& a, const float* q, const uint16_t* k, const uint16_t* v,
                      int64_t pos, int h0, int h1, float* out, float* scores) {
  const int64_t first = a.window > 0 ? std::max<int64_t>(0, pos - a.window + 1) : 0;
  const int64_t n = pos - first + 1;
  const int group = a.n_heads / a.n_kv_heads;
  const int hd = a.head_dim;
  const size_t slot_stride = size_t(a.n_kv_heads) * size_t(hd);
  for (int hs = h0; hs < h1;) {
    // Heads [hs, he) read the same KV head: widen each K and V row once for all of them.
    const int kvh = hs / group;
    const int he = std::min(h1, (kvh + 1) * group);
    float* row = scores + size_t(he - hs) * size_t(n);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t slot = (first + j) % a.capacity;
      widen(k + size_t(slot) * slot_stride + size_t(kvh) * size_t(hd), row, hd);
      for (int h = hs; h < he; ++h) {
        float s = dot_f32(q + size_t(h) * size_t(hd), row, hd);
        if (a.softcap > 0.f) s = a.softcap * std::tanh(s / a.softcap);
        scores[size_t(h - hs) * size_t(n) + size_t(j)] = s;
      }
    }
    for (int h = hs; h < he; ++h) {
      softmax(scores + size_t(h - hs) * size_t(n), n);
      std::memset(out + size_t(h) * size_t(hd), 0, sizeof(float) * size_t(hd));
    }
    for (int64_t j = 0; j < n; ++j) {
      const int64_t slot = (first + j) % a.capacity;
      widen(v + size_t(slot) * slot_stride + size_t(kvh) * size_t(hd), row, hd);
      for (int h = hs; h < he; ++h)
        axpy_f32(out + size_t(h) * size_t(hd), scores[size_t(h - hs) * size_t(n) + size_t(j)], row,
                 hd);
    }
    hs = he;
  }
}

// One query's heads [h0, h1) over the cache, a head at a time. K/V rows are fp16 (SIMD dot and
// axpy above) or float32 (exact numerics, tiny-model parity: plain loops).
inline float row_dot(const float* q, const uint16_t* k, int n) {
  return dot_f32_f16(q, k, n);
}
inline float row_dot(const float* q, const float* k, int n) {
  float s = 0;
  for (int i = 0; i < n; ++i) s += q[i] * k[i];
  return s;
}
inline void row_axpy(float* y, float a, const uint16_t* x, int n) {
  axpy_f16(y, a, x, n);
}
inline void row_axpy(float* y, float a, const float* x, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

template <typename T>
void attend_heads(const AttentionArgs& a, const float* q, const T* k, const T* v, int64_t pos,
                  int h0, int h1, float* out, float* scores) {
  const int64_t first = a.window > 0 ? std::max<int64_t>(0, pos - a.window + 1) : 0;
  const int64_t n = pos - first + 1;
  const int group = a.n_heads / a.n_kv_heads;
  const size_t slot_stride = size_t(a.n_kv_heads) * size_t(a.head_dim);
  for (int h = h0; h < h1; ++h) {
    const int kvh = h / group;
    const float* qh = q + size_t(h) * size_t(a.head_dim);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t slot = (first + j) % a.capacity;
      float s = row_dot(qh, k + size_t(slot) * slot_stride + size_t(kvh) * size_t(a.head_dim),
                        a.head_dim);
      if (a.softcap > 0.f) s = a.softcap * std::tanh(s / a.softcap);
      scores[j] = s;
    }
    softmax(scores, n);
    float* oh = out + size_t(h) * size_t(a.head_dim);
    std::memset(oh, 0, sizeof(float) * size_t(a.head_dim));
    for (int64_t j = 0; j < n; ++j) {
      const int64_t slot = (first + j) % a.capacity;
      row_axpy(oh, scores[j], v + size_t(slot) * slot_stride + size_t(kvh) * size_t(a.head_dim),
               a.head_dim);
    }
  }
}

}  // namespace

void attend_one(const AttentionArgs& a, const float* q, const void* k, const void* v, int64_t pos,
                int h0, int h1, float* out, float* scores) {
  if (a.kv_f32) {
    attend_heads(a, q, static_cast<const float*>(k), static_cast<const float*>(v), pos, h0, h1, out,
                 scores);
  } else {
    attend_heads(a, q, static_cast<const uint16_t*>(k), static_cast<const uint16_t*>(v), pos, h0,
                 h1, out, scores);
  }
}

void attend_group(const AttentionArgs& a, const float* q, const void* k, const void* v, int64_t pos,
                  int h0, int h1, float* out, float* scores) {
  if (a.kv_f32) {
    attend_heads(a, q, static_cast<const float*>(k), static_cast<const float*>(v), pos, h0, h1, out,
                 scores);
  } else {
    attend_group_f16(a, q, static_cast<const uint16_t*>(k), static_cast<const uint16_t*>(v), pos,
                     h0, h1, out, scores);
  }
}

}  // namespace g4
