// Gemma 3 forward pass over a ragged batch (ref: gemma-architecture.md §2.2). Gemma 2 runs
// through it too (config flags): no QK-norm, attention logits soft-capped in the attention
// kernel (AttentionArgs), one RoPE theta for both layer types, its own layer pattern.
//
//   x = embed(ids) * bf16(sqrt(d))
//   per layer: x += post_attn_norm(attn(attn_norm(x)));  x += post_ffw_norm(geglu(ffn_norm(x)))
//   logits = head · output_norm(x)   (head: output.weight if untied, else tok_embd)
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "core/status.h"
#include "io/gguf.h"
#include "kernels/attention.h"
#include "kernels/ops.h"
#include "kernels/quant.h"
#include "model/forward_common.h"
#include "model/layer_ops.h"
#include "model/model.h"
#include "model/weights.h"

namespace g4 {

namespace {

class Gemma3 final : public Model {
 public:
  Gemma3(ModelConfig c, Gemma3Weights w, const ModelOptions& o)
      : c_(std::move(c)), w_(std::move(w)), embed_scale_(c_.embed_scale(o.embed_scale)) {
    // inv_freq[i] = theta^(-2i/hd); global layers of 4B+ divide frequencies by the linear factor.
    for (int i = 0; i < c_.head_dim / 2; ++i) {
      const double e = -2.0 * i / c_.head_dim;
      inv_freq_local_.push_back(float(std::pow(double(c_.rope_theta_local), e)));
      inv_freq_global_.push_back(
          float(std::pow(double(c_.rope_theta_global), e) / double(c_.rope_scale_global)));
    }
  }

  const ModelConfig& config() const override { return c_; }
  std::vector<std::string> packed_matrices() const override {
    return w_.packed ? w_.packed->packed() : std::vector<std::string>{};
  }

  std::vector<KvLayerGeometry> kv_geometry() const override {
    std::vector<KvLayerGeometry> g;
    for (int l = 0; l < c_.n_layers; ++l) {
      g.push_back({c_.n_kv_heads, c_.head_dim, c_.layer_sliding[size_t(l)] ? c_.window : 0});
    }
    return g;
  }

  Status forward(const StepBatch& batch, KvCache& kv, ExecContext& ctx,
                 StepOutput& out) const override;

 private:
  ModelConfig c_;
  Gemma3Weights w_;
  float embed_scale_;
  std::vector<float> inv_freq_local_, inv_freq_global_;
};

Status Gemma3::forward(const StepBatch& batch, KvCache& kv, ExecContext& ctx,
                       StepOutput& out) const {
  const int64_t T = batch.n_tokens();
  const int64_t d = c_.model_dim;
  const RopeFreqs freqs[2] = {{inv_freq_local_.data(), c_.head_dim},
                              {inv_freq_global_.data(), c_.head_dim}};
  const float* rope[2];  // local, global
  PhaseClock clock(ctx.profile);
  Status valid =
      begin_step(batch, kv, c_.vocab_size, w_.tok_embd, embed_scale_, d, freqs, ctx, rope);
  if (!valid.ok()) return valid;
  const FlatBatch& fb = ctx.flat;
  float* x = ctx.act.x.data();  // residual stream [T, d]
  float* h = ctx.act.h.data();  // block input / output [T, d]
  clock.mark(StepPhase::kEmbed);

  AttentionSpec A;
  A.qk_norm = c_.qk_norm;
  A.n_heads = c_.n_heads;
  A.n_kv_heads = c_.n_kv_heads;
  A.head_dim = A.n_rot = c_.head_dim;
  A.q_scale = c_.query_scale;
  A.softcap = c_.attn_softcap;
  A.eps = c_.rms_eps;
  norm_op(ctx, x, w_.layers[0].attn_norm.data(), h, T, d, c_.rms_eps);
  for (int l = 0; l < c_.n_layers; ++l) {
    const Gemma3Layer& L = w_.layers[size_t(l)];
    const bool sliding = c_.layer_sliding[size_t(l)];
    A.q = &L.q;
    A.k = &L.k;
    A.v = &L.v;
    A.o = &L.o;
    A.q_norm = L.q_norm.data();
    A.k_norm = L.k_norm.data();
    A.rope = rope[sliding ? 0 : 1];
    A.window = sliding ? c_.window : 0;
    clock.mark(StepPhase::kNorms);
    attention_op(A, l, batch, fb, kv, ctx, h, h, T, clock);  // h <- attention output
    residual_op(ctx, h, L.post_attn_norm.data(), x, 1.f, L.ffn_norm.data(), T, d, c_.rms_eps);
    clock.mark(StepPhase::kNorms);
    gated_mlp_op(ctx, L.gate, L.up, L.down, h, h, T, c_.ff_dim, clock);
    // The next layer's attention norm rides on this residual pass.
    const float* next = l + 1 < c_.n_layers ? w_.layers[size_t(l) + 1].attn_norm.data() : nullptr;
    residual_op(ctx, h, L.post_ffw_norm.data(), x, 1.f, next, T, d, c_.rms_eps);
  }
  clock.mark(StepPhase::kNorms);
  output_head(batch, kv, x, d, w_.output_norm, c_.rms_eps, lm_head(w_.output, w_.tok_embd),
              c_.vocab_size, c_.final_softcap, ctx, out);
  clock.mark(StepPhase::kHead);
  if (ctx.profile != nullptr) ++ctx.profile->steps;
  return Status();
}

}  // namespace

Result<std::unique_ptr<Model>> load_gemma3(const GgufFile& f, const ModelOptions& opts) {
  auto c = config_from_gguf(f);
  if (!c.ok()) return c.status();
  auto w = bind_gemma3(f, c.value());
  if (!w.ok()) return w.status();
  return std::unique_ptr<Model>(new Gemma3(std::move(c).value(), std::move(w).value(), opts));
}

}  // namespace g4
