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
#include "model/layer_ops.h"
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

  std::vector<std::string> packed_matrices() const override {
    return w_.packed ? w_.packed->packed() : std::vector<std::string>{};
  }
  std::vector<std::vector<uint64_t>> expert_load() const override {
    return c_.n_experts > 0 ? counters_.tokens() : std::vector<std::vector<uint64_t>>{};
  }
  std::vector<std::vector<uint64_t>> expert_weight_reads() const override {
    return c_.n_experts > 0 ? counters_.reads() : std::vector<std::vector<uint64_t>>{};
  }

 private:
  void moe_block(const Gemma4Layer& B, int layer, const float* x, ExecContext& ctx, float* f,
                 int64_t T, PhaseClock& clock) const;
  void ple_inputs(const FlatBatch& fb, const float* x, ExecContext& ctx, int64_t T) const;
  void ple_block(const Gemma4Layer& B, int layer, const float* x, ExecContext& ctx, float* h,
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
  const int64_t d = c_.model_dim, P = c_.ple_dim;
  if (kv.n_layers() != c_.n_layers) return Status::error("KV cache has the wrong layer count");
  const RopeFreqs freqs[2] = {{inv_freq_local_.data(), c_.rope_dims_local},
                              {inv_freq_global_.data(), c_.rope_dims_global}};
  const float* rope[2];  // local, global
  PhaseClock clock(ctx.profile);
  Status valid =
      begin_step(batch, kv, c_.vocab_size, w_.tok_embd, embed_scale_, d, freqs, ctx, rope);
  if (!valid.ok()) return valid;
  const FlatBatch& fb = ctx.flat;
  float* x = ctx.act.x.data();  // residual stream [T, d]
  float* h = ctx.act.h.data();  // block input / output [T, d]
  clock.mark(StepPhase::kEmbed);
  if (P > 0) {
    ple_inputs(fb, x, ctx, T);
    clock.mark(StepPhase::kPle);
  }

  AttentionSpec A;
  A.qk_norm = true;
  A.v_norm = true;
  A.n_heads = c_.n_heads;
  A.softcap = c_.attn_softcap;
  A.eps = c_.rms_eps;
  norm_op(ctx, x, w_.layers[0].attn_norm.data(), h, T, d, c_.rms_eps);
  for (int l = 0; l < c_.n_layers; ++l) {
    const size_t li = size_t(l);
    const Gemma4Layer& B = w_.layers[li];
    const bool sliding = c_.layer_sliding[li];
    A.q = &B.q;
    A.k = &B.k;
    A.v = B.v.data != nullptr ? &B.v : nullptr;
    A.o = &B.o;
    A.q_norm = B.q_norm.data();
    A.k_norm = B.k_norm.data();
    A.n_kv_heads = c_.layer_kv_heads[li];
    A.head_dim = c_.layer_head_dim[li];
    A.n_rot = sliding ? c_.rope_dims_local : c_.rope_dims_global;
    A.rope = rope[sliding ? 0 : 1];
    A.window = sliding ? c_.window : 0;
    A.owns_kv = c_.kv_donor[li] < 0;
    clock.mark(StepPhase::kNorms);
    attention_op(A, l, batch, fb, kv, ctx, h, h, T, clock);  // h <- attention output
    // Dense layers: the FFN norm rides on the residual pass (MoE layers need two norms of x).
    const bool moe = c_.n_experts > 0;
    residual_op(ctx, h, B.post_attn_norm.data(), x, 1.f, moe ? nullptr : B.ffn_norm.data(), T, d,
                c_.rms_eps);
    clock.mark(StepPhase::kNorms);
    if (moe) {
      moe_block(B, l, x, ctx, h, T, clock);  // h <- FFN output before post_ffw_norm
    } else {
      gated_mlp_op(ctx, B.gate, B.up, B.down, h, h, T, c_.layer_ff_dim[li], clock);
    }
    // x += post_ffw_norm(h), then (PLE models) x += post_norm(ple block), x *= layer scale;
    // the next layer's attention norm rides on the last residual pass.
    const float scale = B.layer_scale.empty() ? 1.f : B.layer_scale[0];
    const float* next = l + 1 < c_.n_layers ? w_.layers[li + 1].attn_norm.data() : nullptr;
    if (P == 0) {
      residual_op(ctx, h, B.post_ffw_norm.data(), x, scale, next, T, d, c_.rms_eps);
    } else {
      residual_op(ctx, h, B.post_ffw_norm.data(), x, 1.f, nullptr, T, d, c_.rms_eps);
      clock.mark(StepPhase::kNorms);
      ple_block(B, l, x, ctx, h, T);  // h <- proj(gelu(inp_gate · x) ⊙ ple[l])
      clock.mark(StepPhase::kPle);
      residual_op(ctx, h, B.post_norm.data(), x, scale, next, T, d, c_.rms_eps);
    }
  }
  clock.mark(StepPhase::kNorms);
  output_head(batch, kv, x, d, w_.output_norm, c_.rms_eps, lm_head(w_.output, w_.tok_embd),
              c_.vocab_size, c_.final_softcap, ctx, out);
  clock.mark(StepPhase::kHead);
  if (ctx.profile != nullptr) ++ctx.profile->steps;
  return Status();
}

// ple[t][l][p] = (rmsnorm(proj[l]; proj_norm) + tokple[l]) * 2^-0.5 with
// proj = (W_plmp · e) * d^-0.5 and tokple = ple_embd[id] * sqrt(P)   (spec §2.5).
void Gemma4::ple_inputs(const FlatBatch& fb, const float* x, ExecContext& ctx, int64_t T) const {
  const int64_t d = c_.model_dim, P = c_.ple_dim, LP = int64_t(c_.n_layers) * P;
  float* ple = grow(ctx.act.ple, size_t(T * LP));
  float* proj = grow(ctx.act.ple_proj, size_t(T * LP));
  // One embedding row per thread (get_row dequantizes the token's whole L*P row).
  float* tok = grow(ctx.act.ple_tok, size_t(LP) * size_t(ctx.pool.size()));
  matmul(ctx.pool, w_.ple_model_proj, x, T, proj, ctx.mm, ctx.isa, ctx.exact);
  const float proj_scale = 1.0f / std::sqrt(float(d));
  const float mix_scale = 1.0f / std::sqrt(2.0f);
  ctx.pool.parallel_for(size_t(T), 1, [&](size_t b, size_t e, int ti) {
    float* tk0 = tok + size_t(ti) * size_t(LP);
    for (size_t t = b; t < e; ++t) {
      get_row(w_.ple_embd, fb.ids[t], tk0);
      for (int l = 0; l < c_.n_layers; ++l) {
        float* pr = proj + int64_t(t) * LP + int64_t(l) * P;
        for (int64_t i = 0; i < P; ++i) pr[i] *= proj_scale;
        rmsnorm(pr, w_.ple_proj_norm.data(), pr, P, c_.rms_eps);
        float* o = ple + int64_t(t) * LP + int64_t(l) * P;
        const float* tk = tk0 + int64_t(l) * P;
        for (int64_t i = 0; i < P; ++i) o[i] = (pr[i] + tk[i] * ple_scale_) * mix_scale;
      }
    }
  });
}

// h = proj · (gelu(inp_gate · x) ⊙ ple[l])
void Gemma4::ple_block(const Gemma4Layer& B, int layer, const float* x, ExecContext& ctx, float* h,
                       int64_t T) const {
  const int64_t P = c_.ple_dim, LP = int64_t(c_.n_layers) * P;
  const float* ple = ctx.act.ple.data();
  float* g = grow(ctx.act.ple_gate, size_t(T * P));
  matmul(ctx.pool, B.inp_gate, x, T, g, ctx.mm, ctx.isa, ctx.exact);
  ctx.pool.parallel_for(size_t(T), kNormGrain, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) {
      const float* pl = ple + int64_t(t) * LP + int64_t(layer) * P;
      float* gt = g + int64_t(t) * P;
      for (int64_t i = 0; i < P; ++i) gt[i] = gelu_tanh(gt[i]) * pl[i];
    }
  });
  matmul(ctx.pool, B.proj, g, T, h, ctx.mm, ctx.isa, ctx.exact);
}

// f = post_ffw_norm_1(mlp(ffn_norm(x))) + post_ffw_norm_2(experts(pre_ffw_norm_2(x)))
// (post_ffw_norm follows in the caller's residual pass).
void Gemma4::moe_block(const Gemma4Layer& B, int layer, const float* x, ExecContext& ctx, float* f,
                       int64_t T, PhaseClock& clock) const {
  const int64_t d = c_.model_dim;
  float* hin = grow(ctx.act.ffn_in, size_t(2 * T * d));  // ffn_norm(x), pre_ffw_norm_2(x)
  float* xn = hin + T * d;
  float* m2 = grow(ctx.act.experts, size_t(T * d));
  ctx.pool.parallel_for(size_t(T), kNormGrain, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) {
      rmsnorm(x + t * size_t(d), B.ffn_norm.data(), hin + t * size_t(d), d, c_.rms_eps);
      rmsnorm(x + t * size_t(d), B.pre_ffw_norm_2.data(), xn + t * size_t(d), d, c_.rms_eps);
    }
  });
  clock.mark(StepPhase::kNorms);
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
    gated_mlp_op(ctx, B.gate, B.up, B.down, hin, f, T, c_.layer_ff_dim[size_t(layer)], clock);
    moe_forward(m, x, xn, T, d, c_.rms_eps, ctx, m2, counters_.layer(layer));
  }
  ctx.pool.parallel_for(size_t(T), kNormGrain, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) {
      float* ft = f + t * size_t(d);
      float* mt = m2 + t * size_t(d);
      rmsnorm(ft, B.post_ffw_norm_1.data(), ft, d, c_.rms_eps);
      rmsnorm(mt, B.post_ffw_norm_2.data(), mt, d, c_.rms_eps);
      for (int64_t i = 0; i < d; ++i) ft[i] += mt[i];
    }
  });
  clock.mark(StepPhase::kMoe);
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
