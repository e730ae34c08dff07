#include "model/weights.h"

#include "io/gguf.h"
#include "kernels/quant.h"

namespace g4 {

void for_each_tensor(const ModelConfig& c, Gemma3Weights& w,
                     const std::function<void(TensorSlot&)>& fn) {
  const int64_t d = c.model_dim, q = int64_t(c.n_heads) * c.head_dim,
                kv = int64_t(c.n_kv_heads) * c.head_dim, ff = c.ff_dim, hd = c.head_dim;
  auto mat = [&](std::string name, int64_t in, int64_t out, WeightView& v) {
    TensorSlot s{std::move(name), in, out, &v, nullptr};
    fn(s);
  };
  auto vec = [&](std::string name, int64_t n, std::vector<float>& v) {
    TensorSlot s{std::move(name), n, 0, nullptr, &v};
    fn(s);
  };
  mat("token_embd.weight", d, c.vocab_size, w.tok_embd);
  vec("output_norm.weight", d, w.output_norm);
  w.layers.resize(size_t(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    Gemma3Layer& L = w.layers[size_t(l)];
    const std::string b = "blk." + std::to_string(l) + ".";
    vec(b + "attn_norm.weight", d, L.attn_norm);
    mat(b + "attn_q.weight", d, q, L.q);
    mat(b + "attn_k.weight", d, kv, L.k);
    mat(b + "attn_v.weight", d, kv, L.v);
    mat(b + "attn_output.weight", q, d, L.o);
    vec(b + "attn_q_norm.weight", hd, L.q_norm);
    vec(b + "attn_k_norm.weight", hd, L.k_norm);
    vec(b + "post_attention_norm.weight", d, L.post_attn_norm);
    vec(b + "ffn_norm.weight", d, L.ffn_norm);
    mat(b + "ffn_gate.weight", d, ff, L.gate);
    mat(b + "ffn_up.weight", d, ff, L.up);
    mat(b + "ffn_down.weight", ff, d, L.down);
    vec(b + "post_ffw_norm.weight", d, L.post_ffw_norm);
  }
}

Result<Gemma3Weights> bind_gemma3(const GgufFile& f, const ModelConfig& c) {
  Gemma3Weights w;
  Status err;
  for_each_tensor(c, w, [&](TensorSlot& s) {
    if (!err.ok()) return;
    const GgufTensor* t = f.tensor(s.name);
    if (t == nullptr) {
      err = Status::error("missing tensor '" + s.name + "'");
      return;
    }
    const auto ti = dtype_info(uint32_t(t->type));
    if (!ti || !ti->supported) {
      err = Status::error("tensor '" + s.name + "' has type " + (ti ? ti->name : "?") +
                          ", which this engine does not support yet");
      return;
    }
    const bool is_matrix = s.matrix != nullptr;
    const bool shape_ok = is_matrix ? (t->n_dims == 2 && t->ne[0] == s.ne0 && t->ne[1] == s.ne1)
                                    : (t->n_elements() == s.ne0 && t->ne[0] == s.ne0);
    if (!shape_ok) {
      err = Status::error("tensor '" + s.name + "' has shape " + t->shape_string() +
                          ", expected {" + std::to_string(s.ne0) +
                          (is_matrix ? ", " + std::to_string(s.ne1) : "") + "}");
      return;
    }
    if (is_matrix) {
      *s.matrix = WeightView{t->type, t->data, t->ne[0], t->ne[1], row_bytes(t->type, t->ne[0])};
    } else {
      s.vec->resize(size_t(s.ne0));
      dequantize_row(t->type, t->data, s.vec->data(), s.ne0);
    }
  });
  if (!err.ok()) return err;
  return w;
}

}  // namespace g4
