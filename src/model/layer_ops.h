// The op layer: the per-token work every Gemma forward repeats (embedding, norms and
// residuals, RoPE tables, attention with QK-norm/RoPE/KV store, the gated MLP), written once
// over a step's named Activations, so that a forward (gemma3.cc, gemma4.cc) reads like the
// spec's layer and every architecture gets every fusion and the same threading. Ops run
// their loops on ctx.pool and record their time in `clock` (g4 bench --profile).
//
// Results are the same bits for any thread count and batch composition: every per-token
// loop does the same arithmetic for a token wherever it runs.
#pragma once
#include <cstdint>

#include "model/forward_common.h"

namespace g4 {

struct ExecContext;
struct WeightView;

// x[t] = tok_embd[ids[t]] * scale.
void embed_op(const WeightView& tok_embd, const FlatBatch& fb, float scale, int64_t d,
              ExecContext& ctx, float* x);

// y[t] = rmsnorm(x[t]; w) (w == nullptr: unweighted) for every token. In place allowed.
void norm_op(ExecContext& ctx, const float* x, const float* w, float* y, int64_t T, int64_t d,
             float eps);

// A block's output into the residual stream, fused with what follows it, per token:
//   h = rmsnorm(h; post);  x += h;  x *= scale (if scale != 1);  h = rmsnorm(x; next) (if next)
// `next` is the next block's pre-norm, so its input is ready without another pass.
void residual_op(ExecContext& ctx, float* h, const float* post, float* x, float scale,
                 const float* next, int64_t T, int64_t d, float eps);

// RoPE angle tables for every token of the step, computed once instead of per layer and
// head: table i is [T][n_rot_i] (cos of the n_rot/2 pairs, then sin), bit-identical to
// rope_neox's angles. out[i] receives table i's start (in ctx's activations).
struct RopeFreqs {
  const float* inv_freq;
  int n_rot;
};
void rope_tables_op(ExecContext& ctx, const FlatBatch& fb, int64_t T, const RopeFreqs* freqs, int n,
                    const float** out);

// The start of every forward step: validates and flattens the batch into ctx.flat (reserving
// its KV blocks; nothing changes on an error), fills ctx.act.x [T, d] with the scaled
// embeddings and builds the RoPE tables of freqs[0..1] (local, global) into rope[0..1].
Status begin_step(const StepBatch& batch, KvCache& kv, int vocab, const WeightView& tok_embd,
                  float embed_scale, int64_t d, const RopeFreqs freqs[2], ExecContext& ctx,
                  const float* rope[2]);

// One attention block's weights and geometry.
struct AttentionSpec {
  const WeightView* q = nullptr;
  const WeightView* k = nullptr;  // unused when !owns_kv
  const WeightView* v = nullptr;  // nullptr: K = V (the value is the raw key projection)
  const WeightView* o = nullptr;
  bool qk_norm = false;  // rmsnorm(q; q_norm), rmsnorm(k; k_norm) per head before RoPE
  const float* q_norm = nullptr;
  const float* k_norm = nullptr;
  bool v_norm = false;  // unweighted rmsnorm of each value head
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int n_rot = 0;                // RoPE over the first n_rot dims of each head
  const float* rope = nullptr;  // this layer type's table from rope_tables_op
  float q_scale = 1.f;          // query scale after RoPE (1: none)
  int64_t window = 0;           // sliding window (0: global)
  float softcap = 0.f;          // attention logit soft-cap (0: none)
  bool owns_kv = true;          // false: a KV-shared layer reading its donor's cache
  float eps = 1e-6f;
};

// out = o · attention(q, cache) for the normed input `in` [T, d]: q/k/v projections in one
// pool job, QK-norm, RoPE, V-norm and the KV store per token, sparse routing's summaries,
// then attention jobs of several heads (see attention_heads_per_job). out may equal in.
void attention_op(const AttentionSpec& A, int layer, const StepBatch& batch, const FlatBatch& fb,
                  KvCache& kv, ExecContext& ctx, const float* in, float* out, int64_t T,
                  PhaseClock& clock);

// How many attention_op calls took the chunk-parallel (flash-decoding) path, process-wide:
// tests check which path a step ran.
uint64_t chunk_parallel_attention_calls();

// out = down · (gelu(gate · in) ⊙ (up · in)): gate and up in one pool job, GeGLU fused as its
// epilogue on each thread's rows. out may equal in.
void gated_mlp_op(ExecContext& ctx, const WeightView& gate, const WeightView& up,
                  const WeightView& down, const float* in, float* out, int64_t T, int64_t ff,
                  PhaseClock& clock);

}  // namespace g4
