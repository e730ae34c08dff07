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
  // Only keys at positions [key_lo, key_hi) (within each query's causal window): one chunk of
  // a split attention. Each query's result is then exact over that part of its keys, and the
  // kernels' optional stats give its score maximum and exp sum for attention_merge.
  int64_t key_lo = 0;
  int64_t key_hi = INT64_MAX;
};

// Split attention (flash-decoding): a global layer's keys are cut at every multiple of
// kAttentionKeyChunk positions (of the sequence, or of a sparse selection's virtual
// sequence), each chunk attended exactly on its own, and the chunks merged in order. The cut
// depends only on the query's position and the layer, never on the thread count or the
// batch, so a token's result is the same whether its chunks run on one thread or many; a
// query within the first chunk (and every sliding-window layer) is one chunk, whose result
// is the unsplit one bit for bit.
constexpr int64_t kAttentionKeyChunk = 2048;
// The split in use: kAttentionKeyChunk, unless a test shrank it (set_attention_key_chunk) to
// split the short contexts of tiny models.
int64_t attention_key_chunk();
void set_attention_key_chunk(int64_t keys);  // tests only; 0 restores kAttentionKeyChunk
// Chunks of a query at position pos (the last of a block) on a layer with this window.
inline int64_t attention_key_chunks(int64_t window, int64_t pos) {
  return window > 0 ? 1 : pos / attention_key_chunk() + 1;
}
// The most keys one chunk of a layer holds (what split attention's scratch is sized for).
inline int64_t attention_chunk_keys(int64_t window, int64_t n_ctx) {
  const int64_t w = window > 0 ? window : attention_key_chunk();
  return w < n_ctx ? w : n_ctx;
}
// a restricted to chunk c (no restriction for a one-chunk layer).
inline AttentionArgs attention_chunk_args(AttentionArgs a, int64_t c) {
  if (a.window > 0) return a;
  a.key_lo = c * attention_key_chunk();
  a.key_hi = a.key_lo + attention_key_chunk();
  return a;
}
// Folds one chunk's result for one (token, head) into the running one: out and st (score max,
// exp sum) hold the earlier chunks' merge, part and part_st the new chunk's (a sum of 0: no
// keys there, nothing changes). Every split path merges with this, chunk by chunk in order.
void attention_merge(float* out, float* st, const float* part, const float* part_st, int hd);

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
// stats (optional, [n_heads][2]): head h's score maximum and exp sum over its keys in
// [a.key_lo, a.key_hi) (a sum of 0 and its out row untouched when it has none).
void attend_one(const AttentionArgs& a, const float* q, const void* k, const void* v, int64_t pos,
                int h0, int h1, float* out, float* scores, float* stats = nullptr);

// attend_one for heads [h0, h1), bit-identical per head, but heads sharing a KV head (GQA)
// widen each fp16 K/V row to f32 once for all of them. scores: attention_scratch_floats().
void attend_group(const AttentionArgs& a, const float* q, const void* k, const void* v, int64_t pos,
                  int h0, int h1, float* out, float* scores, float* stats = nullptr);
size_t attention_scratch_floats(const AttentionArgs& a, int64_t max_keys);

// attend_group for nq consecutive positions p0, p0 + 1, ... of one sequence (a prompt chunk),
// bit for bit per token: q and out rows of token i at q + i * q_stride, out + i * out_stride.
// With an fp16 cache (AVX2 CPUs) each tile of 64 keys is read once for all the block's query
// rows instead of once per token (flash-attention-style tiling with the exact two-pass softmax:
// the block's scores are kept, nq x group x keys floats, never T x T). Heads [h0, h1) must
// share one KV head. scratch: attention_block_scratch_floats(a, nq, max_keys). stats (optional):
// token i's at stats + 2 * (i * n_heads + h), as attend_group's.
void attend_block(const AttentionArgs& a, const float* q, size_t q_stride, int64_t p0, int nq,
                  const void* k, const void* v, int h0, int h1, float* out, size_t out_stride,
                  float* scratch, float* stats = nullptr);
size_t attention_block_scratch_floats(const AttentionArgs& a, int nq, int64_t max_keys);
// Scratch of a split attention of nq tokens (per thread): a chunk's rows ([nq][n_heads][hd]),
// the running and the chunk's stats, and attend_block's for chunks of at most chunk_keys keys
// (attention_chunk_keys).
size_t attention_split_scratch_floats(const AttentionArgs& a, int nq, int64_t chunk_keys);
// Query tokens per attend_block: 16, fewer where a block's scores would pass 16 MiB.
int attention_query_block(int group, int head_dim, int64_t max_keys);

}  // namespace g4
