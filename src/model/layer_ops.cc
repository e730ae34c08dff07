#include "model/layer_ops.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>

#include "kernels/attention.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "model/model.h"
#include "model/weights.h"

namespace g4 {

void embed_op(const WeightView& tok_embd, const FlatBatch& fb, float scale, int64_t d,
              ExecContext& ctx, float* x) {
  const int64_t T = int64_t(fb.ids.size());
  ctx.pool.parallel_for(size_t(T), kNormGrain, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) {
      float* xt = x + int64_t(t) * d;
      get_row(tok_embd, fb.ids[t], xt);
      for (int64_t i = 0; i < d; ++i) xt[i] *= scale;
    }
  });
}

void norm_op(ExecContext& ctx, const float* x, const float* w, float* y, int64_t T, int64_t d,
             float eps) {
  ctx.pool.parallel_for(size_t(T), kNormGrain, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) rmsnorm(x + t * size_t(d), w, y + t * size_t(d), d, eps);
  });
}

void residual_op(ExecContext& ctx, float* h, const float* post, float* x, float scale,
                 const float* next, int64_t T, int64_t d, float eps) {
  ctx.pool.parallel_for(size_t(T), kNormGrain, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) {
      float* ht = h + t * size_t(d);
      float* xt = x + t * size_t(d);
      rmsnorm(ht, post, ht, d, eps);
      for (int64_t i = 0; i < d; ++i) xt[i] += ht[i];
      if (scale != 1.f) {
        for (int64_t i = 0; i < d; ++i) xt[i] *= scale;
      }
      if (next != nullptr) rmsnorm(xt, next, ht, d, eps);
    }
  });
}

void rope_tables_op(ExecContext& ctx, const FlatBatch& fb, int64_t T, const RopeFreqs* freqs, int n,
                    const float** out) {
  size_t total = 0;
  for (int i = 0; i < n; ++i) total += size_t(T) * size_t(freqs[i].n_rot);
  float* base = grow(ctx.act.rope, total);
  ctx.pool.parallel_for(size_t(T), kNormGrain, [&](size_t b, size_t e, int) {
    float* tab = base;
    for (int i = 0; i < n; ++i) {
      const int nr = freqs[i].n_rot;
      for (size_t t = b; t < e; ++t) {
        float* cs = tab + t * size_t(nr);
        rope_angles(nr, freqs[i].inv_freq, double(fb.tok_pos[t]), cs, cs + nr / 2);
      }
      tab += size_t(T) * size_t(nr);
    }
  });
  float* tab = base;
  for (int i = 0; i < n; ++i) {
    out[i] = tab;
    tab += size_t(T) * size_t(freqs[i].n_rot);
  }
}

Status begin_step(const StepBatch& batch, KvCache& kv, int vocab, const WeightView& tok_embd,
                  float embed_scale, int64_t d, const RopeFreqs freqs[2], ExecContext& ctx,
                  const float* rope[2]) {
  Status valid = flatten_batch(batch, kv, vocab, ctx.flat);
  if (!valid.ok()) return valid;
  const int64_t T = batch.n_tokens();
  grow(ctx.act.h, size_t(T * d));
  embed_op(tok_embd, ctx.flat, embed_scale, d, ctx, grow(ctx.act.x, size_t(T * d)));
  rope_tables_op(ctx, ctx.flat, T, freqs, 2, rope);
  return Status();
}

namespace {
std::atomic<uint64_t> g_chunk_parallel_calls{0};
}  // namespace

uint64_t chunk_parallel_attention_calls() {
  return g_chunk_parallel_calls.load(std::memory_order_relaxed);
}

void attention_op(const AttentionSpec& A, int layer, const StepBatch& batch, const FlatBatch& fb,
                  KvCache& kv, ExecContext& ctx, const float* in, float* out, int64_t T,
                  PhaseClock& clock) {
  Activations& act = ctx.act;
  const int H = A.n_heads, Hkv = A.n_kv_heads, hd = A.head_dim, nr = A.n_rot;
  const int64_t qd = int64_t(H) * hd, kvd = int64_t(Hkv) * hd;
  float* q = grow(act.q, size_t(T * qd));
  float* a = grow(act.att, size_t(T * qd));
  float* k = nullptr;
  float* v = nullptr;
  if (A.owns_kv) {
    k = grow(act.k, size_t(T * kvd));
    v = grow(act.v, size_t(T * kvd));
    const MatmulOut qkv[3] = {{A.q, q}, {A.k, k}, {A.v, v}};  // one pool job for all
    matmul_multi(ctx.pool, qkv, A.v != nullptr ? 3 : 2, in, T, ctx.mm, ctx.isa, ctx.exact);
  } else {
    matmul(ctx.pool, *A.q, in, T, q, ctx.mm, ctx.isa, ctx.exact);
  }
  clock.mark(StepPhase::kQkv);

  // Per token: QK-norm, RoPE (angles shared by all heads), query scale, V-norm, KV store.
  ctx.pool.parallel_for(size_t(T), 1, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) {
      const float* cs = A.rope + t * size_t(nr);
      const float* sn = cs + nr / 2;
      for (int hh = 0; hh < H; ++hh) {
        float* qh = q + t * size_t(qd) + size_t(hh) * size_t(hd);
        if (A.qk_norm) rmsnorm(qh, A.q_norm, qh, hd, A.eps);
        rope_neox_cs(qh, nr, cs, sn);
        if (A.q_scale != 1.f) {
          for (int i = 0; i < hd; ++i) qh[i] *= A.q_scale;
        }
      }
      if (!A.owns_kv) continue;
      float* kt = k + t * size_t(kvd);
      float* vt = v + t * size_t(kvd);
      if (A.v == nullptr) std::memcpy(vt, kt, sizeof(float) * size_t(kvd));  // K = V: raw key
      for (int hh = 0; hh < Hkv; ++hh) {
        float* kh = kt + size_t(hh) * size_t(hd);
        if (A.qk_norm) rmsnorm(kh, A.k_norm, kh, hd, A.eps);
        rope_neox_cs(kh, nr, cs, sn);
        if (A.v_norm) {
          float* vh = vt + size_t(hh) * size_t(hd);
          rmsnorm(vh, nullptr, vh, hd, A.eps);
        }
      }
      kv.store(batch.seqs[size_t(fb.tok_seq[t])].seq_id, layer, fb.tok_pos[t], kt, vt);
    }
  });
  summarize_step(batch, kv, layer);  // sparse routing's block summaries (if on)
  clock.mark(StepPhase::kRopeKv);

  // KV-shared layers read their donor's cache (kv.view maps the layer to it), own mask.
  AttentionArgs args{H, Hkv, hd, kv.capacity(layer), A.window, A.softcap};
  set_kv_format(args, kv);
  const int64_t chunk_keys = attention_chunk_keys(A.window, kv.n_ctx());
  // Query blocks: runs of up to nq consecutive tokens of one sequence (attend_block reads each
  // key tile once for all of them); a one-token step is a block of one.
  const int nq = attention_query_block(H / Hkv, hd, chunk_keys);
  // (first token, tokens); the pool's workers read the calling thread's list through `blocks`.
  thread_local std::vector<std::pair<int32_t, int32_t>> block_list;
  std::vector<std::pair<int32_t, int32_t>>& blocks = block_list;
  blocks.clear();
  int64_t max_chunks = 1;
  bool singles = true;
  {
    int64_t t0 = 0;
    for (const SeqStep& st : batch.seqs) {
      const int64_t n = int64_t(st.tokens.size());
      for (int64_t i = 0; i < n; i += nq)
        blocks.push_back({int32_t(t0 + i), int32_t(std::min<int64_t>(nq, n - i))});
      max_chunks = std::max(max_chunks, attention_key_chunks(A.window, st.start_pos + n - 1));
      singles = singles && n == 1;
      t0 += n;
    }
  }
  const int threads = ctx.pool.size();
  const int64_t nb = int64_t(blocks.size());
  const size_t per_thread = attention_split_scratch_floats(args, nq, chunk_keys);
  float* sc = grow(act.scores, per_thread * size_t(threads));
  auto seq_of = [&](int64_t b) -> const SeqStep& {
    return batch.seqs[size_t(fb.tok_seq[size_t(blocks[size_t(b)].first)])];
  };
  int per_job = attention_heads_per_job(nb, H, Hkv, threads);
  if (!(singles && max_chunks > 1 && nb * (H / per_job) < 2 * int64_t(threads))) {
    // Enough jobs of (query block, heads): each runs its chunks in order (attend_cached_block).
    const int jobs_per_block = H / per_job;
    ctx.pool.parallel_for(size_t(nb) * size_t(jobs_per_block), 1, [&](size_t b, size_t e, int ti) {
      float* scratch = sc + size_t(ti) * per_thread;
      for (size_t j = b; j < e; ++j) {
        const auto [t0, n] = blocks[zigzag_token(j / size_t(jobs_per_block), size_t(nb))];
        const int h0 = int(j % size_t(jobs_per_block)) * per_job;
        const SeqStep& st = batch.seqs[size_t(fb.tok_seq[size_t(t0)])];
        attend_cached_block(args, kv, st.seq_id, layer, q + size_t(t0) * size_t(qd), size_t(qd),
                            fb.tok_pos[size_t(t0)], n, !st.prompt && st.tokens.size() == 1, h0,
                            h0 + per_job, a + size_t(t0) * size_t(qd), scratch);
      }
    });
  } else {
    // Few decoding tokens over long contexts (flash-decoding): the jobs are (token, heads, key
    // chunk), so one sequence's keys are read by every thread once, not by each thread whole.
    // Each (token, KV head) first gets its key source (sparse routing chooses its pages there),
    // chunk 0 writes the output rows, chunk c > 0 its own rows, and the chunks are merged in
    // order: the same operations as attend_cached_block's, so the same bits.
    // (The workers reach the calling thread's buffers through these references.)
    g_chunk_parallel_calls.fetch_add(1, std::memory_order_relaxed);
    thread_local std::vector<KeySource> src_list;
    thread_local std::vector<PageScoring> scoring_list;
    thread_local std::vector<std::vector<int32_t>> table_list;
    thread_local std::vector<std::vector<float>> bound_list;
    thread_local std::vector<std::array<int64_t, 3>> slice_list;  // (unit, from, to)
    std::vector<KeySource>& srcs = src_list;
    std::vector<PageScoring>& scorings = scoring_list;
    std::vector<std::vector<int32_t>>& tables = table_list;
    std::vector<std::vector<float>>& bounds = bound_list;
    std::vector<std::array<int64_t, 3>>& slices = slice_list;
    const size_t n_units = size_t(nb * Hkv);
    srcs.resize(n_units);
    scorings.resize(n_units);
    if (tables.size() < n_units) tables.resize(n_units);
    if (bounds.size() < n_units) bounds.resize(n_units);
    const int group = H / Hkv;
    auto unit_token = [&](size_t i) { return blocks[size_t(int64_t(i) / Hkv)].first; };
    // Sparse routing's decision per (token, KV head), once; its page scores in slices of pages
    // across the threads.
    slices.clear();
    constexpr int64_t kSlice = 32;  // pages per scoring job
    for (size_t i = 0; i < n_units; ++i) {
      const int32_t t0 = unit_token(i);
      const SeqStep& st = seq_of(int64_t(i) / Hkv);
      const PageScoring& ps = scorings[i] =
          page_scoring(args, kv, st.seq_id, layer, q + size_t(t0) * size_t(qd),
                       fb.tok_pos[size_t(t0)], 1, !st.prompt, int(int64_t(i) % Hkv));
      if (!ps.routed) continue;
      bounds[i].resize(size_t(ps.n_pages));
      for (int64_t f = 1; f < ps.to; f += kSlice)
        slices.push_back({int64_t(i), f, std::min(ps.to, f + kSlice)});
    }
    ctx.pool.parallel_for(slices.size(), 1, [&](size_t b, size_t e, int) {
      for (size_t j = b; j < e; ++j) {
        const auto [i, from, to] = slices[j];
        const PageScoring& ps = scorings[size_t(i)];
        score_page_range(args, ps, from, to, bounds[size_t(i)].data());
      }
    });
    // Key sources: picking pages is worth spreading only when some unit is routed.
    const size_t src_grain = slices.empty() ? n_units : 1;
    ctx.pool.parallel_for(n_units, src_grain, [&](size_t b, size_t e, int) {
      for (size_t i = b; i < e; ++i) {
        const int32_t t0 = unit_token(i);
        const SeqStep& st = seq_of(int64_t(i) / Hkv);
        srcs[i] = key_source(args, kv, st.seq_id, layer, q + size_t(t0) * size_t(qd),
                             fb.tok_pos[size_t(t0)], 1, !st.prompt, int(int64_t(i) % Hkv),
                             tables[i], bounds[i], &scorings[i]);
      }
    });
    // The chunks that exist: a routed unit's virtual sequence has fewer than the dense
    // position's max_chunks. Jobs are listed (not skipped in a (block, heads, chunk) grid), so
    // the pool's even split gives every thread its share of real chunks.
    max_chunks = 1;
    for (size_t i = 0; i < n_units; ++i) max_chunks = std::max(max_chunks, srcs[i].chunks);
    per_job = attention_heads_per_job(nb * max_chunks, H, Hkv, threads);
    const int64_t jobs_per_block = H / per_job;
    thread_local std::vector<std::array<int64_t, 3>> job_list;  // (block, first head, chunk)
    std::vector<std::array<int64_t, 3>>& jobs = job_list;
    jobs.clear();
    for (int64_t blk = 0; blk < nb; ++blk) {
      for (int64_t r = 0; r < jobs_per_block; ++r) {
        const int h0 = int(r) * per_job;
        const int64_t chunks = srcs[size_t(blk * Hkv + h0 / group)].chunks;
        for (int64_t c = 0; c < chunks; ++c) jobs.push_back({blk, h0, c});
      }
    }
    // Rows and stats of chunks 1..: [block][chunk][qd], then [block][chunk][H][2] (chunk 0's
    // stats too).
    const size_t units = size_t(nb * max_chunks);
    float* part = grow(act.att_chunks, units * (size_t(qd) + 2 * size_t(H)));
    float* stats = part + units * size_t(qd);
    ctx.pool.parallel_for(jobs.size(), 1, [&](size_t b, size_t e, int ti) {
      float* scratch = sc + size_t(ti) * per_thread;
      for (size_t j = b; j < e; ++j) {
        const auto [blk, h0, c] = jobs[j];
        const KeySource& src = srcs[size_t(blk * Hkv + h0 / group)];
        const size_t u = size_t(blk * max_chunks + c);
        const int32_t t0 = blocks[size_t(blk)].first;
        float* o = c == 0 ? a + size_t(t0) * size_t(qd) : part + u * size_t(qd);
        attend_source_chunk(src, q + size_t(t0) * size_t(qd), size_t(qd), 1, int(h0),
                            int(h0) + per_job, c, o, stats + u * 2 * size_t(H), scratch);
      }
    });
    // The merge is a few rows per (token, KV head): on this thread, not another barrier.
    for (size_t i = 0; i < n_units; ++i) {
      const int64_t blk = int64_t(i) / Hkv;
      const int kvh = int(int64_t(i) % Hkv);
      const KeySource& src = srcs[i];
      const size_t u0 = size_t(blk * max_chunks);
      float* out = a + size_t(blocks[size_t(blk)].first) * size_t(qd);
      for (int64_t c = 1; c < src.chunks; ++c)
        merge_chunk(args, 1, size_t(qd), kvh * group, (kvh + 1) * group, out,
                    stats + u0 * 2 * size_t(H), part + (u0 + size_t(c)) * size_t(qd),
                    stats + (u0 + size_t(c)) * 2 * size_t(H));
    }
  }
  clock.mark(StepPhase::kAttention);
  matmul(ctx.pool, *A.o, a, T, out, ctx.mm, ctx.isa, ctx.exact);
  clock.mark(StepPhase::kOutProj);
}

void gated_mlp_op(ExecContext& ctx, const WeightView& gate, const WeightView& up,
                  const WeightView& down, const float* in, float* out, int64_t T, int64_t ff,
                  PhaseClock& clock) {
  float* g = grow(ctx.act.gate, size_t(T * ff));
  float* u = grow(ctx.act.up, size_t(T * ff));
  // The vectorised GELU's last-ulp differences vanish in the int8 rounding of a quantised
  // down projection; f32/f16 models and --exact keep libm's tanh.
  const bool fast_gelu = !ctx.exact && vec_dot_type(down.type) != DType::kF32;
  const auto geglu = [&](size_t b, size_t e, int) {
    for (int64_t t = 0; t < T; ++t)
      geglu_inplace(g + size_t(t * ff) + b, u + size_t(t * ff) + b, int64_t(e - b), fast_gelu);
  };
  const RowEpilogue ep(geglu);
  const MatmulOut gu[2] = {{&gate, g}, {&up, u}};
  matmul_multi(ctx.pool, gu, 2, in, T, ctx.mm, ctx.isa, ctx.exact, &ep);
  clock.mark(StepPhase::kGateUp);
  matmul(ctx.pool, down, g, T, out, ctx.mm, ctx.isa, ctx.exact);
  clock.mark(StepPhase::kDown);
}

}  // namespace g4
