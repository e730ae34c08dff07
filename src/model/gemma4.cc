// Gemma 4 forward pass over a ragged batch (ref: gemma-architecture.md §2.3-2.7).
//
//   x = embed(ids) * sqrt(d)          (+ per-layer embeddings ple[l], E2B/E4B)
//   per layer l (head size, KV heads, FFN width and window by layer type):
//     x += post_attn_norm(attn(attn_norm(x)))    q/k-norm, v-norm, scale 1.0, partial RoPE on
//                                                global layers, K=V, KV-shared layers
//     x += post_ffw_norm(geglu(ffn_norm(x)))     or, MoE: shared MLP + routed experts
//     x += post_norm(proj(gelu(inp_gate(x)) ⊙ ple[l]))   (PLE models)
//     x *= layer_output_scale[l]
//   logits = 30 tanh(tok_embd · output_norm(x) / 30)
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "io/gguf.h"
#include "kernels/attention.h"
#include "kernels/ops.h"
#include "model/forward_common.h"
#include "model/model.h"
#include "model/moe.h"
#include "model/weights.h"

namespace g4 {

namespace {

class Gemma4 final : public Model {
 public:
  Gemma4(ModelConfig c, Gemma4Weights w, const ModelOptions& o)
      : c_(std::move(c)), w_(std::move(w)), embed_scale_(c_.embed_scale(o.embed_scale)) {
    // Sliding layers: default RoPE over rope_dims_local. Global layers: NEOX RoPE over
    // rope_dims_global with llama.cpp's rope_freqs divisors (1e30 = a zero frequency, which is
    // how "proportional" partial RoPE is stored, spec §2.4).
    for (int i = 0; i < c_.rope_dims_local / 2; ++i) {
      inv_freq_local_.push_back(
          float(std::pow(double(c_.rope_theta_local), -2.0 * i / c_.rope_dims_local)));
    }
    for (int i = 0; i < c_.rope_dims_global / 2; ++i) {
      double f = std::pow(double(c_.rope_theta_global), -2.0 * i / c_.rope_dims_global);
      if (!w_.rope_freqs.empty()) {
        const double div = w_.rope_freqs[size_t(i)];
        f = div >= 1e29 ? 0.0 : f / div;
      }
      inv_freq_global_.push_back(float(f));
    }
    // PLE scale sqrt(P), rounded like the embedding scale (bf16 by default; 16 is exact).
    if (c_.ple_dim > 0) {
      const float s = std::sqrt(float(c_.ple_dim));
      ple_scale_ = o.embed_scale == EmbedScale::kBf16Rounded ? round_to_bf16(s) : s;
    }
    if (c_.n_experts > 0) counters_ = MoeCounters(c_.n_layers, c_.n_experts);
  }

  const ModelConfig& config() const override { return c_; }

  std::vector<KvLayerGeometry> kv_geometry() const override {
    std::vector<KvLayerGeometry> g;
    for (int l = 0; l < c_.n_layers; ++l) {
      const size_t i = size_t(l);
      g.push_back({c_.layer_kv_heads[i], c_.layer_head_dim[i], c_.layer_sliding[i] ? c_.window : 0,
                   c_.kv_donor[i]});
    }
    return g;
  }

  Status forward(const StepBatch& batch, KvCache& kv, ExecContext& ctx,
                 StepOutput& out) const override;

  std::vector<std::vector<uint64_t>> expert_load() const override {
    return c_.n_experts > 0 ? counters_.tokens() : std::vector<std::vector<uint64_t>>{};
  }
  std::vector<std::vector<uint64_t>> expert_weight_reads() const override {
    return c_.n_experts > 0 ? counters_.reads() : std::vector<std::vector<uint64_t>>{};
  }

 private:
  void attention_block(const Gemma4Layer& B, int layer, const StepBatch& batch, const FlatBatch& fb,
                       KvCache& kv, ExecContext& ctx, float* h, int64_t T) const;
  void ffn_block(const Gemma4Layer& B, int layer, const float* x, ExecContext& ctx, float* f,
                 int64_t T) const;
  void dense_mlp(const Gemma4Layer& B, int64_t ff, const float* hin, ExecContext& ctx, float* y,
                 int64_t T) const;
  void ple_inputs(const FlatBatch& fb, const float* x, ExecContext& ctx, float* ple,
                  int64_t T) const;

  ModelConfig c_;
  Gemma4Weights w_;
  float embed_scale_;
  float ple_scale_ = 1.f;
  std::vector<float> inv_freq_local_, inv_freq_global_;
  MoeCounters counters_;
};

Status Gemma4::forward(const StepBatch& batch, KvCache& kv, ExecContext& ctx,
                       StepOutput& out) const {
  const int64_t T = batch.n_tokens();
  const int64_t d = c_.model_dim, P = c_.ple_dim, L = c_.n_layers;
  FlatBatch& fb = ctx.flat;  // kept in ctx: no allocation per step
  Status valid = flatten_batch(batch, kv, c_.vocab_size, fb);
  if (!valid.ok()) return valid;
  if (kv.n_layers() != c_.n_layers) return Status::error("KV cache has the wrong layer count");

  float* x = grow(ctx.buf[0], size_t(T * d));  // residual stream [T, d]
  float* h = grow(ctx.buf[1], size_t(T * d));  // block input / output [T, d]
  for (int64_t t = 0; t < T; ++t) {
    get_row(w_.tok_embd, fb.ids[size_t(t)], x + t * d);
    for (int64_t i = 0; i < d; ++i) x[t * d + i] *= embed_scale_;
  }
  float* ple = nullptr;  // [T, L*P]
  if (P > 0) {
    ple = grow(ctx.buf[10], size_t(T * L * P));
    ple_inputs(fb, x, ctx, ple, T);
  }

  for (int l = 0; l < c_.n_layers; ++l) {
    const Gemma4Layer& B = w_.layers[size_t(l)];
    for (int64_t t = 0; t < T; ++t)
      rmsnorm(x + t * d, B.attn_norm.data(), h + t * d, d, c_.rms_eps);
    attention_block(B, l, batch, fb, kv, ctx, h, T);  // h <- attention output [T, d]
    for (int64_t t = 0; t < T; ++t) {
      rmsnorm(h + t * d, B.post_attn_norm.data(), h + t * d, d, c_.rms_eps);
      for (int64_t i = 0; i < d; ++i) x[t * d + i] += h[t * d + i];
    }
    ffn_block(B, l, x, ctx, h, T);  // h <- FFN output (after its final post-norm)
    for (int64_t i = 0; i < T * d; ++i) x[i] += h[i];
    if (P > 0) {
      // x += post_norm(proj(gelu(inp_gate · x) ⊙ ple[l]))
      float* g = grow(ctx.buf[11], size_t(T * P));
      matmul(ctx.pool, B.inp_gate, x, T, g, ctx.mm, ctx.isa, ctx.exact);
      for (int64_t t = 0; t < T; ++t) {
        const float* pl = ple + t * L * P + int64_t(l) * P;
        for (int64_t i = 0; i < P; ++i) g[t * P + i] = gelu_tanh(g[t * P + i]) * pl[i];
      }
      matmul(ctx.pool, B.proj, g, T, h, ctx.mm, ctx.isa, ctx.exact);
      for (int64_t t = 0; t < T; ++t) {
        rmsnorm(h + t * d, B.post_norm.data(), h + t * d, d, c_.rms_eps);
        for (int64_t i = 0; i < d; ++i) x[t * d + i] += h[t * d + i];
      }
    }
    if (!B.layer_scale.empty()) {
      const float s = B.layer_scale[0];
      for (int64_t i = 0; i < T * d; ++i) x[i] *= s;
    }
  }
  output_head(batch, kv, x, d, w_.output_norm, c_.rms_eps, lm_head(w_.output, w_.tok_embd),
              c_.vocab_size, c_.final_softcap, ctx, out);
  return Status();
}

// ple[t][l][p] = (rmsnorm(proj[l]; proj_norm) + tokple[l]) * 2^-0.5 with
// proj = (W_plmp · e) * d^-0.5 and tokple = ple_embd[id] * sqrt(P)   (spec §2.5).
void Gemma4::ple_inputs(const FlatBatch& fb, const float* x, ExecContext& ctx, float* ple,
                        int64_t T) const {
  const int64_t d = c_.model_dim, P = c_.ple_dim, LP = int64_t(c_.n_layers) * P;
  float* proj = grow(ctx.buf[12], size_t(T * LP));
  float* tok = grow(ctx.buf[13], size_t(LP));
  matmul(ctx.pool, w_.ple_model_proj, x, T, proj, ctx.mm, ctx.isa, ctx.exact);
  const float proj_scale = 1.0f / std::sqrt(float(d));
  const float mix_scale = 1.0f / std::sqrt(2.0f);
  for (int64_t t = 0; t < T; ++t) {
    get_row(w_.ple_embd, fb.ids[size_t(t)], tok);
    for (int l = 0; l < c_.n_layers; ++l) {
      float* pr = proj + t * LP + int64_t(l) * P;
      for (int64_t i = 0; i < P; ++i) pr[i] *= proj_scale;
      rmsnorm(pr, w_.ple_proj_norm.data(), pr, P, c_.rms_eps);
      float* o = ple + t * LP + int64_t(l) * P;
      const float* tk = tok + int64_t(l) * P;
      for (int64_t i = 0; i < P; ++i) o[i] = (pr[i] + tk[i] * ple_scale_) * mix_scale;
    }
  }
}

void Gemma4::dense_mlp(const Gemma4Layer& B, int64_t ff, const float* hin, ExecContext& ctx,
                       float* y, int64_t T) const {
  float* g = grow(ctx.buf[2], size_t(T * ff));
  float* u = grow(ctx.buf[3], size_t(T * ff));
  matmul(ctx.pool, B.gate, hin, T, g, ctx.mm, ctx.isa, ctx.exact);
  matmul(ctx.pool, B.up, hin, T, u, ctx.mm, ctx.isa, ctx.exact);
  ctx.pool.parallel_for(size_t(T), 1, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) geglu_inplace(g + t * size_t(ff), u + t * size_t(ff), ff);
  });
  matmul(ctx.pool, B.down, g, T, y, ctx.mm, ctx.isa, ctx.exact);
}

// f = post_ffw_norm(mlp(ffn_norm(x)))  or, MoE:
// f = post_ffw_norm(post_ffw_norm_1(mlp(ffn_norm(x))) + post_ffw_norm_2(experts(x)))
void Gemma4::ffn_block(const Gemma4Layer& B, int layer, const float* x, ExecContext& ctx, float* f,
                       int64_t T) const {
  const int64_t d = c_.model_dim;
  float* hin = grow(ctx.buf[9], size_t(2 * T * d));  // ffn_norm(x), then pre_ffw_norm_2(x)
  for (int64_t t = 0; t < T; ++t) rmsnorm(x + t * d, B.ffn_norm.data(), hin + t * d, d, c_.rms_eps);
  if (c_.n_experts == 0) {
    dense_mlp(B, c_.layer_ff_dim[size_t(layer)], hin, ctx, f, T);
  } else {
    float* m2 = grow(ctx.buf[18], size_t(T * d));
    float* xn = hin + T * d;
    for (int64_t t = 0; t < T; ++t)
      rmsnorm(x + t * d, B.pre_ffw_norm_2.data(), xn + t * d, d, c_.rms_eps);
    MoeLayerView m;
    m.router = &B.router;
    m.router_scale = B.router_scale.data();
    m.gate_up = B.gate_up_exps.data ? &B.gate_up_exps : nullptr;
    m.gate = &B.gate_exps;
    m.up = &B.up_exps;
    m.down = &B.down_exps;
    m.expert_scale = B.expert_scale.data();
    m.n_experts = c_.n_experts;
    m.n_used = c_.n_experts_used;
    m.ff = c_.expert_ff_dim;
    m.swiglu = c_.expert_swiglu;
    if (moe_one_token_path(T, ctx, m)) {  // decode: shared MLP and experts in two pool jobs
      const MoeSharedMlp sh{&B.gate, &B.up, &B.down, hin, f};
      moe_forward_one_token(m, x, xn, d, c_.rms_eps, ctx, m2, counters_.layer(layer), sh);
    } else {
      dense_mlp(B, c_.layer_ff_dim[size_t(layer)], hin, ctx, f, T);
      moe_forward(m, x, xn, T, d, c_.rms_eps, ctx, m2, counters_.layer(layer));
    }
    for (int64_t t = 0; t < T; ++t) {
      rmsnorm(f + t * d, B.post_ffw_norm_1.data(), f + t * d, d, c_.rms_eps);
      rmsnorm(m2 + t * d, B.post_ffw_norm_2.data(), m2 + t * d, d, c_.rms_eps);
      for (int64_t i = 0; i < d; ++i) f[t * d + i] += m2[t * d + i];
    }
  }
  for (int64_t t = 0; t < T; ++t)
    rmsnorm(f + t * d, B.post_ffw_norm.data(), f + t * d, d, c_.rms_eps);
}

void Gemma4::attention_block(const Gemma4Layer& B, int layer, const StepBatch& batch,
                             const FlatBatch& fb, KvCache& kv, ExecContext& ctx, float* h,
                             int64_t T) const {
  const size_t li = size_t(layer);
  const int H = c_.n_heads, Hkv = c_.layer_kv_heads[li], hd = c_.layer_head_dim[li];
  const int64_t qd = int64_t(H) * hd, kvd = int64_t(Hkv) * hd;
  const bool sliding = c_.layer_sliding[li];
  const bool owns_kv = c_.kv_donor[li] < 0;
  const float* inv_freq = sliding ? inv_freq_local_.data() : inv_freq_global_.data();
  const int n_rot = sliding ? c_.rope_dims_local : c_.rope_dims_global;
  float* q = grow(ctx.buf[5], size_t(T * qd));  // [T, H*hd]
  float* a = grow(ctx.buf[8], size_t(T * qd));  // attention output [T, H*hd]
  matmul(ctx.pool, B.q, h, T, q, ctx.mm, ctx.isa, ctx.exact);
  float* k = nullptr;
  float* v = nullptr;
  if (owns_kv) {
    k = grow(ctx.buf[6], size_t(T * kvd));  // [T, Hkv*hd]
    v = grow(ctx.buf[7], size_t(T * kvd));
    matmul(ctx.pool, B.k, h, T, k, ctx.mm, ctx.isa, ctx.exact);
    if (B.v.data != nullptr)
      matmul(ctx.pool, B.v, h, T, v, ctx.mm, ctx.isa, ctx.exact);
    else  // K=V: the value is the raw (un-normed, un-rotated) key projection
      std::memcpy(v, k, sizeof(float) * size_t(T * kvd));
  }
  const int64_t cap = kv.capacity(layer);
  ctx.pool.parallel_for(size_t(T), 1, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) {
      const double pos = double(fb.tok_pos[t]);
      for (int hh = 0; hh < H; ++hh) {
        float* qh = q + t * size_t(qd) + size_t(hh) * size_t(hd);
        rmsnorm(qh, B.q_norm.data(), qh, hd, c_.rms_eps);
        rope_neox(qh, n_rot, inv_freq, pos);  // attention scale is 1.0
      }
      if (!owns_kv) continue;
      const int seq = batch.seqs[size_t(fb.tok_seq[t])].seq_id;
      for (int hh = 0; hh < Hkv; ++hh) {
        float* kh = k + t * size_t(kvd) + size_t(hh) * size_t(hd);
        rmsnorm(kh, B.k_norm.data(), kh, hd, c_.rms_eps);
        rope_neox(kh, n_rot, inv_freq, pos);
        float* vh = v + t * size_t(kvd) + size_t(hh) * size_t(hd);
        rmsnorm(vh, nullptr, vh, hd, c_.rms_eps);  // V-norm, no weight
      }
      kv.store(seq, layer, fb.tok_pos[t], k + t * size_t(kvd), v + t * size_t(kvd));
    }
  });

  summarize_step(batch, kv, layer);  // sparse routing's block summaries (if on)
  // KV-shared layers read their donor's cache (kv.view maps the layer to it) with their own
  // mask.
  AttentionArgs args{H, Hkv, hd, cap, sliding ? c_.window : 0, c_.attn_softcap};
  set_kv_format(args, kv);
  const int64_t max_keys = sliding ? std::min<int64_t>(c_.window, kv.n_ctx()) : kv.n_ctx();
  std::vector<float>& sc = ctx.buf[19];
  const size_t per_thread = attention_scratch_floats(args, max_keys);
  if (sc.size() < per_thread * size_t(ctx.pool.size()))
    sc.resize(per_thread * size_t(ctx.pool.size()));
  const int per_job = attention_heads_per_job(T, H, Hkv, ctx.pool.size());
  const int jobs_per_token = H / per_job;
  ctx.pool.parallel_for(size_t(T) * size_t(jobs_per_token), 1, [&](size_t b, size_t e, int ti) {
    float* scores = sc.data() + size_t(ti) * per_thread;
    for (size_t j = b; j < e; ++j) {
      const size_t t = zigzag_token(j / size_t(jobs_per_token), size_t(T));
      const int h0 = int(j % size_t(jobs_per_token)) * per_job;
      const int seq = batch.seqs[size_t(fb.tok_seq[t])].seq_id;
      const bool decoding = batch.seqs[size_t(fb.tok_seq[t])].tokens.size() == 1;
      attend_cached(args, kv, seq, layer, q + t * size_t(qd), fb.tok_pos[t], decoding, h0,
                    h0 + per_job, a + t * size_t(qd), scores);
    }
  });
  matmul(ctx.pool, B.o, a, T, h, ctx.mm, ctx.isa, ctx.exact);
}

}  // namespace

Result<std::unique_ptr<Model>> load_gemma4(const GgufFile& f, const ModelOptions& opts) {
  auto c = config_from_gguf(f);
  if (!c.ok()) return c.status();
  if (c.value().arch != "gemma4") return Status::error("not a gemma4 file");
  auto w = bind_gemma4(f, c.value());
  if (!w.ok()) return w.status();
  return std::unique_ptr<Model>(new Gemma4(std::move(c).value(), std::move(w).value(), opts));
}

}  // namespace g4
