#include "model/forward_common.h"

#include <cmath>

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

void attend_cached(const AttentionArgs& args, const KvCache& kv, int seq, int layer,
                   const float* q_tok, int64_t pos, bool decoding, int h0, int h1, float* out_tok,
                   float* scores) {
  const KvView w = kv.view(seq, layer);
  AttentionArgs a = args;
  a.blocks = w.blocks;
  a.block_shift = w.block_shift;
  const SparseAttentionOptions& sp = kv.routing(seq);
  if (w.blocks == nullptr || !sp.enabled || pos < sp.min_context || !(decoding || sp.prefill)) {
    attend_group(a, q_tok, w.k, w.v, pos, h0, h1, out_tok, scores);
    return;
  }
  const BlockSummaries bs = kv.summaries(seq, layer, h0 / (a.n_heads / a.n_kv_heads));
  const int page_shift = w.block_shift - bs.page_shift;  // log2 of positions per page
  const int64_t pt = int64_t(1) << page_shift;
  const int64_t n_pages = (pos >> page_shift) + 1;
  const int64_t budget = (sp.budget_tokens + pt - 1) / pt;
  if (n_pages <= budget) {
    attend_group(a, q_tok, w.k, w.v, pos, h0, h1, out_tok, scores);
    return;
  }
  // The group's queries choose the pages; attention runs over them as one virtual paged
  // sequence whose "blocks" are pages: page p of block b is unit b * pages_per_block + p of
  // page size (keys are stored rotated, so a key's score does not depend on where it sits).
  thread_local std::vector<int32_t> sel, table;
  thread_local std::vector<float> bound;
  sel.resize(size_t(n_pages));
  table.resize(size_t(n_pages));
  bound.resize(size_t(n_pages));
  const int group = a.n_heads / a.n_kv_heads;
  const float* qg = q_tok + size_t(h0 / group) * size_t(group) * size_t(a.head_dim);
  const int n = select_pages(qg, group, a.head_dim, bs, n_pages, budget, sp.recent_pages,
                             sel.data(), bound.data());
  const int32_t in_block = (int32_t(1) << bs.page_shift) - 1;
  for (int i = 0; i < n; ++i) {
    const int32_t p = sel[size_t(i)];
    table[size_t(i)] = (w.blocks[p >> bs.page_shift] << bs.page_shift) + (p & in_block);
  }
  a.blocks = table.data();
  a.block_shift = page_shift;
  const int64_t vpos = (int64_t(n - 1) << page_shift) + (pos & (pt - 1));
  attend_group(a, q_tok, w.k, w.v, vpos, h0, h1, out_tok, scores);
}

void attend_cached_block(const AttentionArgs& args, const KvCache& kv, int seq, int layer,
                         const float* q, size_t qd, int64_t p0, int nq, bool decoding, int h0,
                         int h1, float* out, float* scratch) {
  const SparseAttentionOptions& sp = kv.routing(seq);
  if (nq == 1 || (sp.enabled && sp.prefill && p0 + nq > sp.min_context)) {
    // One token, or prompt tokens that sparse routing chooses keys for one by one.
    for (int i = 0; i < nq; ++i)
      attend_cached(args, kv, seq, layer, q + size_t(i) * qd, p0 + i, decoding, h0, h1,
                    out + size_t(i) * qd, scratch);
    return;
  }
  const KvView w = kv.view(seq, layer);
  AttentionArgs a = args;
  a.blocks = w.blocks;
  a.block_shift = w.block_shift;
  attend_block(a, q, qd, p0, nq, w.k, w.v, h0, h1, out, qd, scratch);
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
  if (softcap > 0.f) {
    for (float& z : out.logits) z = softcap * std::tanh(z / softcap);
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
