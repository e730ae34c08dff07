// Gemma 4 hyperparameters from GGUF metadata (ref: gemma-architecture.md §1.2, §1.3, §2.7, §3.2).
//
// Per-layer quantities (head size, KV heads, FFN width, sliding/global, KV donor) are resolved
// here once, so the forward pass never re-derives them.
#include <cmath>
#include <cstring>

#include "io/gguf.h"
#include "model/config.h"

namespace g4 {

namespace {

// Integer element i of a numeric GGUF array (the reader has already checked its extent).
int64_t array_int(const GgufValue& v, uint64_t i) {
  const size_t n = gguf_scalar_size(v.elem_type);
  const uint8_t* p = v.elems + i * n;
  switch (v.elem_type) {
    case GgufType::kU8:
    case GgufType::kBool:
      return p[0];
    case GgufType::kI8:
      return int8_t(p[0]);
    case GgufType::kU16: {
      uint16_t x;
      std::memcpy(&x, p, 2);
      return x;
    }
    case GgufType::kI16: {
      int16_t x;
      std::memcpy(&x, p, 2);
      return x;
    }
    case GgufType::kU32: {
      uint32_t x;
      std::memcpy(&x, p, 4);
      return x;
    }
    case GgufType::kI32: {
      int32_t x;
      std::memcpy(&x, p, 4);
      return x;
    }
    case GgufType::kU64: {
      uint64_t x;
      std::memcpy(&x, p, 8);
      return x > uint64_t(INT64_MAX) ? -1 : int64_t(x);
    }
    case GgufType::kI64: {
      int64_t x;
      std::memcpy(&x, p, 8);
      return x;
    }
    default:
      return -1;
  }
}

// A per-layer integer stored either as one scalar (same for every layer) or as an array of
// n values (llama.cpp writes arrays for E2B's double-wide MLP and 31B/26B's global KV heads).
Status per_layer(const GgufFile& f, const std::string& key, int n, int64_t lo, int64_t hi,
                 std::vector<int>& out) {
  const GgufValue* v = f.find(key);
  if (v == nullptr) return Status::error("missing metadata '" + key + "'");
  out.assign(size_t(n), 0);
  if (v->type == GgufType::kArray) {
    if (gguf_scalar_size(v->elem_type) == 0 || v->elem_type == GgufType::kBool ||
        v->elem_type == GgufType::kF32 || v->elem_type == GgufType::kF64)
      return Status::error("metadata '" + key + "' should be an integer array");
    if (v->count != uint64_t(n)) {
      return Status::error("metadata '" + key + "' has " + std::to_string(v->count) +
                           " entries, expected one per layer (" + std::to_string(n) + ")");
    }
    for (int i = 0; i < n; ++i) {
      const int64_t x = array_int(*v, uint64_t(i));
      if (x < lo || x > hi) {
        return Status::error("metadata '" + key + "'[" + std::to_string(i) +
                             "] = " + std::to_string(x) + " is outside " + std::to_string(lo) +
                             ".." + std::to_string(hi));
      }
      out[size_t(i)] = int(x);
    }
    return Status();
  }
  auto r = f.get_uint(key);
  if (!r.ok()) return r.status();
  const uint64_t x = *r.value();
  if (x < uint64_t(lo) || x > uint64_t(hi)) {
    return Status::error("metadata '" + key + "' = " + std::to_string(x) + " is outside " +
                         std::to_string(lo) + ".." + std::to_string(hi));
  }
  for (int& o : out) o = int(x);
  return Status();
}

}  // namespace

#define G4_TRY(expr)         \
  do {                       \
    Status s_ = (expr);      \
    if (!s_.ok()) return s_; \
  } while (0)
#define G4_TRY_GET4(var, expr)                \
  auto var##_r = (expr);                      \
  if (!var##_r.ok()) return var##_r.status(); \
  auto var = var##_r.value()

Status gemma4_finish_layers(ModelConfig& c) {
  const int L = c.n_layers;
  c.layer_head_dim.resize(size_t(L));
  for (int l = 0; l < L; ++l) {
    c.layer_head_dim[size_t(l)] = c.layer_sliding[size_t(l)] ? c.head_dim_swa : c.head_dim;
    if (c.n_heads % c.layer_kv_heads[size_t(l)] != 0) {
      return Status::error("layer " + std::to_string(l) + ": head_count " +
                           std::to_string(c.n_heads) + " is not a multiple of head_count_kv " +
                           std::to_string(c.layer_kv_heads[size_t(l)]));
    }
  }
  // KV sharing (spec §2.7): layers >= L - n_shared read the last non-shared layer of their type.
  if (c.n_kv_shared < 0 || c.n_kv_shared >= L)
    return Status::error("attention.shared_kv_layers must be below block_count");
  const int first_shared = L - c.n_kv_shared;
  c.kv_donor.assign(size_t(L), -1);
  for (int l = first_shared; l < L; ++l) {
    for (int d = first_shared - 1; d >= 0; --d) {
      if (c.layer_sliding[size_t(d)] == c.layer_sliding[size_t(l)]) {
        c.kv_donor[size_t(l)] = d;
        break;
      }
    }
    const int d = c.kv_donor[size_t(l)];
    if (d < 0) {
      return Status::error("KV-shared layer " + std::to_string(l) +
                           " has no earlier layer of its type to read from");
    }
    if (c.layer_kv_heads[size_t(l)] != c.layer_kv_heads[size_t(d)]) {
      return Status::error("KV-shared layer " + std::to_string(l) +
                           " has a different KV head count from its donor");
    }
  }
  return Status();
}

Result<ModelConfig> gemma4_config_from_gguf(const GgufFile& f) {
  ModelConfig c;
  c.arch = "gemma4";
  const std::string p = "gemma4.";
  G4_TRY_GET4(name, f.get_string("general.name"));
  c.name = name.value_or("");
  auto need = [&](const char* key, uint64_t lo, uint64_t hi, int64_t& out) -> Status {
    auto r = f.get_uint(p + key);
    if (!r.ok()) return r.status();
    if (!r.value()) return Status::error("missing metadata '" + p + key + "'");
    const uint64_t v = *r.value();
    if (v < lo || v > hi) {
      return Status::error("metadata '" + p + key + "' = " + std::to_string(v) + " is outside " +
                           std::to_string(lo) + ".." + std::to_string(hi));
    }
    out = int64_t(v);
    return Status();
  };
  auto opt = [&](const char* key, uint64_t hi, int64_t dflt, int64_t& out) -> Status {
    auto r = f.get_uint(p + key);
    if (!r.ok()) return r.status();
    out = r.value() ? int64_t(*r.value()) : dflt;
    if (out < 0 || uint64_t(out) > hi)
      return Status::error("metadata '" + p + key + "' = " + std::to_string(out) + " is too big");
    return Status();
  };
  int64_t v = 0;
  G4_TRY(need("block_count", 1, 1024, v));
  c.n_layers = int(v);
  const int L = c.n_layers;
  G4_TRY(need("embedding_length", 1, 1 << 16, v));
  c.model_dim = int(v);
  G4_TRY(need("attention.head_count", 1, 1024, v));
  c.n_heads = int(v);
  G4_TRY(need("context_length", 1, 1 << 24, v));
  c.n_ctx_train = v;
  G4_TRY(need("attention.key_length", 2, 1024, v));
  c.head_dim = int(v);
  G4_TRY(opt("attention.key_length_swa", 1024, c.head_dim, v));
  c.head_dim_swa = int(v);
  for (const char* k : {"attention.value_length", "attention.value_length_swa"}) {
    G4_TRY_GET4(vl, f.get_uint(p + k));
    const int want = std::strstr(k, "swa") ? c.head_dim_swa : c.head_dim;
    if (vl && int(*vl) != want)
      return Status::error("metadata '" + p + k + "' differs from the key length");
  }
  if (c.head_dim % 2 != 0 || c.head_dim_swa % 2 != 0 || c.head_dim_swa < 2)
    return Status::error("head dimensions must be even");
  G4_TRY(per_layer(f, p + "feed_forward_length", L, 1, 1 << 20, c.layer_ff_dim));
  G4_TRY(per_layer(f, p + "attention.head_count_kv", L, 1, 1024, c.layer_kv_heads));
  c.ff_dim = c.layer_ff_dim[0];
  c.n_kv_heads = c.layer_kv_heads[0];

  G4_TRY_GET4(win, f.get_uint(p + "attention.sliding_window"));
  c.window = win ? int(*win) : 0;
  if (c.window <= 0) return Status::error("missing or zero attention.sliding_window");
  const GgufValue* pat = f.find(p + "attention.sliding_window_pattern");
  if (pat == nullptr || pat->type != GgufType::kArray || pat->elem_type != GgufType::kBool ||
      pat->count != uint64_t(L)) {
    return Status::error(
        "gemma4 needs attention.sliding_window_pattern as a bool array with one "
        "entry per layer");
  }
  c.layer_sliding.resize(size_t(L));
  for (int l = 0; l < L; ++l) c.layer_sliding[size_t(l)] = array_int(*pat, uint64_t(l)) != 0;

  G4_TRY_GET4(eps, f.get_float(p + "attention.layer_norm_rms_epsilon"));
  c.rms_eps = float(eps.value_or(1e-6));
  G4_TRY_GET4(theta, f.get_float(p + "rope.freq_base"));
  c.rope_theta_global = float(theta.value_or(1e6));
  G4_TRY_GET4(theta_swa, f.get_float(p + "rope.freq_base_swa"));
  c.rope_theta_local = float(theta_swa.value_or(1e4));
  G4_TRY_GET4(scaling, f.get_string(p + "rope.scaling.type"));
  if (scaling && *scaling != "none")
    return Status::error("rope scaling '" + *scaling + "' is not supported for gemma4");
  G4_TRY(opt("rope.dimension_count", 1024, c.head_dim, v));
  c.rope_dims_global = int(v);
  G4_TRY(opt("rope.dimension_count_swa", 1024, c.head_dim_swa, v));
  c.rope_dims_local = int(v);
  if (c.rope_dims_global > c.head_dim || c.rope_dims_local > c.head_dim_swa ||
      c.rope_dims_global % 2 != 0 || c.rope_dims_local % 2 != 0)
    return Status::error("rope dimension count exceeds the head size or is odd");
  G4_TRY_GET4(softcap, f.get_float(p + "final_logit_softcapping"));
  c.final_softcap = float(softcap.value_or(0.0));
  // No attention-logit softcap on Gemma 4 (transformers' Gemma 4 attention never applies one):
  // an attn_logit_softcapping key, if a file carries it, is ignored as it is there.
  c.attn_softcap = 0.f;
  c.query_scale = 1.0f;  // QK-norm replaces 1/sqrt(hd) (spec §2.3, §6.6)

  G4_TRY(opt("embedding_length_per_layer_input", 1 << 16, 0, v));
  c.ple_dim = int(v);
  G4_TRY(opt("expert_count", 4096, 0, v));
  c.n_experts = int(v);
  G4_TRY(opt("expert_used_count", 4096, 0, v));
  c.n_experts_used = int(v);
  G4_TRY(opt("expert_feed_forward_length", 1 << 20, 0, v));
  c.expert_ff_dim = int(v);
  if (c.n_experts > 0 &&
      (c.n_experts_used < 1 || c.n_experts_used > c.n_experts || c.expert_ff_dim < 1)) {
    return Status::error("MoE metadata inconsistent: expert_count " + std::to_string(c.n_experts) +
                         ", expert_used_count " + std::to_string(c.n_experts_used) +
                         ", expert_feed_forward_length " + std::to_string(c.expert_ff_dim));
  }

  // g4's own key (Google's models have GELU-tanh experts): "gelu" (default) or "silu".
  G4_TRY_GET4(act, f.get_string(p + "expert_activation"));
  if (act && *act != "gelu" && *act != "silu")
    return Status::error("expert_activation '" + *act + "' is not supported (gelu, silu)");
  c.expert_swiglu = act && *act == "silu";
  G4_TRY(opt("attention.shared_kv_layers", 1024, 0, v));
  c.n_kv_shared = int(v);
  G4_TRY(gemma4_finish_layers(c));

  const GgufTensor* emb = f.tensor("token_embd.weight");
  if (emb == nullptr || emb->n_dims != 2)
    return Status::error("missing 2-D tensor 'token_embd.weight'");
  if (emb->ne[1] > (int64_t(1) << 24)) return Status::error("token_embd.weight has too many rows");
  c.vocab_size = int(emb->ne[1]);
  return c;
}

Result<ModelConfig> gemma4_preset(const std::string& size, const Gemma4PresetOverrides& o) {
  struct P {
    const char* name;
    int L, d, H, kv_swa, kv_global, ff, period, W, P, shared;
    bool double_wide;
    int64_t ctx;
    int experts, used, ffe;
  };
  // Spec §1.2 (HF configs); 31B / 26B-A4B context per the Google docs ("256K").
  static const P presets[] = {
      {"e2b", 35, 1536, 8, 1, 1, 6144, 5, 512, 256, 20, true, 131072, 0, 0, 0},
      {"e4b", 42, 2560, 8, 2, 2, 10240, 6, 512, 256, 18, false, 131072, 0, 0, 0},
      {"31b", 60, 5376, 32, 16, 4, 21504, 6, 1024, 0, 0, false, 262144, 0, 0, 0},
      {"26b-a4b", 30, 2816, 16, 8, 2, 2112, 6, 1024, 0, 0, false, 262144, 128, 8, 704},
  };
  for (const P& p : presets) {
    if (size != p.name) continue;
    ModelConfig c;
    c.arch = "gemma4";
    c.name = std::string("gemma-4-") + p.name;
    c.n_layers = p.L;
    c.model_dim = p.d;
    c.n_heads = p.H;
    c.head_dim = 512;
    c.head_dim_swa = 256;
    c.rope_dims_global = 512;
    c.rope_dims_local = 256;
    c.window = o.window > 0 ? o.window : p.W;
    c.n_ctx_train = o.n_ctx > 0 ? o.n_ctx : p.ctx;
    c.vocab_size = 262144;
    c.final_softcap = 30.f;
    c.query_scale = 1.f;
    c.ple_dim = p.P;
    c.n_kv_shared = p.shared;
    c.n_experts = o.n_experts > 0 ? o.n_experts : p.experts;
    c.n_experts_used = o.n_experts_used > 0 ? o.n_experts_used : p.used;
    c.expert_ff_dim = o.expert_ff_dim > 0 ? o.expert_ff_dim : p.ffe;
    c.expert_swiglu = o.swiglu == 1;
    if (c.n_experts > 0 &&
        (c.n_experts_used < 1 || c.n_experts_used > c.n_experts || c.expert_ff_dim < 1))
      return Status::error("preset overrides give an inconsistent MoE shape");
    const int period = o.global_period > 0 ? o.global_period : p.period;
    c.layer_sliding.resize(size_t(p.L));
    for (int l = 0; l < p.L; ++l) c.layer_sliding[size_t(l)] = (l + 1) % period != 0;
    c.layer_sliding.back() = false;  // HF forces the last layer global
    c.layer_kv_heads.resize(size_t(p.L));
    c.layer_ff_dim.resize(size_t(p.L));
    for (int l = 0; l < p.L; ++l) {
      c.layer_kv_heads[size_t(l)] = c.layer_sliding[size_t(l)] ? p.kv_swa : p.kv_global;
      const bool shared = l >= p.L - p.shared;
      c.layer_ff_dim[size_t(l)] = p.double_wide && shared ? 2 * p.ff : p.ff;
    }
    c.n_kv_heads = c.layer_kv_heads[0];
    c.ff_dim = c.layer_ff_dim[0];
    Status s = gemma4_finish_layers(c);
    if (!s.ok()) return s;
    return c;
  }
  return Status::error("unknown gemma4 size '" + size + "' (e2b, e4b, 31b, 26b-a4b)");
}

Result<ModelConfig> brief_preset(const std::string& size) {
  if (size == "270b") {
    Gemma4PresetOverrides o;
    o.n_experts = 8;
    o.n_experts_used = 2;
    o.expert_ff_dim = 30720;
    o.swiglu = 1;
    auto c = gemma4_preset("31b", o);
    if (c.ok()) c.value().name = "brief-270b";
    return c;
  }
  struct P {
    const char* name;
    int L, d, H, Hkv, hd, ff, W;
    int64_t ctx;
  };
  // Gemma 2 2B / 9B / 27B dimensions; window and context as Gemma 4's small / large models.
  static const P presets[] = {
      {"2b", 26, 2304, 8, 4, 256, 9216, 512, 131072},
      {"9b", 42, 3584, 16, 8, 256, 14336, 1024, 131072},
      {"27b", 46, 4608, 32, 16, 128, 36864, 1024, 262144},
  };
  for (const P& p : presets) {
    if (size != p.name) continue;
    ModelConfig c;
    c.arch = "gemma4";
    c.name = std::string("brief-") + p.name;
    c.n_layers = p.L;
    c.model_dim = p.d;
    c.n_heads = p.H;
    c.head_dim = c.head_dim_swa = p.hd;
    c.rope_dims_global = c.rope_dims_local = p.hd;
    c.window = p.W;
    c.n_ctx_train = p.ctx;
    c.vocab_size = 262144;
    c.final_softcap = 30.f;
    c.query_scale = 1.f;
    c.layer_sliding.resize(size_t(p.L));
    for (int l = 0; l < p.L; ++l) c.layer_sliding[size_t(l)] = (l + 1) % 6 != 0;
    c.layer_sliding.back() = false;
    c.layer_kv_heads.assign(size_t(p.L), p.Hkv);
    c.layer_ff_dim.assign(size_t(p.L), p.ff);
    c.n_kv_heads = p.Hkv;
    c.ff_dim = p.ff;
    Status s = gemma4_finish_layers(c);
    if (!s.ok()) return s;
    return c;
  }
  return Status::error("unknown brief size '" + size + "' (2b, 9b, 27b, 270b)");
}

}  // namespace g4
