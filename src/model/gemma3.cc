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
  void attention_block(const Gemma3Layer& L, int layer, const StepBatch& batch,
                       const std::vector<int>& tok_seq, const std::vector<int64_t>& tok_pos,
                       KvCache& kv, ExecContext& ctx, float* h, int64_t T, PhaseClock& clock) const;

  ModelConfig c_;
  Gemma3Weights w_;
  float embed_scale_;
  std::vector<float> inv_freq_local_, inv_freq_global_;
};

Status Gemma3::forward(const StepBatch& batch, KvCache& kv, ExecContext& ctx,
                       StepOutput& out) const {
  const int64_t T = batch.n_tokens();
  const int64_t d = c_.model_dim;
  FlatBatch& fb = ctx.flat;  // kept in ctx: no allocation per step
  Status valid = flatten_batch(batch, kv, c_.vocab_size, fb);
  if (!valid.ok()) return valid;
  const std::vector<int>& tok_seq = fb.tok_seq;
  const std::vector<int64_t>& tok_pos = fb.tok_pos;
  const std::vector<int32_t>& ids = fb.ids;

  PhaseClock clock(ctx.profile);
  float* x = grow(ctx.buf[0], size_t(T * d));  // residual stream [T, d]
  float* h = grow(ctx.buf[1], size_t(T * d));  // normed input [T, d]
  for (int64_t t = 0; t < T; ++t) {
    get_row(w_.tok_embd, ids[size_t(t)], x + t * d);
    for (int64_t i = 0; i < d; ++i) x[t * d + i] *= embed_scale_;
  }

  // RoPE angles of every token for the local and the global frequencies, once per step
  // instead of once per layer: [2][T][cos (hd/2) | sin (hd/2)] in ctx.buf[10].
  const int64_t hd = c_.head_dim;
  float* ang = grow(ctx.buf[10], size_t(2 * T * hd));
  ctx.pool.parallel_for(size_t(T), kNormGrain, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) {
      for (int g = 0; g < 2; ++g) {
        float* cs = ang + (size_t(g) * size_t(T) + t) * size_t(hd);
        rope_angles(int(hd), g == 0 ? inv_freq_local_.data() : inv_freq_global_.data(),
                    double(tok_pos[t]), cs, cs + hd / 2);
      }
    }
  });

  const int64_t ff = c_.ff_dim;
  for (int l = 0; l < c_.n_layers; ++l) {
    const Gemma3Layer& L = w_.layers[size_t(l)];
    ctx.pool.parallel_for(size_t(T), kNormGrain, [&](size_t b, size_t e, int) {
      for (size_t t = b; t < e; ++t)
        rmsnorm(x + t * d, L.attn_norm.data(), h + t * d, d, c_.rms_eps);
    });
    clock.mark(StepPhase::kNorms);
    attention_block(L, l, batch, tok_seq, tok_pos, kv, ctx, h, T, clock);  // h <- attention out
    ctx.pool.parallel_for(size_t(T), kNormGrain, [&](size_t b, size_t e, int) {
      for (size_t t = b; t < e; ++t) {
        rmsnorm(h + t * d, L.post_attn_norm.data(), h + t * d, d, c_.rms_eps);
        for (int64_t i = 0; i < d; ++i) x[t * d + i] += h[t * d + i];
        rmsnorm(x + t * d, L.ffn_norm.data(), h + t * d, d, c_.rms_eps);
      }
    });
    float* g = grow(ctx.buf[2], size_t(T * ff));  // [T, ff]
    float* u = grow(ctx.buf[3], size_t(T * ff));
    // The vectorised GELU's last-ulp differences vanish in the int8 rounding of a quantised
    // down projection; f32/f16 models and --exact keep libm's tanh.
    const bool fast_gelu = !ctx.exact && vec_dot_type(L.down.type) != DType::kF32;
    // gate and up in one job; each thread applies GEGLU to the rows it just computed.
    const auto geglu = [&](size_t b, size_t e, int) {
      for (int64_t t = 0; t < T; ++t)
        geglu_inplace(g + size_t(t * ff) + b, u + size_t(t * ff) + b, int64_t(e - b), fast_gelu);
    };
    const RowEpilogue ep(geglu);
    const MatmulOut gu[2] = {{&L.gate, g}, {&L.up, u}};
    clock.mark(StepPhase::kNorms);
    matmul_multi(ctx.pool, gu, 2, h, T, ctx.mm, ctx.isa, ctx.exact, &ep);
    clock.mark(StepPhase::kGateUp);
    matmul(ctx.pool, L.down, g, T, h, ctx.mm, ctx.isa, ctx.exact);
    clock.mark(StepPhase::kDown);
    ctx.pool.parallel_for(size_t(T), kNormGrain, [&](size_t b, size_t e, int) {
      for (size_t t = b; t < e; ++t) {
        rmsnorm(h + t * d, L.post_ffw_norm.data(), h + t * d, d, c_.rms_eps);
        for (int64_t i = 0; i < d; ++i) x[t * d + i] += h[t * d + i];
      }
    });
  }
  output_head(batch, kv, x, d, w_.output_norm, c_.rms_eps, lm_head(w_.output, w_.tok_embd),
              c_.vocab_size, c_.final_softcap, ctx, out);
  clock.mark(StepPhase::kHead);
  if (ctx.profile != nullptr) ++ctx.profile->steps;
  return Status();
}

void Gemma3::attention_block(const Gemma3Layer& L, int layer, const StepBatch& batch,
                             const std::vector<int>& tok_seq, const std::vector<int64_t>& tok_pos,
                             KvCache& kv, ExecContext& ctx, float* h, int64_t T,
                             PhaseClock& clock) const {
  const int H = c_.n_heads, Hkv = c_.n_kv_heads, hd = c_.head_dim;
  const int64_t qd = int64_t(H) * hd, kvd = int64_t(Hkv) * hd;
  float* q = grow(ctx.buf[5], size_t(T * qd));   // [T, H*hd]
  float* k = grow(ctx.buf[6], size_t(T * kvd));  // [T, Hkv*hd]
  float* v = grow(ctx.buf[7], size_t(T * kvd));
  float* a = grow(ctx.buf[8], size_t(T * qd));                 // attention output [T, H*hd]
  const MatmulOut qkv[3] = {{&L.q, q}, {&L.k, k}, {&L.v, v}};  // one job for the three
  matmul_multi(ctx.pool, qkv, 3, h, T, ctx.mm, ctx.isa, ctx.exact);
  clock.mark(StepPhase::kQkv);

  const bool sliding = c_.layer_sliding[size_t(layer)];
  const float* ang = ctx.buf[10].data() + (sliding ? 0 : size_t(T) * size_t(hd));  // forward()
  const int64_t cap = kv.capacity(layer);
  // Per token: QK-norm, RoPE, query scale; write K/V to the cache slot for its position.
  ctx.pool.parallel_for(size_t(T), 1, [&](size_t b, size_t e, int) {
    for (size_t t = b; t < e; ++t) {
      const float* cs = ang + t * size_t(hd);  // this token's angles, shared by q and k heads
      const float* sn = cs + hd / 2;
      for (int hh = 0; hh < H; ++hh) {
        float* qh = q + t * size_t(qd) + size_t(hh) * size_t(hd);
        if (c_.qk_norm) rmsnorm(qh, L.q_norm.data(), qh, hd, c_.rms_eps);
        rope_neox_cs(qh, hd, cs, sn);
        for (int i = 0; i < hd; ++i) qh[i] *= c_.query_scale;
      }
      const int seq = batch.seqs[size_t(tok_seq[t])].seq_id;
      for (int hh = 0; hh < Hkv; ++hh) {
        float* kh = k + t * size_t(kvd) + size_t(hh) * size_t(hd);
        if (c_.qk_norm) rmsnorm(kh, L.k_norm.data(), kh, hd, c_.rms_eps);
        rope_neox_cs(kh, hd, cs, sn);
      }
      kv.store(seq, layer, tok_pos[t], k + t * size_t(kvd), v + t * size_t(kvd));
    }
  });

  summarize_step(batch, kv, layer);  // sparse routing's block summaries (if on)
  clock.mark(StepPhase::kRopeKv);
  AttentionArgs args{H, Hkv, hd, cap, sliding ? c_.window : 0, c_.attn_softcap};
  set_kv_format(args, kv);
  const int64_t max_keys = sliding ? std::min<int64_t>(c_.window, kv.n_ctx()) : kv.n_ctx();
  std::vector<float>& sc = ctx.buf[9];
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
      const int seq = batch.seqs[size_t(tok_seq[t])].seq_id;
      const bool decoding = batch.seqs[size_t(tok_seq[t])].tokens.size() == 1;
      attend_cached(args, kv, seq, layer, q + t * size_t(qd), tok_pos[t], decoding, h0,
                    h0 + per_job, a + t * size_t(qd), scores);
    }
  });
  clock.mark(StepPhase::kAttention);
  matmul(ctx.pool, L.o, a, T, h, ctx.mm, ctx.isa, ctx.exact);
  clock.mark(StepPhase::kOutProj);
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
