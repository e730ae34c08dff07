// Causal attention of one query token over a sequence's fp16 KV cache.
#pragma once
#include <cstddef>
#include <cstdint>

namespace g4 {

struct AttentionArgs {
  int n_heads = 1;
  int n_kv_heads = 1;
  int head_dim = 256;
  int64_t capacity = 0;  // slots in the cache (slot = position % capacity)
  int64_t window = 0;    // 0 = causal over all positions; else keys p - window < k <= p
  float softcap = 0.f;   // 0 = none
  bool kv_f32 = false;   // k, v hold float instead of fp16
};

// q: [n_heads][head_dim] (already scaled and rotated); k, v: [capacity][n_kv_heads][head_dim]
// fp16, or float when a.kv_f32; out: [n_heads][head_dim]. scores: scratch of at least min(pos+1,
// window or pos+1) floats. Heads [h0, h1) only, so callers can split heads across threads.
void attend_one(const AttentionArgs& a, const float* q, const void* k, const void* v, int64_t pos,
                int h0, int h1, float* out, float* scores);

// attend_one for heads [h0, h1), bit-identical per head, but heads sharing a KV head (GQA)
// widen each fp16 K/V row to f32 once for all of them. scores: attention_scratch_floats().
void attend_group(const AttentionArgs& a, const float* q, const void* k, const void* v, int64_t pos,
                  int h0, int h1, float* out, float* scores);
size_t attention_scratch_floats(const AttentionArgs& a, int64_t max_keys);

}  // namespace g4
