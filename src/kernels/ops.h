// Element-wise and normalisation ops, f32 in and out (ref: gemma-architecture.md §2.1).
#pragma once
#include <cstdint>

namespace g4 {

// y = x / sqrt(mean(x^2) + eps) * w   (w == nullptr: unweighted). In place allowed.
void rmsnorm(const float* x, const float* w, float* y, int64_t n, float eps);

// GELU, tanh approximation (gelu_pytorch_tanh).
float gelu_tanh(float x);
// g[i] = gelu(g[i]) * u[i]
void geglu_inplace(float* g, const float* u, int64_t n);

// NEOX ("rotate-half") RoPE over the first n_rot dims of one head vector of length n_rot:
// pairs (i, i + n_rot/2), angle = pos * inv_freq[i].
void rope_neox(float* x, int n_rot, const float* inv_freq, double pos);

// In-place softmax over n values.
void softmax(float* x, int64_t n);

}  // namespace g4
