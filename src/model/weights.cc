#include "model/weights.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

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
  TensorSlot out{"output.weight", d, c.vocab_size, &w.output, nullptr, 0, true};
  fn(out);
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
    if (c.qk_norm) {  // gemma3; gemma2 has none
      vec(b + "attn_q_norm.weight", hd, L.q_norm);
      vec(b + "attn_k_norm.weight", hd, L.k_norm);
    }
    vec(b + "post_attention_norm.weight", d, L.post_attn_norm);
    vec(b + "ffn_norm.weight", d, L.ffn_norm);
    mat(b + "ffn_gate.weight", d, ff, L.gate);
    mat(b + "ffn_up.weight", d, ff, L.up);
    mat(b + "ffn_down.weight", ff, d, L.down);
    vec(b + "post_ffw_norm.weight", d, L.post_ffw_norm);
  }
}

Status bind_slots(const GgufFile& f,
                  const std::function<void(const std::function<void(TensorSlot&)>&)>& for_each) {
  Status err;
  for_each([&](TensorSlot& s) {
    if (!err.ok()) return;
    const GgufTensor* t = f.tensor(s.name);
    if (t == nullptr) {
      if (!s.optional) err = Status::error("missing tensor '" + s.name + "'");
      return;
    }
    const auto ti = dtype_info(uint32_t(t->type));
    if (!ti || !ti->supported) {
      err = Status::error("tensor '" + s.name + "' has type " + (ti ? ti->name : "?") +
                          ", which this engine does not support yet");
      return;
    }
    const bool is_matrix = s.matrix != nullptr;
    const bool shape_ok = !is_matrix  ? (t->n_elements() == s.ne0 && t->ne[0] == s.ne0)
                          : s.ne2 > 0 ? (t->n_dims == 3 && t->ne[0] == s.ne0 && t->ne[1] == s.ne1 &&
                                         t->ne[2] == s.ne2)
                                      : (t->n_dims == 2 && t->ne[0] == s.ne0 && t->ne[1] == s.ne1);
    if (!shape_ok) {
      err =
          Status::error("tensor '" + s.name + "' has shape " + t->shape_string() + ", expected {" +
                        std::to_string(s.ne0) + (is_matrix ? ", " + std::to_string(s.ne1) : "") +
                        (s.ne2 > 0 ? ", " + std::to_string(s.ne2) : "") + "}");
      return;
    }
    if (is_matrix) {
      *s.matrix = WeightView{t->type, t->data, t->ne[0], t->rows(), row_bytes(t->type, t->ne[0])};
    } else {
      s.vec->resize(size_t(s.ne0));
      dequantize_row(t->type, t->data, s.vec->data(), s.ne0);
    }
  });
  return err;
}

namespace {
// Binds an architecture's tensor list, then packs its matrices (pack_matrices).
template <typename W>
Result<W> bind_and_pack(const GgufFile& f, const ModelConfig& c) {
  W w;
  auto each = [&](const std::function<void(TensorSlot&)>& fn) { for_each_tensor(c, w, fn); };
  Status err = bind_slots(f, each);
  if (!err.ok()) return err;
  w.packed = pack_matrices(f, each);
  return w;
}
}  // namespace

Result<Gemma3Weights> bind_gemma3(const GgufFile& f, const ModelConfig& c) {
  return bind_and_pack<Gemma3Weights>(f, c);
}

Status validate_model_file(const GgufFile& f) {
  auto c = config_from_gguf(f);
  if (!c.ok()) return c.status();
  const auto check = [&](auto w) {
    return bind_slots(
        f, [&](const std::function<void(TensorSlot&)>& fn) { for_each_tensor(c.value(), w, fn); });
  };
  return c.value().arch == "gemma4" ? check(Gemma4Weights{}) : check(Gemma3Weights{});
}

void for_each_tensor(const ModelConfig& c, Gemma4Weights& w,
                     const std::function<void(TensorSlot&)>& fn) {
  const int64_t d = c.model_dim, P = c.ple_dim, L = c.n_layers;
  auto mat = [&](std::string name, int64_t in, int64_t out, WeightView& v, bool optional = false) {
    TensorSlot s{std::move(name), in, out, &v, nullptr, 0, optional};
    fn(s);
  };
  auto vec = [&](std::string name, int64_t n, std::vector<float>& v, bool optional = false) {
    TensorSlot s{std::move(name), n, 0, nullptr, &v, 0, optional};
    fn(s);
  };
  mat("token_embd.weight", d, c.vocab_size, w.tok_embd);
  mat("output.weight", d, c.vocab_size, w.output, true);
  vec("output_norm.weight", d, w.output_norm);
  vec("rope_freqs.weight", c.rope_dims_global / 2, w.rope_freqs, true);
  if (P > 0) {
    mat("per_layer_token_embd.weight", L * P, c.vocab_size, w.ple_embd);
    mat("per_layer_model_proj.weight", d, L * P, w.ple_model_proj);
    vec("per_layer_proj_norm.weight", P, w.ple_proj_norm);
  }
  w.layers.resize(size_t(L));
  for (int l = 0; l < L; ++l) {
    Gemma4Layer& B = w.layers[size_t(l)];
    const std::string b = "blk." + std::to_string(l) + ".";
    const int64_t hd = c.layer_head_dim[size_t(l)], q = int64_t(c.n_heads) * hd,
                  kv = int64_t(c.layer_kv_heads[size_t(l)]) * hd, ff = c.layer_ff_dim[size_t(l)];
    const bool owns_kv = c.kv_donor[size_t(l)] < 0;
    vec(b + "attn_norm.weight", d, B.attn_norm);
    mat(b + "attn_q.weight", d, q, B.q);
    vec(b + "attn_q_norm.weight", hd, B.q_norm);
    if (owns_kv) {  // KV-shared layers may carry unused k/v tensors: never bound
      mat(b + "attn_k.weight", d, kv, B.k);
      mat(b + "attn_v.weight", d, kv, B.v, true);  // absent on K=V layers
      vec(b + "attn_k_norm.weight", hd, B.k_norm);
    }
    mat(b + "attn_output.weight", q, d, B.o);
    vec(b + "post_attention_norm.weight", d, B.post_attn_norm);
    vec(b + "ffn_norm.weight", d, B.ffn_norm);
    mat(b + "ffn_gate.weight", d, ff, B.gate);
    mat(b + "ffn_up.weight", d, ff, B.up);
    mat(b + "ffn_down.weight", ff, d, B.down);
    vec(b + "post_ffw_norm.weight", d, B.post_ffw_norm);
    if (c.n_experts > 0) {
      const int64_t E = c.n_experts, fe = c.expert_ff_dim;
      mat(b + "ffn_gate_inp.weight", d, E, B.router);
      vec(b + "ffn_gate_inp.scale", d, B.router_scale);
      vec(b + "pre_ffw_norm_2.weight", d, B.pre_ffw_norm_2);
      vec(b + "post_ffw_norm_1.weight", d, B.post_ffw_norm_1);
      vec(b + "post_ffw_norm_2.weight", d, B.post_ffw_norm_2);
      TensorSlot gu{b + "ffn_gate_up_exps.weight", d, 2 * fe, &B.gate_up_exps, nullptr, E, true};
      fn(gu);
      if (B.gate_up_exps.data == nullptr) {
        TensorSlot g{b + "ffn_gate_exps.weight", d, fe, &B.gate_exps, nullptr, E, false};
        fn(g);
        TensorSlot u{b + "ffn_up_exps.weight", d, fe, &B.up_exps, nullptr, E, false};
        fn(u);
      }
      TensorSlot dn{b + "ffn_down_exps.weight", fe, d, &B.down_exps, nullptr, E, false};
      fn(dn);
      vec(b + "ffn_down_exps.scale", E, B.expert_scale);
    }
    if (P > 0) {
      mat(b + "inp_gate.weight", d, P, B.inp_gate);
      mat(b + "proj.weight", P, d, B.proj);
      vec(b + "post_norm.weight", d, B.post_norm);
    }
    vec(b + "layer_output_scale.weight", 1, B.layer_scale, true);
  }
}

Result<Gemma4Weights> bind_gemma4(const GgufFile& f, const ModelConfig& c) {
  return bind_and_pack<Gemma4Weights>(f, c);
}

namespace {

enum class PackAct { kSkip, kPack, kCopy };

// pack_matrices' rules: which matrices get an R16 copy, a plain copy, or stay mapped.
struct PackRules {
  bool off = false, q8_only = false, r16 = false, untied = false;
  explicit PackRules(const GgufFile& f) {
    const char* env = std::getenv("G4_PACK");
    off = env != nullptr && std::strcmp(env, "0") == 0;
    q8_only = env != nullptr && std::strcmp(env, "q8") == 0;
    r16 = packed_kernels(best_isa()).prepare != nullptr;
    // With an untied head (output.weight) the embedding, like the per-layer table, is only
    // looked up by row.
    untied = f.tensor("output.weight") != nullptr;
  }
  // A 3-D expert stack packs as one matrix of ne1 * ne2 rows when every expert's rows (and,
  // in a fused gate/up stack, each half) start on a 16-row group: the MoE kernels then read
  // each expert's slice of the R16 copy (moe.cc).
  static bool stack_rows_align(const TensorSlot& s) {
    if (s.ne2 == 0) return true;
    const bool fused = s.name.find("gate_up_exps") != std::string::npos;
    return s.ne1 % (fused ? 2 * kPackRows : kPackRows) == 0;
  }
  PackAct action(const GgufFile& f, const TensorSlot& s) const {
    if (off || s.matrix == nullptr || s.matrix->data == nullptr) return PackAct::kSkip;
    if (s.name == "per_layer_token_embd.weight") return PackAct::kSkip;
    if (untied && s.name == "token_embd.weight") return PackAct::kSkip;
    const WeightView& w = *s.matrix;
    if (r16 && stack_rows_align(s) && can_pack(w) && (!q8_only || w.type == DType::kQ8_0))
      return PackAct::kPack;
    return f.is_mapped() && !q8_only ? PackAct::kCopy : PackAct::kSkip;
  }
  size_t arena_bytes(const GgufFile& f, const TensorSlot& s) const {
    const PackAct a = action(f, s);
    const size_t n = a == PackAct::kPack   ? packed_bytes(*s.matrix)
                     : a == PackAct::kCopy ? s.matrix->row_bytes * size_t(s.matrix->out)
                                           : 0;
    return (n + 63) / 64 * 64;
  }
};

}  // namespace

size_t packed_arena_bytes(
    const GgufFile& f,
    const std::function<void(const std::function<void(TensorSlot&)>&)>& for_each) {
  const PackRules rules(f);
  size_t total = 0;
  for_each([&](TensorSlot& s) { total += rules.arena_bytes(f, s); });
  return total;
}

std::shared_ptr<PackedStore> pack_matrices(
    const GgufFile& f,
    const std::function<void(const std::function<void(TensorSlot&)>&)>& for_each) {
  // Packable matrices get an R16 copy (CPUs with AVX2 or AVX-512 VNNI); the others, and on
  // scalar-only CPUs all, when the file is mapped, a plain copy in the same huge-page arena (the
  // mapped pages are then released, so RSS does not double): row kernels stream 4 KiB file
  // pages TLB-bound (G4_ISA=avx2 tg128 85-95 -> 99-103 tok/s, alternating). The per-layer
  // embedding table is only ever looked up by row and stays mapped.
  const PackRules rules(f);
  if (rules.off) return {};
  const size_t total = packed_arena_bytes(f, for_each);
  if (total == 0) return {};
  auto store = std::make_shared<PackedStore>(total);
  auto release = [&](const uint8_t* p, size_t n) { f.release_pages(p, n); };
  for_each([&](TensorSlot& s) {
    const PackAct a = rules.action(f, s);
    if (a == PackAct::kSkip) return;
    WeightView& w = *s.matrix;
    if (a == PackAct::kPack) {
      pack_weight(w, *store, 0, release);
      store->note_packed(s.name);
      return;
    }
    const size_t n = w.row_bytes * size_t(w.out);
    uint8_t* copy = store->alloc(n);
    constexpr size_t kSlice = size_t(16) << 20;
    for (size_t o = 0; o < n; o += kSlice) {
      const size_t m = std::min(kSlice, n - o);
      std::memcpy(copy + o, w.data + o, m);
      f.release_pages(w.data + o, m);
    }
    w.data = copy;
  });
  return store;
}

}  // namespace g4
