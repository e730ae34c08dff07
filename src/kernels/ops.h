// Element-wise and normalisation ops, f32 in and out (ref: gemma-architecture.md §2.1).
#pragma once
#include <cstdint>

#include "kernels/dot_simd.h"

namespace g4 {

// y = x / sqrt(mean(x^2) + eps) * w   (w == nullptr: unweighted). In place allowed.
void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps);

// GELU, tanh approximation (gelu_pytorch_tanh).
float gelu_tanh(float x);
// g[i] = gelu(g[i]) * u[i]. fast: 16 lanes at a time on AVX-512, 8 on AVX2 (the same bits),
// tanh from a ~1-ulp exp (within ~2e-7 relative of gelu_tanh); the forward uses it only when
// the result is next rounded to int8 activation blocks anyway (quantised down projection,
// default numerics). geglu_fast: that path on a given ISA (libm's tanh on scalar).
void geglu_inplace(float* g, const float* u, int64_t n, bool fast = false);
void geglu_fast(float* g, const float* u, int64_t n, Isa isa);

// NEOX ("rotate-half") RoPE over the first n_rot dims of one head vector of length n_rot:
// pairs (i, i + n_rot/2), angle = pos * inv_freq[i].
void rope_neox(float* x, int n_rot, const float* inv_freq, double pos);
// The same rotation split in two, so one token's angles serve all its heads (bit-identical
// to rope_neox): cs/sn[n_rot / 2] = cos/sin(pos * inv_freq) in double, rounded to float.
void rope_angles(int n_rot, const float* inv_freq, double pos, float* cs, float* sn);
void rope_neox_cs(float* x, int n_rot, const float* cs, const float* sn);

// exp(t) for t <= 0 as softmax computes it (in double: Cephes' reduction by ln 2 and Taylor's
// series to r^11, rounded once to float, so expf's correctly rounded value; 0 below -87):
// softmax's SIMD lanes give these bits for every value, so the result does not depend on the
// CPU or on where a value sits in the array.
float softmax_exp(float t);
// Logit soft-capping, cap * tanh(z / cap) (Gemma 2 attention scores, Gemma 2/4 final
// logits): z / cap in float, tanh in double (expm1(2x) / (expm1(2x) + 2) with softmax_exp's
// reduction and series, so tanhf's correctly rounded value but in rare ties), rounded to
// float, times cap. softcap_inplace runs 8 AVX2 lanes with the same operations: the same bits
// for every value, CPU and position. NaN stays NaN.
float softcap(float z, float cap);
void softcap_inplace(float* x, int64_t n, float cap);
// In-place softmax over n values.
void softmax(float* x, int64_t n);
// softmax, and when stats is set: stats[0] = the largest input, stats[1] = the sum of
// exp(x - max) that normalised it (split attention merges partial results with them).
void softmax_stats(float* x, int64_t n, float* stats);

}  // namespace g4
