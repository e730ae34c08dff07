// Half-precision conversions, bit-exact with ggml (ref: formats.md §2.2).
#pragma once
#include <cstdint>
#include <cstring>

namespace g4 {

float fp16_to_fp32_slow(uint16_t h);
uint16_t fp32_to_fp16(float f);

// Table lookup: 256 KiB, built once at start-up; exact for every input.
extern const float* const kFp16Table;
inline float fp16_to_fp32(uint16_t h) {
  return kFp16Table[h];
}

inline float bf16_to_fp32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t fp32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return uint16_t((u >> 16) | 0x0040);  // NaN: force quiet
  return uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

// Round a float to the nearest bf16 value (used for Gemma's embedding scale, spec §2.6).
inline float round_to_bf16(float f) {
  return bf16_to_fp32(fp32_to_bf16(f));
}

}  // namespace g4
