#include "model/forward_common.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/attention_simd.h"
#include "kernels/ops.h"
#include "model/model.h"

namespace g4 {

Status flatten_batch(const StepBatch& batch, KvCache& kv, int vocab, FlatBatch& fb) {
  const int64_t T = batch.n_tokens();
  fb.tok_seq.clear();
  fb.tok_pos.clear();
  fb.ids.clear();
  fb.tok_seq.reserve(size_t(T));
  fb.tok_pos.reserve(size_t(T));
  fb.ids.reserve(size_t(T));
  for (size_t s = 0; s < batch.seqs.size(); ++s) {
    const SeqStep& st = batch.seqs[s];
    if (!kv.has_sequence(st.seq_id))
      return Status::error("unknown sequence " + std::to_string(st.seq_id));
    if (st.start_pos != kv.length(st.seq_id)) {
      return Status::error("sequence " + std::to_string(st.seq_id) + " continues at position " +
                           std::to_string(st.start_pos) + " but holds " +
                           std::to_string(kv.length(st.seq_id)));
    }
    if (int64_t(st.tokens.size()) > kv.max_chunk()) {
      return Status::error("step of " + std::to_string(st.tokens.size()) +
                           " tokens exceeds the chunk limit " + std::to_string(kv.max_chunk()));
    }
    if (st.start_pos + int64_t(st.tokens.size()) > kv.n_ctx()) {
      return Status::error("context full: " + std::to_string(st.start_pos + st.tokens.size()) +
                           " tokens exceed the context size " + std::to_string(kv.n_ctx()));
    }
    for (size_t i = 0; i < st.tokens.size(); ++i) {
      const int32_t id = st.tokens[i];
      if (id < 0 || id >= vocab)
        return Status::error("token id " + std::to_string(id) + " out of range");
      fb.tok_seq.push_back(int(s));
      fb.tok_pos.push_back(st.start_pos + int64_t(i));
      fb.ids.push_back(id);
    }
  }
  if (T == 0) return Status::error("empty batch");
  fb.ends.clear();  // reused: no allocation per decoding step
  for (const SeqStep& st : batch.seqs)
    fb.ends.push_back({st.seq_id, st.start_pos + int64_t(st.tokens.size())});
  return kv.reserve_all(fb.ends);
}

PageScoring page_scoring(const AttentionArgs& args, const KvCache& kv, int seq, int layer,
                         const float* q_tok, int64_t p0, int nq, bool decoding, int kvh) {
  PageScoring ps;
  const KvView w = kv.view(seq, layer);
  const SparseAttentionOptions& sp = kv.routing(seq);
  if (nq != 1 || w.blocks == nullptr || !sp.enabled || p0 < sp.min_context ||
      !(decoding || sp.prefill)) {
    return ps;
  }
  ps.s = kv.summaries(seq, layer, kvh);
  const int page_shift = w.block_shift - ps.s.page_shift;  // log2 of positions per page
  const int64_t pt = int64_t(1) << page_shift;
  ps.n_pages = (p0 >> page_shift) + 1;
  ps.budget = budget_pages(sp, ps.n_pages, pt);
  if (ps.n_pages <= ps.budget) return ps;
  ps.routed = true;
  ps.recent = sp.recent_pages;
  ps.to = pages_to_score(ps.n_pages, ps.budget, ps.recent);
  const int group = args.n_heads / args.n_kv_heads;
  ps.q = q_tok + size_t(kvh) * size_t(group) * size_t(args.head_dim);
  ps.oracle = sp.oracle_rank;
  ps.w = w;
  ps.kvh = kvh;
  return ps;
}

void score_page_range(const AttentionArgs& args, const PageScoring& ps, int64_t from, int64_t to,
                      float* scores) {
  const int group = args.n_heads / args.n_kv_heads, hd = args.head_dim;
  if (!ps.oracle) return score_pages(ps.q, group, hd, ps.s, from, to, scores);
  // Every key of the page widened (any cache type) and dotted with each of the group's
  // queries; the page's score is the largest product. Pages [1, to) lie before the query.
  const bool f16 = !args.kv_f32 && !args.kv_q8 && !args.kv_q4 && !args.kv_bf16;
  const DType t = args.kv_f32 ? DType::kF32 : f16 ? DType::kF16 : attn::kv_dtype(args);
  const size_t head_bytes = row_bytes(t, hd), stride = size_t(args.n_kv_heads) * head_bytes;
  const auto* kb = static_cast<const uint8_t*>(ps.w.k) + size_t(ps.kvh) * head_bytes;
  const int page_shift = ps.w.block_shift - ps.s.page_shift;
  std::vector<float> key(static_cast<size_t>(hd));
  auto widen_key = [&](int64_t pos) {
    const uint8_t* row = kb + size_t(ps.w.row(pos)) * stride;
    if (t == DType::kF32)
      std::memcpy(key.data(), row, sizeof(float) * size_t(hd));
    else if (t == DType::kF16)
      attn::widen(reinterpret_cast<const uint16_t*>(row), key.data(), hd);
    else
      attn::dequant_kv(t, row, key.data(), hd);
  };
  for (int64_t p = from; p < to; ++p) {
    float best = -INFINITY;
    for (int64_t pos = p << page_shift; pos < (p + 1) << page_shift; ++pos) {
      widen_key(pos);
      for (int h = 0; h < group; ++h) {
        const float* qh = ps.q + size_t(h) * size_t(hd);
        float dot = 0.f;
        for (int i = 0; i < hd; ++i) dot += qh[i] * key[size_t(i)];
        best = std::max(best, dot);
      }
    }
    scores[p] = best;
  }
}

KeySource key_source(const AttentionArgs& args, const KvCache& kv, int seq, int layer,
                     const float* q_tok, int64_t p0, int nq, bool decoding, int kvh,
                     std::vector<int32_t>& table, std::vector<float>& bound,
                     const PageScoring* scored) {
  const KvView w = kv.view(seq, layer);
  KeySource src;
  src.a = args;
  src.a.blocks = w.blocks;
  src.a.block_shift = w.block_shift;
  src.k = w.k;
  src.v = w.v;
  src.p0 = p0;
  src.chunks = attention_key_chunks(args.window, p0 + nq - 1);
  const PageScoring ps = scored != nullptr
                             ? *scored
                             : page_scoring(args, kv, seq, layer, q_tok, p0, nq, decoding, kvh);
  if (!ps.routed) return src;
  // The group's queries choose the pages; attention runs over them as one virtual paged
  // sequence whose "blocks" are pages: page p of block b is unit b * pages_per_block + p of
  // page size (keys are stored rotated, so a key's score does not depend on where it sits).
  table.resize(size_t(ps.n_pages));
  if (scored == nullptr) {
    bound.resize(size_t(ps.n_pages));
    score_page_range(args, ps, 1, ps.to, bound.data());
  }
  const int n = pick_pages(bound.data(), ps.n_pages, ps.budget, ps.recent, table.data());
  const int32_t in_block = (int32_t(1) << ps.s.page_shift) - 1;
  for (int i = 0; i < n; ++i) {
    const int32_t p = table[size_t(i)];
    table[size_t(i)] = (w.blocks[p >> ps.s.page_shift] << ps.s.page_shift) + (p & in_block);
  }
  const int page_shift = w.block_shift - ps.s.page_shift;
  const int64_t pt = int64_t(1) << page_shift;
  src.a.blocks = table.data();
  src.a.block_shift = page_shift;
  src.p0 = (int64_t(n - 1) << page_shift) + (p0 & (pt - 1));
  src.chunks = attention_key_chunks(args.window, src.p0);
  return src;
}

void attend_source_chunk(const KeySource& src, const float* q, size_t qd, int nq, int h0, int h1,
                         int64_t c, float* out, float* stats, float* scratch) {
  attend_block(attention_chunk_args(src.a, c), q, qd, src.p0, nq, src.k, src.v, h0, h1, out, qd,
               scratch, stats);
}

void merge_chunk(const AttentionArgs& a, int nq, size_t qd, int h0, int h1, float* out,
                 float* stats, const float* part, const float* part_stats) {
  for (int i = 0; i < nq; ++i) {
    for (int h = h0; h < h1; ++h) {
      const size_t o = size_t(i) * qd + size_t(h) * size_t(a.head_dim);
      const size_t so = 2 * (size_t(i) * size_t(a.n_heads) + size_t(h));
      attention_merge(out + o, stats + so, part + o, part_stats + so, a.head_dim);
    }
  }
}

void attend_cached(const AttentionArgs& args, const KvCache& kv, int seq, int layer,
                   const float* q_tok, int64_t pos, bool decoding, int h0, int h1, float* out_tok,
                   float* scratch) {
  attend_cached_block(args, kv, seq, layer, q_tok, size_t(args.n_heads) * size_t(args.head_dim),
                      pos, 1, decoding, h0, h1, out_tok, scratch);
}

void attend_cached_block(const AttentionArgs& args, const KvCache& kv, int seq, int layer,
                         const float* q, size_t qd, int64_t p0, int nq, bool decoding, int h0,
                         int h1, float* out, float* scratch) {
  const SparseAttentionOptions& sp = kv.routing(seq);
  if (nq > 1 && sp.enabled && sp.prefill && p0 + nq > sp.min_context) {
    // Prompt tokens that sparse routing chooses keys for one by one.
    for (int i = 0; i < nq; ++i)
      attend_cached_block(args, kv, seq, layer, q + size_t(i) * qd, qd, p0 + i, 1, decoding, h0, h1,
                          out + size_t(i) * qd, scratch);
    return;
  }
  // Scratch: one chunk's rows (laid out as out), the running and the chunk's stats, then
  // the kernel's.
  const size_t rows = size_t(nq) * size_t(args.n_heads);
  float* part = scratch;
  float* st = part + size_t(nq) * qd;
  float* part_st = st + 2 * rows;
  float* ks = part_st + 2 * rows;
  thread_local std::vector<int32_t> table;
  thread_local std::vector<float> bound;
  const int group = args.n_heads / args.n_kv_heads;
  for (int hs = h0; hs < h1;) {  // a KV head at a time (each has its own selection)
    const int kvh = hs / group, he = std::min(h1, (kvh + 1) * group);
    const KeySource src = key_source(args, kv, seq, layer, q, p0, nq, decoding, kvh, table, bound);
    attend_source_chunk(src, q, qd, nq, hs, he, 0, out, st, ks);
    for (int64_t c = 1; c < src.chunks; ++c) {
      attend_source_chunk(src, q, qd, nq, hs, he, c, part, part_st, ks);
      merge_chunk(args, nq, qd, hs, he, out, st, part, part_st);
    }
    hs = he;
  }
}

void summarize_step(const StepBatch& batch, KvCache& kv, int layer) {
  if (!kv.sparse().enabled || !kv.paged(layer) || kv.owner(layer) != layer) return;
  for (const SeqStep& st : batch.seqs)
    kv.summarize(st.seq_id, layer, st.start_pos, st.start_pos + int64_t(st.tokens.size()));
}

void output_head(const StepBatch& batch, KvCache& kv, const float* x, int64_t d,
                 const std::vector<float>& output_norm, float eps, const WeightView& tok_embd,
                 int vocab, float softcap, ExecContext& ctx, StepOutput& out) {
  for (const SeqStep& st : batch.seqs)
    kv.set_length(st.seq_id, st.start_pos + int64_t(st.tokens.size()));

  // Select the rows that need logits.
  out.vocab_size = vocab;
  out.row_seq.clear();
  out.row_token.clear();
  int64_t t0 = 0;
  std::vector<int64_t>& rows = ctx.rows;
  rows.clear();
  for (size_t s = 0; s < batch.seqs.size(); ++s) {
    const int64_t n = int64_t(batch.seqs[s].tokens.size());
    for (int64_t i = batch.seqs[s].all_logits ? 0 : n - 1; i < n; ++i) {
      out.row_seq.push_back(int32_t(s));
      out.row_token.push_back(int32_t(i));
      rows.push_back(t0 + i);
    }
    t0 += n;
  }
  const int64_t R = int64_t(rows.size());
  float* hn = grow(ctx.act.head_in, size_t(R * d));
  for (int64_t r = 0; r < R; ++r)
    rmsnorm(x + rows[size_t(r)] * d, output_norm.data(), hn + r * d, d, eps);
  out.logits.resize(size_t(R) * size_t(vocab));
  matmul(ctx.pool, tok_embd, hn, R, out.logits.data(), ctx.mm, ctx.isa, ctx.exact);
  if (softcap > 0.f) {  // 262144 tanh per row: in lanes, split across the threads
    float* z = out.logits.data();
    ctx.pool.parallel_for(out.logits.size(), 4096, [&](size_t b, size_t e, int) {
      softcap_inplace(z + b, int64_t(e - b), softcap);
    });
  }
}

const char* step_phase_name(StepPhase p) {
  static const char* const kNames[] = {"embedding, RoPE tables",
                                       "norms, residuals",
                                       "q/k/v",
                                       "q/k norm, RoPE, KV store",
                                       "attention",
                                       "o proj",
                                       "gate/up + GELU",
                                       "down",
                                       "MoE router + experts",
                                       "per-layer embeddings",
                                       "LM head"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == size_t(StepPhase::kCount));
  return kNames[int(p)];
}

}  // namespace g4
