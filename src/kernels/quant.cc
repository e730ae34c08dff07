#include "kernels/quant.h"

#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "core/status.h"

namespace g4 {

namespace {

void dequant_q4_0(const BlockQ4_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = float((b[i].qs[j] & 0xF) - 8) * d;
      y[j + 16] = float((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequant_q5_0(const BlockQ5_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_fp32(b[i].d);
    uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int h0 = int((qh >> j) & 1) << 4;
      const int h1 = int((qh >> (j + 16)) & 1) << 4;
      y[j] = float(((b[i].qs[j] & 0xF) | h0) - 16) * d;
      y[j + 16] = float(((b[i].qs[j] >> 4) | h1) - 16) * d;
    }
  }
}

void dequant_q8_0(const BlockQ8_0* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < 32; ++j) y[j] = float(b[i].qs[j]) * d;
  }
}

void dequant_q4_k(const BlockQ4_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    const float dmin = fp16_to_fp32(b[i].dmin);
    const uint8_t* q = b[i].qs;
    for (int j = 0; j < 4; ++j) {  // 64 elements: sub-blocks 2j (low nibbles), 2j+1 (high)
      uint8_t sc, m;
      get_scale_min_k4(2 * j, b[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      get_scale_min_k4(2 * j + 1, b[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
      q += 32;
    }
  }
}

void dequant_q6_k(const BlockQ6_K* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(b[i].d);
    for (int e = 0; e < kQKK; ++e) {
      const int h = e / 128, r = e % 128, g = r / 32, l = r % 32;
      const uint8_t lb = b[i].ql[64 * h + l + 32 * (g & 1)];
      const int lo = g < 2 ? (lb & 0xF) : (lb >> 4);
      const int hi = (b[i].qh[32 * h + l] >> (2 * g)) & 3;
      const int q = (lo | (hi << 4)) - 32;
      y[e] = d * float(b[i].scales[e / 16]) * float(q);
    }
    y += kQKK;
  }
}

// llama.cpp's nearest_int: round half to even through the 1.5*2^23 magic constant.
inline int nearest_int(float fval) {
  float val = fval + 12582912.f;
  int i;
  std::memcpy(&i, &val, sizeof(int));
  return (i & 0x007fffff) - 0x00400000;
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case DType::kF32:
      std::memcpy(dst, src, size_t(n) * 4);
      return;
    case DType::kF16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(s[i]);
      return;
    }
    case DType::kBF16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(s[i]);
      return;
    }
    case DType::kQ4_0:
      dequant_q4_0(static_cast<const BlockQ4_0*>(src), dst, n / kQK);
      return;
    case DType::kQ5_0:
      dequant_q5_0(static_cast<const BlockQ5_0*>(src), dst, n / kQK);
      return;
    case DType::kQ8_0:
      dequant_q8_0(static_cast<const BlockQ8_0*>(src), dst, n / kQK);
      return;
    case DType::kQ4_K:
      dequant_q4_k(static_cast<const BlockQ4_K*>(src), dst, n / kQKK);
      return;
    case DType::kQ6_K:
      dequant_q6_k(static_cast<const BlockQ6_K*>(src), dst, n / kQKK);
      return;
    default:
      G4_CHECK(false && "dequantize_row: unsupported type");
  }
}

DType vec_dot_type(DType w) {
  switch (w) {
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ8_0:
      return DType::kQ8_0;
    case DType::kQ4_K:
    case DType::kQ6_K:
      return DType::kQ8_K;
    default:
      return DType::kF32;  // F32, and F16/BF16 weights against f32 activations
  }
}

void quantize_activation(DType vt, const float* x, void* dst, int64_t n) {
  switch (vt) {
    case DType::kF32:
      std::memcpy(dst, x, size_t(n) * 4);
      return;
    case DType::kF16: {
      auto* y = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
      return;
    }
    case DType::kBF16: {
      auto* y = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_bf16(x[i]);
      return;
    }
    case DType::kQ8_0: {
      auto* y = static_cast<BlockQ8_0*>(dst);
      for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        float amax = 0.f;
        for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
        const float d = amax / 127.f;
        const float id = amax != 0.f ? 127.f / amax : 0.f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < kQK; ++j) y[i].qs[j] = int8_t(std::nearbyint(x[j] * id));
      }
      return;
    }
    case DType::kQ8_K: {
      auto* y = static_cast<BlockQ8_K*>(dst);
      for (int64_t i = 0; i < n / kQKK; ++i, x += kQKK) {
        float max = 0.f, amax = 0.f;
        for (int j = 0; j < kQKK; ++j) {
          const float ax = std::fabs(x[j]);
          if (ax > amax) {
            amax = ax;
            max = x[j];
          }
        }
        if (amax == 0.f) {
          std::memset(&y[i], 0, sizeof(BlockQ8_K));
          continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < kQKK; ++j) {
          const int v = nearest_int(iscale * x[j]);
          y[i].qs[j] = int8_t(v < 127 ? v : 127);
        }
        for (int g = 0; g < 16; ++g) {
          int s = 0;
          for (int l = 0; l < 16; ++l) s += y[i].qs[16 * g + l];
          y[i].bsums[g] = int16_t(s);
        }
        y[i].d = 1.f / iscale;
      }
      return;
    }
    default:
      G4_CHECK(false && "quantize_activation: unsupported type");
  }
}

float vec_dot_ref(DType w, int64_t n, const void* wrow, const void* arow) {
  switch (w) {
    case DType::kF32: {
      const auto* a = static_cast<const float*>(wrow);
      const auto* b = static_cast<const float*>(arow);
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += double(a[i]) * b[i];
      return float(s);
    }
    case DType::kF16:
    case DType::kBF16: {
      const auto* a = static_cast<const uint16_t*>(wrow);
      const auto* b = static_cast<const float*>(arow);
      const bool h = w == DType::kF16;
      double s = 0;
      for (int64_t i = 0; i < n; ++i) {
        s += double(h ? fp16_to_fp32(a[i]) : bf16_to_fp32(a[i])) * b[i];
      }
      return float(s);
    }
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ8_0: {
      const auto* a = static_cast<const BlockQ8_0*>(arow);
      const uint8_t* p = static_cast<const uint8_t*>(wrow);
      const size_t bb = size_t(info(w).block_bytes);
      float sum = 0.f;
      for (int64_t i = 0; i < n / kQK; ++i, p += bb) {
        int q[32];
        uint16_t dw;
        std::memcpy(&dw, p, 2);
        if (w == DType::kQ8_0) {
          for (int j = 0; j < 32; ++j) q[j] = int8_t(p[2 + j]);
        } else if (w == DType::kQ4_0) {
          for (int j = 0; j < 16; ++j) {
            q[j] = (p[2 + j] & 0xF) - 8;
            q[j + 16] = (p[2 + j] >> 4) - 8;
          }
        } else {
          uint32_t qh;
          std::memcpy(&qh, p + 2, 4);
          for (int j = 0; j < 16; ++j) {
            q[j] = ((p[6 + j] & 0xF) | int(((qh >> j) & 1) << 4)) - 16;
            q[j + 16] = ((p[6 + j] >> 4) | int(((qh >> (j + 16)) & 1) << 4)) - 16;
          }
        }
        int sumi = 0;
        for (int j = 0; j < 32; ++j) sumi += q[j] * a[i].qs[j];
        sum += float(sumi) * fp16_to_fp32(dw) * fp16_to_fp32(a[i].d);
      }
      return sum;
    }
    case DType::kQ4_K: {
      const auto* x = static_cast<const BlockQ4_K*>(wrow);
      const auto* a = static_cast<const BlockQ8_K*>(arow);
      float sum = 0.f;
      for (int64_t i = 0; i < n / kQKK; ++i) {
        int sumi = 0, summ = 0;
        for (int s = 0; s < 8; ++s) {
          uint8_t sc, m;
          get_scale_min_k4(s, x[i].scales, &sc, &m);
          const uint8_t* q = x[i].qs + 32 * (s / 2);
          int si = 0;
          for (int l = 0; l < 32; ++l) {
            const int v = (s & 1) ? (q[l] >> 4) : (q[l] & 0xF);
            si += v * a[i].qs[32 * s + l];
          }
          sumi += sc * si;
          summ += m * (a[i].bsums[2 * s] + a[i].bsums[2 * s + 1]);
        }
        sum += fp16_to_fp32(x[i].d) * a[i].d * float(sumi) -
               fp16_to_fp32(x[i].dmin) * a[i].d * float(summ);
      }
      return sum;
    }
    case DType::kQ6_K: {
      const auto* x = static_cast<const BlockQ6_K*>(wrow);
      const auto* a = static_cast<const BlockQ8_K*>(arow);
      float sum = 0.f;
      for (int64_t i = 0; i < n / kQKK; ++i) {
        int sumi = 0;
        for (int g16 = 0; g16 < 16; ++g16) {
          int si = 0;
          for (int k = 0; k < 16; ++k) {
            const int e = 16 * g16 + k;
            const int h = e / 128, r = e % 128, g = r / 32, l = r % 32;
            const uint8_t lb = x[i].ql[64 * h + l + 32 * (g & 1)];
            const int lo = g < 2 ? (lb & 0xF) : (lb >> 4);
            const int hi = (x[i].qh[32 * h + l] >> (2 * g)) & 3;
            si += ((lo | (hi << 4)) - 32) * a[i].qs[e];
          }
          sumi += x[i].scales[g16] * si;
        }
        sum += fp16_to_fp32(x[i].d) * a[i].d * float(sumi);
      }
      return sum;
    }
    default:
      G4_CHECK(false && "vec_dot_ref: unsupported type");
  }
  return 0.f;
}

}  // namespace g4
