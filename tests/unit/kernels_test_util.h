// Helpers shared by the kernel tests.
#pragma once
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/fp16.h"
#include "kernels/quant.h"

namespace g4::test {

// Random weight rows of type t: valid blocks with random bytes and bounded scales.
inline std::vector<uint8_t> random_row(DType t, int64_t n, std::mt19937& rng) {
  const auto ti = info(t);
  std::vector<uint8_t> r(row_bytes(t, n));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& x : r) x = uint8_t(byte(rng));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const size_t nb = size_t(n / ti.block);
  for (size_t i = 0; i < nb; ++i) {
    uint8_t* blk = r.data() + i * size_t(ti.block_bytes);
    auto set_h = [&](size_t off, float v) {
      const uint16_t h = fp32_to_fp16(v);
      std::memcpy(blk + off, &h, 2);
    };
    switch (t) {
      case DType::kQ4_0:
      case DType::kQ5_0:
        set_h(0, u(rng) * 0.1f);
        break;
      case DType::kQ8_0:
        set_h(0, u(rng) * 0.01f);
        for (int j = 0; j < 32; ++j)
          if (int8_t(blk[2 + j]) == -128) blk[2 + j] = 0x81;
        break;
      case DType::kQ4_K:
        set_h(0, u(rng) * 0.01f);
        set_h(2, u(rng) * 0.01f);
        break;
      case DType::kQ6_K:
        set_h(208, u(rng) * 0.01f);
        break;
      case DType::kF16:
        for (int64_t j = 0; j < n; ++j) set_h(size_t(2 * j), u(rng));
        break;
      case DType::kBF16:
        for (int64_t j = 0; j < n; ++j) {
          const uint16_t h = fp32_to_bf16(u(rng));
          std::memcpy(blk + 2 * j, &h, 2);
        }
        break;
      case DType::kF32:
        for (int64_t j = 0; j < n; ++j) {
          const float f = u(rng);
          std::memcpy(blk + 4 * j, &f, 4);
        }
        break;
      default:
        break;
    }
    if (t == DType::kF16 || t == DType::kBF16 || t == DType::kF32) break;  // whole row filled
  }
  return r;
}

// sum |w_i * a_i| over dequantised values: the scale of a dot product's rounding error.
// `act` is in vec_dot_type(t) (Q8_0 blocks, Q8_K blocks or f32).
inline double abs_dot(DType t, const void* w, const void* act, int64_t n) {
  std::vector<float> wd(static_cast<size_t>(n)), ad(static_cast<size_t>(n));
  dequantize_row(t, w, wd.data(), n);
  const DType vt = vec_dot_type(t);
  if (vt == DType::kQ8_K) {
    const auto* qb = static_cast<const BlockQ8_K*>(act);
    for (int64_t j = 0; j < n; ++j) ad[size_t(j)] = qb[j / 256].d * float(qb[j / 256].qs[j % 256]);
  } else {
    dequantize_row(vt, act, ad.data(), n);
  }
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += std::fabs(double(wd[size_t(j)]) * ad[size_t(j)]);
  return s;
}

}  // namespace g4::test
