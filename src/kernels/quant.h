// Quantised block layouts (ggml-compatible) and their scalar reference kernels:
// dequantisation, activation quantisation (Q8_0, Q8_K) and block dot products.
// ref: formats.md §2 (layouts, worked examples) and §3 (activation handling).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/dtype.h"

namespace g4 {

// Blocks are packed (alignment 1): rows of 18/22/34/144/210-byte blocks sit at any byte
// offset, so fields are read with unaligned loads (formats.md §1.4 item 17).
constexpr int kQK = 32;    // elements per 32-block
constexpr int kQKK = 256;  // elements per K-quant super-block

struct __attribute__((packed)) BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
struct __attribute__((packed)) BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
struct __attribute__((packed)) BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
struct __attribute__((packed)) BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
struct __attribute__((packed)) BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
struct __attribute__((packed)) BlockQ8_K {
  float d;
  int8_t qs[256];
  int16_t bsums[16];
};
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);

// Dequantise n elements (a multiple of the block size) of a row of type t into dst.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// The activation format a weight type's dot product consumes (llama.cpp's vec_dot_type):
// Q4_0/Q5_0/Q8_0 -> Q8_0; Q4_K/Q6_K -> Q8_K; F32/F16/BF16 -> F32. (llama.cpp rounds
// activations to F16/BF16 for half-precision weights; g4 keeps them f32: as fast with
// F16C/AVX2 and more accurate.)
DType vec_dot_type(DType weight);

// Convert an f32 activation row into `vec_type` (bytes: row_bytes(vec_type, n)).
// Q8_0 uses x86 llama.cpp's rule (id = 127/amax, round half to even); Q8_K the reference
// rule (iscale = -127/max signed, round half to even, fp32 scale, 16-element sums).
void quantize_activation(DType vec_type, const float* x, void* dst, int64_t n);

// Scalar reference dot product of one weight row (type w) with one activation row in
// vec_dot_type(w), over n elements. The SIMD paths must agree with these.
float vec_dot_ref(DType w, int64_t n, const void* wrow, const void* arow);

// Unpack the 6-bit (scale, min) pair of sub-block j of a Q4_K/Q5_K block.
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = uint8_t((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = uint8_t((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

}  // namespace g4
