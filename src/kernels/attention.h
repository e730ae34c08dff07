// Causal attention of one query token over a sequence's KV cache (fp16, f32, bf16, q8_0, q4_0).
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
  bool kv_q8 = false;    // k, v hold q8_0 blocks (head_dim a multiple of 32)
  bool kv_q4 = false;    // k, v hold q4_0 blocks (head_dim a multiple of 32)
  bool kv_bf16 = false;  // k, v hold bf16
  // Paged cache (global layers): the row of position p is
  // (blocks[p >> block_shift] << block_shift) + (p & (2^block_shift - 1)); capacity unused.
  const int32_t* blocks = nullptr;
  int block_shift = 0;
};

// The cache row holding position p.
inline int64_t attention_row(const AttentionArgs& a, int64_t p) {
  return a.blocks ? (int64_t(a.blocks[p >> a.block_shift]) << a.block_shift) +
                        (p & ((int64_t(1) << a.block_shift) - 1))
                  : p % a.capacity;
}

// q: [n_heads][head_dim] (already scaled and rotated); k, v: rows of [n_kv_heads][head_dim]
// (see attention_row)
// fp16, or float when a.kv_f32; out: [n_heads][head_dim]. scores: scratch of at least min(pos+1,
// window or pos+1) floats. Heads [h0, h1) only, so callers can split heads across threads.
void attend_one(const AttentionArgs& a, const float* q, const void* k, const void* v, int64_t pos,
                int h0, int h1, float* out, float* scores);

// attend_one for heads [h0, h1), bit-identical per head, but heads sharing a KV head (GQA)
// widen each fp16 K/V row to f32 once for all of them. scores: attention_scratch_floats().
void attend_group(const AttentionArgs& a, const float* q, const void* k, const void* v, int64_t pos,
                  int h0, int h1, float* out, float* scores);
size_t attention_scratch_floats(const AttentionArgs& a, int64_t max_keys);

// attend_group for nq consecutive positions p0, p0 + 1, ... of one sequence (a prompt chunk),
// bit for bit per token: q and out rows of token i at q + i * q_stride, out + i * out_stride.
// With an fp16 cache (AVX2 CPUs) each tile of 64 keys is read once for all the block's query
// rows instead of once per token (flash-attention-style tiling with the exact two-pass softmax:
// the block's scores are kept, nq x group x keys floats, never T x T). Heads [h0, h1) must
// share one KV head. scratch: attention_block_scratch_floats(a, nq, max_keys).
void attend_block(const AttentionArgs& a, const float* q, size_t q_stride, int64_t p0, int nq,
                  const void* k, const void* v, int h0, int h1, float* out, size_t out_stride,
                  float* scratch);
size_t attention_block_scratch_floats(const AttentionArgs& a, int nq, int64_t max_keys);
// Query tokens per attend_block: 16, fewer where a block's scores would pass 16 MiB.
int attention_query_block(int group, int head_dim, int64_t max_keys);

}  // namespace g4
