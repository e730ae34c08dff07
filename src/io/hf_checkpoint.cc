#include "io/hf_checkpoint.h"

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "core/fp16.h"
#include "io/gguf.h"
#include "io/hf_tokenizer.h"
#include "io/safetensors.h"
#include "kernels/quant.h"
#include "model/quantize.h"

namespace g4 {

namespace {

using json = nlohmann::json;

// A tensor of the image: `fill` writes its `nbytes` bytes straight into the final buffer, so
// converted weights exist once (the sources are the checkpoint's maps).
struct ImageTensor {
  std::string name;
  std::vector<int64_t> ne;  // ggml order
  DType type = DType::kF32;
  size_t nbytes = 0;
  std::function<void(uint8_t*)> fill;
};

// Serialises GGUF v3 metadata and tensors (formats.md §1) into one aligned buffer.
class ImageBuilder {
 public:
  void u32(const std::string& k, uint32_t v) { key(k, 4), put(v); }
  void f32(const std::string& k, float v) { key(k, 6), put(v); }
  void str(const std::string& k, const std::string& v) { key(k, 8), put_str(v); }
  void arr_i32(const std::string& k, const std::vector<int>& v) {
    key(k, 9), put<uint32_t>(5), put<uint64_t>(v.size());
    for (int x : v) put<int32_t>(x);
  }
  void arr_bool(const std::string& k, const std::vector<bool>& v) {
    key(k, 9), put<uint32_t>(7), put<uint64_t>(v.size());
    for (bool x : v) put<uint8_t>(x ? 1 : 0);
  }
  void boolean(const std::string& k, bool v) { key(k, 7), put<uint8_t>(v ? 1 : 0); }
  void arr_f32(const std::string& k, const std::vector<float>& v) {
    key(k, 9), put<uint32_t>(6), put<uint64_t>(v.size());
    for (float x : v) put<float>(x);
  }
  void arr_str(const std::string& k, const std::vector<std::string>& v) {
    key(k, 9), put<uint32_t>(8), put<uint64_t>(v.size());
    for (const std::string& x : v) put_str(x);
  }
  void tensor(ImageTensor t) { tensors_.push_back(std::move(t)); }
  void on_progress(std::function<void(uint64_t, uint64_t)> f) { progress_ = std::move(f); }

  HfImage build(const std::string& arch) {
    const auto align = [](size_t n) { return (n + 31) / 32 * 32; };
    std::vector<uint8_t> head;
    std::swap(head, kv_);
    std::vector<uint8_t> kv = std::move(head);
    // Header + KV + tensor infos.
    put_raw("GGUF", 4);
    put<uint32_t>(3);
    put<int64_t>(int64_t(tensors_.size()));
    put<int64_t>(n_kv_);
    kv_.insert(kv_.end(), kv.begin(), kv.end());
    uint64_t off = 0;
    for (const ImageTensor& t : tensors_) {
      put_str(t.name);
      put<uint32_t>(uint32_t(t.ne.size()));
      for (int64_t x : t.ne) put<int64_t>(x);
      put<uint32_t>(uint32_t(t.type));
      put<uint64_t>(off);
      off = align(off + t.nbytes);
    }
    const size_t data_start = align(kv_.size());
    const size_t total = data_start + off;
    uint8_t* p = static_cast<uint8_t*>(std::aligned_alloc(64, (total + 63) / 64 * 64));
    G4_CHECK(p != nullptr);
    std::memset(p, 0, total);
    std::memcpy(p, kv_.data(), kv_.size());
    off = data_start;
    uint64_t done = 0, payload = 0;
    for (const ImageTensor& t : tensors_) payload += t.nbytes;
    for (const ImageTensor& t : tensors_) {
      if (t.nbytes > 0) t.fill(p + off);
      off += align(t.nbytes);
      done += t.nbytes;
      if (progress_) progress_(done, payload);
    }
    HfImage img;
    img.data = std::shared_ptr<const uint8_t[]>(
        p, [](const uint8_t* q) { std::free(const_cast<uint8_t*>(q)); });
    img.size = total;
    img.arch = arch;
    return img;
  }

 private:
  template <typename T>
  void put(T v) {
    put_raw(&v, sizeof(T));
  }
  void put_raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    kv_.insert(kv_.end(), b, b + n);
  }
  void put_str(const std::string& s) {
    put<uint64_t>(s.size());
    put_raw(s.data(), s.size());
  }
  void key(const std::string& k, uint32_t type) {
    put_str(k);
    put<uint32_t>(type);
    ++n_kv_;
  }
  std::vector<uint8_t> kv_;
  int64_t n_kv_ = 0;
  std::vector<ImageTensor> tensors_;
  std::function<void(uint64_t, uint64_t)> progress_;
};

Result<json> read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in.good()) return Status::error(path + ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::error(path + ": not a JSON object");
  return j;
}

// Typed config accessors: a present key of the wrong type is an error naming the key.
struct Cfg {
  const json& j;
  Status err;
  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  int64_t integer(const char* k, int64_t def, bool required = false) {
    if (!has(k)) {
      if (required && err.ok())
        err = Status::error("config.json: missing '" + std::string(k) + "'");
      return def;
    }
    if (!j[k].is_number_integer() || j[k].get<int64_t>() < 0 || j[k].get<int64_t>() > (1 << 30)) {
      if (err.ok()) err = Status::error("config.json: '" + std::string(k) + "' is not a count");
      return def;
    }
    return j[k].get<int64_t>();
  }
  double number(const json& o, const char* k, double def) {
    if (!o.contains(k) || o[k].is_null()) return def;
    if (!o[k].is_number()) {
      if (err.ok()) err = Status::error("config.json: '" + std::string(k) + "' is not a number");
      return def;
    }
    return o[k].get<double>();
  }
  double number(const char* k, double def) { return number(j, k, def); }
  std::string string(const json& o, const char* k, const std::string& def) {
    if (!o.contains(k) || o[k].is_null()) return def;
    if (!o[k].is_string()) {
      if (err.ok()) err = Status::error("config.json: '" + std::string(k) + "' is not a string");
      return def;
    }
    return o[k].get<std::string>();
  }
};

// Layer types: true = sliding. From layer_types, else a period (`sliding_window_pattern`).
Result<std::vector<bool>> layer_types(Cfg& c, int L, int default_period) {
  std::vector<bool> s(static_cast<size_t>(L));
  if (c.has("layer_types")) {
    const json& t = c.j["layer_types"];
    if (!t.is_array() || t.size() != size_t(L))
      return Status::error("config.json: layer_types must list one type per layer");
    for (int i = 0; i < L; ++i) {
      if (t[size_t(i)] == "sliding_attention")
        s[size_t(i)] = true;
      else if (t[size_t(i)] == "full_attention")
        s[size_t(i)] = false;
      else
        return Status::error("config.json: unknown layer type " + t[size_t(i)].dump());
    }
    return s;
  }
  int64_t p =
      c.integer("sliding_window_pattern", c.integer("_sliding_window_pattern", default_period));
  if (p < 1) return Status::error("config.json: sliding_window_pattern must be >= 1");
  for (int i = 0; i < L; ++i) s[size_t(i)] = (i + 1) % p != 0;
  return s;
}

// Rope settings for one attention type: {theta, rope_type, factor, partial_rotary_factor}.
struct Rope {
  double theta = 0, factor = 1, partial = 1;
  std::string type = "default";
};
Rope rope_for(Cfg& c, const char* layer_type, double legacy_theta_default, bool global) {
  Rope r;
  if (c.has("rope_parameters") && c.j["rope_parameters"].is_object() &&
      c.j["rope_parameters"].contains(layer_type)) {
    const json& o = c.j["rope_parameters"][layer_type];
    if (!o.is_object()) {
      if (c.err.ok()) c.err = Status::error("config.json: rope_parameters entry is not an object");
      return r;
    }
    r.theta = c.number(o, "rope_theta", legacy_theta_default);
    r.type = c.string(o, "rope_type", "default");
    r.factor = c.number(o, "factor", 1);
    r.partial = c.number(o, "partial_rotary_factor", 1);
    return r;
  }
  // Legacy Gemma 3 keys: rope_theta (global), rope_local_base_freq, rope_scaling (global).
  r.theta = global ? c.number("rope_theta", legacy_theta_default)
                   : c.number("rope_local_base_freq", legacy_theta_default);
  if (global && c.has("rope_scaling") && c.j["rope_scaling"].is_object()) {
    const json& o = c.j["rope_scaling"];
    r.type = c.string(o, "rope_type", c.string(o, "type", "default"));
    r.factor = c.number(o, "factor", 1);
  }
  return r;
}

// HF name -> GGUF name (spec §3.3); "" = not part of the text model (skipped).
Result<std::string> gguf_name(std::string n) {
  for (const char* skip :
       {"vision_tower.", "multi_modal_projector.", "audio_tower.", "embed_vision.", "embed_audio.",
        "model.vision_tower.", "model.multi_modal_projector.", "model.audio_tower.",
        "model.embed_vision.", "model.embed_audio.", "lm_head.", "language_model.lm_head."}) {
    if (n.rfind(skip, 0) == 0) return std::string();
  }
  for (const char* pre : {"model.language_model.model.", "model.language_model.",
                          "language_model.model.", "model."}) {
    if (n.rfind(pre, 0) == 0) {
      n = n.substr(std::strlen(pre));
      break;
    }
  }
  static const std::pair<const char*, const char*> kTop[] = {
      {"embed_tokens.weight", "token_embd.weight"},
      {"norm.weight", "output_norm.weight"},
      {"embed_tokens_per_layer.weight", "per_layer_token_embd.weight"},
      {"per_layer_model_projection.weight", "per_layer_model_proj.weight"},
      {"per_layer_projection_norm.weight", "per_layer_proj_norm.weight"},
  };
  for (const auto& [h, g] : kTop)
    if (n == h) return std::string(g);
  static const std::pair<const char*, const char*> kLayer[] = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "post_attention_norm.weight"},
      {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
      {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
      {"post_feedforward_layernorm_1.weight", "post_ffw_norm_1.weight"},
      {"post_feedforward_layernorm_2.weight", "post_ffw_norm_2.weight"},
      {"pre_feedforward_layernorm_2.weight", "pre_ffw_norm_2.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
      {"router.proj.weight", "ffn_gate_inp.weight"},
      {"router.scale", "ffn_gate_inp.scale"},
      {"router.per_expert_scale", "ffn_down_exps.scale"},
      {"experts.gate_up_proj", "ffn_gate_up_exps.weight"},
      {"experts.down_proj", "ffn_down_exps.weight"},
      {"layer_scalar", "layer_output_scale.weight"},
      {"per_layer_input_gate.weight", "inp_gate.weight"},
      {"per_layer_projection.weight", "proj.weight"},
      {"post_per_layer_input_norm.weight", "post_norm.weight"},
  };
  if (n.rfind("layers.", 0) == 0) {
    const size_t dot = n.find('.', 7);
    const std::string idx = n.substr(7, dot == std::string::npos ? 0 : dot - 7);
    if (dot != std::string::npos && !idx.empty() && idx.size() < 6 &&
        std::all_of(idx.begin(), idx.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      const std::string rest = n.substr(dot + 1);
      for (const auto& [h, g] : kLayer)
        if (rest == h) return "blk." + idx + "." + g;
    }
  }
  return Status::error("unknown tensor '" + n + "'");
}

Result<DType> parse_dtype(const std::string& s) {
  if (s == "f32") return DType::kF32;
  if (s == "f16") return DType::kF16;
  if (s == "bf16") return DType::kBF16;
  if (s == "q8_0") return DType::kQ8_0;
  return Status::error("unsupported --dtype '" + s +
                       "' (auto, f32, f16, bf16, q8_0, q4_0, q5_0, q4_k, q6_k)");
}

// Converts one checkpoint tensor: to f32, `add_one` for Gemma 3 norms, then to `target`.
// `keep_rows` >= 0 keeps only the first rows of a matrix (the embedding cut to the tokenizer).
ImageTensor convert(const StTensor& t, const std::string& name, DType target, bool add_one,
                    int64_t keep_rows = -1) {
  ImageTensor o;
  o.name = name;
  for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) o.ne.push_back(*it);
  if (o.ne.empty()) o.ne.push_back(1);
  o.type = target;
  if (keep_rows >= 0 && o.ne.size() == 2 && keep_rows < o.ne[1]) o.ne[1] = keep_rows;
  int64_t n = 1;
  for (int64_t x : o.ne) n *= x;
  const StTensor* src = &t;
  if (target == DType::kQ8_0) {  // row by row (ne0 % 32 == 0, checked by the caller)
    const int64_t ne0 = o.ne[0], rows = ne0 > 0 ? n / ne0 : 0;  // n: the kept elements
    const size_t rb = row_bytes(DType::kQ8_0, ne0), in_es = src->type == DType::kF32 ? 4 : 2;
    o.nbytes = size_t(rows) * rb;
    o.fill = [src, ne0, rows, rb, in_es](uint8_t* dst) {
      std::vector<float> f(static_cast<size_t>(ne0));
      for (int64_t r = 0; r < rows; ++r) {
        dequantize_row(src->type, src->data + size_t(r * ne0) * in_es, f.data(), ne0);
        quantize_activation(DType::kQ8_0, f.data(), dst + size_t(r) * rb, ne0);
      }
    };
    return o;
  }
  o.nbytes = size_t(n) * (target == DType::kF32 ? 4 : 2);
  o.fill = [src, n, target, add_one](uint8_t* dst) {
    if (src->type == target && !add_one) {
      std::memcpy(dst, src->data, size_t(n) * (target == DType::kF32 ? 4 : 2));
      return;
    }
    constexpr int64_t kChunk = 4096;  // bounded scratch
    std::vector<float> f(static_cast<size_t>(std::min(n, kChunk)));
    const size_t in_es = src->type == DType::kF32 ? 4 : 2;
    for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
      const int64_t m = std::min(kChunk, n - i0);
      dequantize_row(src->type, src->data + size_t(i0) * in_es, f.data(), m);
      if (add_one)
        for (int64_t i = 0; i < m; ++i) f[size_t(i)] += 1.0f;
      if (target == DType::kF32) {
        std::memcpy(dst + size_t(i0) * 4, f.data(), size_t(m) * 4);
        continue;
      }
      for (int64_t i = 0; i < m; ++i) {
        const uint16_t h =
            target == DType::kF16 ? fp32_to_fp16(f[size_t(i)]) : fp32_to_bf16(f[size_t(i)]);
        std::memcpy(dst + size_t(i0 + i) * 2, &h, 2);
      }
    }
  };
  return o;
}

bool is_gemma3_norm(const std::string& g) {
  const auto ends = [&](const char* s) {
    const size_t k = std::strlen(s);
    return g.size() >= k && g.compare(g.size() - k, k, s) == 0;
  };
  return ends("attn_norm.weight") || ends("attn_q_norm.weight") || ends("attn_k_norm.weight") ||
         ends("post_attention_norm.weight") || ends("ffn_norm.weight") ||
         ends("post_ffw_norm.weight") || g == "output_norm.weight";
}

// The text part of config.json (multimodal configs nest it under text_config).
const json& text_config(const json& j) {
  return j.contains("text_config") && j["text_config"].is_object() ? j["text_config"] : j;
}

bool flag(const json& j, const char* k) {
  return j.contains(k) && j[k].is_boolean() && j[k].get<bool>();
}

Status check_activation(Cfg& c);

// Fields both architectures share that g4 cannot honour: refused by name.
Status check_common(Cfg& c) {
  if (flag(c.j, "attention_bias"))
    return Status::error("config.json: attention_bias (bias vectors on q/k/v/o) is not supported");
  return check_activation(c);
}

Status check_activation(Cfg& c) {
  const std::string act =
      c.string(c.j, "hidden_activation", c.string(c.j, "hidden_act", "gelu_pytorch_tanh"));
  if (act != "gelu_pytorch_tanh") {
    return Status::error("config.json: hidden_activation '" + act +
                         "' is not supported (gelu_pytorch_tanh)");
  }
  return c.err;
}

// Gemma 2's RoPE: one theta for all layers, from a flat `rope_parameters` (transformers 5) or
// the legacy `rope_theta`; only the default rope type.
Status gemma2_rope(Cfg& c, double* theta) {
  std::string type = "default";
  *theta = c.number("rope_theta", 10000);
  if (c.has("rope_parameters")) {
    const json& o = c.j["rope_parameters"];
    if (!o.is_object() || (!o.contains("rope_theta") && !o.contains("rope_type")))
      return Status::error(
          "config.json: rope_parameters must be {rope_theta, rope_type} for gemma2");
    *theta = c.number(o, "rope_theta", *theta);
    type = c.string(o, "rope_type", "default");
  } else if (c.has("rope_scaling") && c.j["rope_scaling"].is_object()) {
    const json& o = c.j["rope_scaling"];
    type = c.string(o, "rope_type", c.string(o, "type", "default"));
  }
  if (!c.err.ok()) return c.err;
  if (type != "default")
    return Status::error("config.json: RoPE '" + type + "' is not supported for gemma2 (default)");
  if (!(*theta > 0)) return Status::error("config.json: rope_theta must be > 0");
  return Status();
}

// A soft-cap as Gemma2Config reads it: absent = its default, null = none (written as 0).
Status softcap_of(Cfg& c, const char* key, double def, double* out) {
  *out = !c.j.contains(key) ? def : c.j[key].is_null() ? 0 : c.number(key, def);
  if (!c.err.ok()) return c.err;
  if (!(*out >= 0)) return Status::error("config.json: '" + std::string(key) + "' must be >= 0");
  return Status();
}

// Gemma 3 (Gemma3TextConfig defaults where config.json omits a key, as transformers does) and
// Gemma 2 (Gemma2Config's defaults; llama.cpp's gemma2 keys): one writer, as one forward runs
// both. Gemma 2 differs by its soft-caps, one RoPE theta, the period-2 layer pattern, the
// 46-layer 27B's query scale and its 8192-token context default.
Status gemma3_meta(Cfg& c, ImageBuilder& b, const std::string& name, const std::string& arch) {
  const bool g2 = arch == "gemma2";
  const std::string p = arch + ".";
  const int L = int(c.integer("num_hidden_layers", 26));
  const int64_t d = c.integer("hidden_size", 2304), ff = c.integer("intermediate_size", 9216),
                H = c.integer("num_attention_heads", 8), Hkv = c.integer("num_key_value_heads", 4),
                hd = c.integer("head_dim", 256), W = c.integer("sliding_window", 4096),
                ctx = c.integer("max_position_embeddings", g2 ? 8192 : 131072);
  if (!c.err.ok()) return c.err;
  if (L < 1 || d < 1 || H < 1 || Hkv < 1 || hd < 1)
    return Status::error("config.json: layer, width and head counts must be >= 1");
  if (Status s = check_common(c); !s.ok()) return s;
  if (flag(c.j, "use_bidirectional_attention"))
    return Status::error("config.json: use_bidirectional_attention is not supported");
  auto types = layer_types(c, L, g2 ? 2 : 6);
  if (!types.ok()) return types.status();
  // A periodic pattern is written as its period (llama.cpp's key); any other as one bool per
  // layer, as gemma4 files carry it.
  int period = L + 1;
  for (int i = 0; i < L; ++i)
    if (!types.value()[size_t(i)]) {
      period = i + 1;
      break;
    }
  bool periodic = true;
  for (int i = 0; i < L; ++i)
    periodic = periodic && types.value()[size_t(i)] == ((i + 1) % period != 0);
  Rope g, s;
  double attn_cap = 0, final_cap = 0;
  if (g2) {
    if (Status st = gemma2_rope(c, &g.theta); !st.ok()) return st;
    s.theta = g.theta;
    if (Status st = softcap_of(c, "attn_logit_softcapping", 50, &attn_cap); !st.ok()) return st;
    if (Status st = softcap_of(c, "final_logit_softcapping", 30, &final_cap); !st.ok()) return st;
  } else {
    g = rope_for(c, "full_attention", 1e6, true);
    s = rope_for(c, "sliding_attention", 1e4, false);
  }
  if (!c.err.ok()) return c.err;
  if (s.type != "default" || s.factor != 1 || s.partial != 1 || g.partial != 1 ||
      (g.type != "default" && g.type != "linear")) {
    return Status::error("config.json: RoPE '" + g.type + "'/'" + s.type +
                         "' is not supported (default, or linear on global layers)");
  }
  // llama.cpp derives the query scale from the shape; a config that says otherwise gets it
  // written as attention.scale (read by g4).
  const double qpas = c.number("query_pre_attn_scalar", 256),
               derived = L == (g2 ? 46 : 62) ? double(d) / double(H) : double(hd);
  if (!(qpas > 0)) return Status::error("config.json: query_pre_attn_scalar must be > 0");
  b.str("general.architecture", arch);
  b.str("general.name", name);
  b.u32(p + "context_length", uint32_t(ctx));
  b.u32(p + "embedding_length", uint32_t(d));
  b.u32(p + "block_count", uint32_t(L));
  b.u32(p + "feed_forward_length", uint32_t(ff));
  b.u32(p + "attention.head_count", uint32_t(H));
  b.u32(p + "attention.head_count_kv", uint32_t(Hkv));
  b.u32(p + "attention.key_length", uint32_t(hd));
  b.u32(p + "attention.value_length", uint32_t(hd));
  b.u32(p + "attention.sliding_window", uint32_t(W));
  if (periodic)
    b.u32(p + "attention.sliding_window_pattern", uint32_t(period));
  else
    b.arr_bool(p + "attention.sliding_window_pattern", types.value());
  if (std::fabs(qpas - derived) > 1e-6 * derived)
    b.f32(p + "attention.scale", float(1.0 / std::sqrt(qpas)));
  b.f32(p + "attention.layer_norm_rms_epsilon", float(c.number("rms_norm_eps", 1e-6)));
  b.f32(p + "rope.freq_base", float(g.theta));
  b.f32(p + "rope.freq_base_swa", float(s.theta));
  if (g.type == "linear" && g.factor != 1) {
    b.str(p + "rope.scaling.type", "linear");
    b.f32(p + "rope.scaling.factor", float(g.factor));
  }
  if (g2) {  // llama.cpp's keys; 0 (a config's null) is g4's "none", which llama.cpp lacks
    b.f32(p + "attn_logit_softcapping", float(attn_cap));
    b.f32(p + "final_logit_softcapping", float(final_cap));
  } else if (c.has("final_logit_softcapping")) {
    b.f32(p + "final_logit_softcapping", float(c.number("final_logit_softcapping", 0)));
  }
  // Gemma 3: attn_logit_softcapping is not written (transformers' attention never applies it).
  return c.err;
}

// Gemma 4 (Gemma4TextConfig defaults); per-layer head sizes, KV heads and MLP widths resolved
// as transformers does (per_layer_config overrides, double-wide MLP on KV-shared layers).
Status gemma4_meta(Cfg& c, ImageBuilder& b, const std::string& name, int* rope_pairs,
                   int* hd_global) {
  const std::string p = "gemma4.";
  const int L = int(c.integer("num_hidden_layers", 30));
  const int64_t d = c.integer("hidden_size", 2304), ff = c.integer("intermediate_size", 9216),
                H = c.integer("num_attention_heads", 8), Hkv = c.integer("num_key_value_heads", 4),
                hd = c.integer("head_dim", 256), hdg = c.integer("global_head_dim", 512),
                W = c.integer("sliding_window", 512),
                ctx = c.integer("max_position_embeddings", 131072),
                P = c.integer("hidden_size_per_layer_input", 256),
                shared = c.integer("num_kv_shared_layers", 0),
                gkv = c.integer("num_global_key_value_heads", 0);
  if (!c.err.ok()) return c.err;
  if (L < 1 || d < 1 || H < 1 || Hkv < 1 || hd < 1 || shared > L)
    return Status::error("config.json: layer, width and head counts out of range");
  if (Status s = check_common(c); !s.ok()) return s;
  if (c.has("use_bidirectional_attention") && c.j["use_bidirectional_attention"] == "all")
    return Status::error("config.json: use_bidirectional_attention 'all' is not supported");
  auto types = layer_types(c, L, 6);
  if (!types.ok()) return types.status();
  std::vector<bool> sl = types.value();
  sl.back() = false;  // Gemma4TextConfig forces the last layer to full attention
  const bool k_eq_v = flag(c.j, "attention_k_eq_v"), wide = flag(c.j, "use_double_wide_mlp");
  // As Gemma4TextConfig: a saved per_layer_config (even empty) is the whole list of per-layer
  // overrides of head_dim / num_key_value_heads; without one, full-attention layers take
  // global_head_dim (default 512) and, with attention_k_eq_v, num_global_key_value_heads.
  const bool has_plc = c.has("per_layer_config") && !c.j["per_layer_config"].is_null();
  if (has_plc && !c.j["per_layer_config"].is_object())
    return Status::error("config.json: per_layer_config must be an object");
  std::vector<int> ffs, kvh, hds;
  for (int l = 0; l < L; ++l) {
    const bool full = !sl[size_t(l)];
    int64_t h = full && !has_plc ? hdg : hd, kv = full && !has_plc && k_eq_v && gkv > 0 ? gkv : Hkv;
    const std::string key = std::to_string(l);
    if (has_plc && c.j["per_layer_config"].contains(key)) {
      Cfg o{c.j["per_layer_config"][key], Status()};
      if (!o.j.is_object())
        return Status::error("config.json: per_layer_config[" + key + "] must be an object");
      for (const auto& [k, v] : o.j.items()) {
        if (k != "head_dim" && k != "num_key_value_heads")
          return Status::error("config.json: per_layer_config[" + key + "] overrides '" + k +
                               "', which g4 does not support (head_dim, num_key_value_heads)");
      }
      h = o.integer("head_dim", h);
      kv = o.integer("num_key_value_heads", kv);
      if (!o.err.ok()) return o.err;
      if (h < 2 || h % 2 != 0 || kv < 1)
        return Status::error("config.json: per_layer_config[" + key + "] is out of range");
    }
    hds.push_back(int(h));
    kvh.push_back(int(kv));
    ffs.push_back(int(ff * ((wide && l >= L - shared) ? 2 : 1)));
  }
  int hd_s = 0, hd_g = 0;
  for (int l = 0; l < L; ++l) {
    int& slot = sl[size_t(l)] ? hd_s : hd_g;
    if (slot != 0 && slot != hds[size_t(l)])
      return Status::error("config.json: layers of one type have different head sizes");
    slot = hds[size_t(l)];
  }
  if (hd_g == 0) hd_g = int(hdg);
  if (hd_s == 0) hd_s = int(hd);
  Rope g = rope_for(c, "full_attention", 1e6, true),
       s = rope_for(c, "sliding_attention", 1e4, false);
  if (!c.err.ok()) return c.err;
  if (!c.has("rope_parameters")) {  // transformers' defaults
    g.type = "proportional";
    g.partial = 0.25;
  }
  if (s.type != "default" || s.partial != 1 || s.factor != 1 || g.factor != 1 ||
      (g.type != "default" && g.type != "proportional") || g.partial <= 0 || g.partial > 1) {
    return Status::error("config.json: RoPE '" + g.type + "'/'" + s.type + "' is not supported");
  }
  *hd_global = hd_g;
  *rope_pairs = g.type == "proportional" ? int(g.partial * hd_g / 2) : hd_g / 2;
  b.str("general.architecture", "gemma4");
  b.str("general.name", name);
  b.u32(p + "context_length", uint32_t(ctx));
  b.u32(p + "embedding_length", uint32_t(d));
  b.u32(p + "block_count", uint32_t(L));
  // Per-layer values as an array only where they differ, as llama.cpp's converter writes them.
  const auto per_layer = [&](const std::string& k, const std::vector<int>& v) {
    if (std::all_of(v.begin(), v.end(), [&](int x) { return x == v[0]; }))
      b.u32(k, uint32_t(v[0]));
    else
      b.arr_i32(k, v);
  };
  per_layer(p + "feed_forward_length", ffs);
  b.u32(p + "attention.head_count", uint32_t(H));
  per_layer(p + "attention.head_count_kv", kvh);
  b.u32(p + "attention.key_length", uint32_t(hd_g));
  b.u32(p + "attention.value_length", uint32_t(hd_g));
  b.u32(p + "attention.key_length_swa", uint32_t(hd_s));
  b.u32(p + "attention.value_length_swa", uint32_t(hd_s));
  b.f32(p + "attention.layer_norm_rms_epsilon", float(c.number("rms_norm_eps", 1e-6)));
  b.u32(p + "attention.sliding_window", uint32_t(W));
  b.arr_bool(p + "attention.sliding_window_pattern", sl);
  b.u32(p + "attention.shared_kv_layers", uint32_t(shared));
  b.u32(p + "embedding_length_per_layer_input", uint32_t(P));
  b.f32(p + "rope.freq_base", float(g.theta));
  b.f32(p + "rope.freq_base_swa", float(s.theta));
  b.u32(p + "rope.dimension_count", uint32_t(hd_g));
  b.u32(p + "rope.dimension_count_swa", uint32_t(hd_s));
  if (c.has("final_logit_softcapping"))
    b.f32(p + "final_logit_softcapping", float(c.number("final_logit_softcapping", 0)));
  // attn_logit_softcapping: Gemma4TextConfig has no such field and transformers' Gemma 4
  // attention never applies it, so a config.json that carries it is read the same way.
  if (flag(c.j, "enable_moe_block")) {
    b.u32(p + "expert_count", uint32_t(c.integer("num_experts", 0, true)));
    b.u32(p + "expert_used_count", uint32_t(c.integer("top_k_experts", 0, true)));
    b.u32(p + "expert_feed_forward_length", uint32_t(c.integer("moe_intermediate_size", 0, true)));
  }
  return c.err;
}

}  // namespace

bool is_hf_checkpoint_dir(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_directory(path, ec) &&
         std::filesystem::is_regular_file(std::filesystem::path(path) / "config.json", ec);
}

Result<HfImage> convert_hf_checkpoint(const std::string& dir, const HfLoadOptions& opts) {
  auto top = read_json(dir + "/config.json");
  if (!top.ok()) return top.status();
  const json& tj = text_config(top.value());
  Cfg c{tj, Status()};
  std::string mt = c.string(tj, "model_type", c.string(top.value(), "model_type", ""));
  if (mt.empty() && top.value().contains("architectures") &&
      top.value()["architectures"].is_array() && !top.value()["architectures"].empty() &&
      top.value()["architectures"][0].is_string()) {
    mt = top.value()["architectures"][0].get<std::string>();
    std::transform(mt.begin(), mt.end(), mt.begin(),
                   [](unsigned char ch) { return char(std::tolower(ch)); });
  }
  if (!c.err.ok()) return c.err;
  const std::string arch = mt.rfind("gemma2", 0) == 0   ? "gemma2"
                           : mt.rfind("gemma3", 0) == 0 ? "gemma3"
                           : mt.rfind("gemma4", 0) == 0 ? "gemma4"
                                                        : "";
  if (arch.empty()) {
    return Status::error(dir + "/config.json: model_type '" + mt +
                         "' is not supported (gemma2, gemma3, gemma4)");
  }
  std::optional<DType> want;
  if (opts.dtype != "auto") {
    auto t = parse_dtype(opts.dtype);
    if (!t.ok()) return t.status();
    want = t.value();
  }
  const std::string name = std::filesystem::path(dir).filename().string();
  ImageBuilder b;
  b.on_progress(opts.progress);
  int rope_pairs = 0, hd_g = 0;
  Status s = arch == "gemma4" ? gemma4_meta(c, b, name, &rope_pairs, &hd_g)
                              : gemma3_meta(c, b, name, arch);
  if (!s.ok()) return Status::error(dir + "/" + s.message());
  auto ck = SafetensorsCheckpoint::open_dir(dir);
  if (!ck.ok()) return ck.status();
  // general.file_type as llama.cpp names the matrices' type (for "auto": the checkpoint's, when
  // all its matrices share one float type).
  std::optional<DType> ftype = want;
  bool mixed = false;
  if (!want) {
    for (const StTensor* t : ck.value()->tensors()) {
      if (t->shape.size() < 2) continue;
      if (!ftype) ftype = t->type;
      mixed = mixed || *ftype != t->type;
    }
  }
  if (ftype && !mixed) {
    b.u32("general.file_type", *ftype == DType::kF32    ? 0
                               : *ftype == DType::kF16  ? 1
                               : *ftype == DType::kBF16 ? 32
                                                        : 7);
  }
  b.u32("general.quantization_version", 2);  // GGML_QNT_VERSION, as llama.cpp's converter
  int64_t vocab_rows = -1;                   // token_embd rows to keep (the tokenizer's size)
  if (opts.tokenizer) {
    auto v = read_hf_vocab(dir, arch);
    if (!v.ok()) return v.status();
    if (v.value()) {
      const HfVocab& hv = *v.value();
      b.str("tokenizer.ggml.model", hv.model);
      b.arr_str("tokenizer.ggml.tokens", hv.tokens);
      b.arr_f32("tokenizer.ggml.scores", hv.scores);
      b.arr_i32("tokenizer.ggml.token_type", hv.types);
      // A BPE vocabulary carries its merges even when there are none (a tokenizer.json with
      // "merges": [] is valid): the gemma4 reader requires the key.
      if (hv.model == "gemma4" || !hv.merges.empty()) b.arr_str("tokenizer.ggml.merges", hv.merges);
      b.u32("tokenizer.ggml.bos_token_id", uint32_t(hv.bos));
      b.u32("tokenizer.ggml.eos_token_id", uint32_t(hv.eos));
      if (hv.unk >= 0) b.u32("tokenizer.ggml.unknown_token_id", uint32_t(hv.unk));
      if (hv.pad >= 0) b.u32("tokenizer.ggml.padding_token_id", uint32_t(hv.pad));
      b.boolean("tokenizer.ggml.add_bos_token", hv.add_bos);
      b.boolean("tokenizer.ggml.add_eos_token", hv.add_eos);
      b.boolean("tokenizer.ggml.add_space_prefix", false);
      if (!hv.chat_template.empty()) b.str("tokenizer.chat_template", hv.chat_template);
      vocab_rows = int64_t(hv.tokens.size());
    }
  }
  // tie_word_embeddings (default true, as in both config classes): the head is the embedding
  // and a stored lm_head.weight is ignored, as transformers ties over it; false: lm_head.weight
  // is the head, written as output.weight (llama.cpp's name).
  const json& topj = top.value();
  const bool tied =
      !((tj.contains("tie_word_embeddings") && tj["tie_word_embeddings"] == false) ||
        (!tj.contains("tie_word_embeddings") && topj.contains("tie_word_embeddings") &&
         topj["tie_word_embeddings"] == false));
  const StTensor* lm_head = nullptr;
  for (const StTensor* t : ck.value()->tensors()) {
    auto g = gguf_name(t->name);
    if (!g.ok()) return Status::error(dir + ": " + g.error());
    std::string gname = g.value();
    if (t->name.size() >= 14 && t->name.compare(t->name.size() - 14, 14, "lm_head.weight") == 0) {
      lm_head = t;
      if (!tied) gname = "output.weight";
    }
    if (gname.empty()) continue;
    const bool keep_f32 =
        t->shape.size() <= 1 || gname.find("ffn_gate_inp.weight") != std::string::npos;
    DType target = keep_f32 ? DType::kF32 : want ? *want : t->type;
    // Q8_0 blocks need rows of whole 32-element blocks; other matrices fall back to f16.
    if (target == DType::kQ8_0 && t->shape.back() % 32 != 0) target = DType::kF16;
    // Matrices with a row per token keep the tokenizer's rows (the engine's vocabulary).
    const bool vocab_matrix = gname == "token_embd.weight" || gname == "output.weight" ||
                              gname == "per_layer_token_embd.weight";
    if (vocab_matrix && vocab_rows >= 0 && t->shape.size() == 2 && vocab_rows > t->shape[0]) {
      return Status::error(dir + ": tokenizer.json has " + std::to_string(vocab_rows) +
                           " tokens but " + t->name + " only " + std::to_string(t->shape[0]) +
                           " rows");
    }
    // Gemma 2 and 3 RMSNorm multiply by (1 + w); GGUF stores the sum (llama.cpp's converters).
    b.tensor(convert(*t, gname, target, arch != "gemma4" && is_gemma3_norm(gname),
                     vocab_matrix ? vocab_rows : -1));
  }
  if (!tied && lm_head == nullptr) {
    return Status::error(dir +
                         ": config.json says tie_word_embeddings: false but the checkpoint "
                         "has no lm_head.weight");
  }
  if (arch == "gemma4" && rope_pairs < hd_g / 2) {
    // llama.cpp's form of proportional partial RoPE: divisor 1 for rotated pairs, 1e30 after.
    ImageTensor r{"rope_freqs.weight", {int64_t(hd_g / 2)}, DType::kF32, size_t(hd_g / 2) * 4, {}};
    r.fill = [n = hd_g / 2, rope_pairs](uint8_t* dst) {
      for (int i = 0; i < n; ++i) {
        const float v = i < rope_pairs ? 1.0f : 1e30f;
        std::memcpy(dst + 4 * i, &v, 4);
      }
    };
    b.tensor(std::move(r));
  }
  return b.build(arch);
}

bool is_quantizer_dtype(const std::string& s) {
  return s == "q4_0" || s == "q5_0" || s == "q4_k" || s == "q6_k";
}

Result<std::unique_ptr<GgufFile>> load_hf_checkpoint(const std::string& dir,
                                                     const HfLoadOptions& opts) {
  if (is_quantizer_dtype(opts.dtype)) {
    // The block types g4 quantize writes: the checkpoint as stored (lossless), re-encoded by
    // the quantizer (src/model/quantize.h) into a temporary GGUF that is mapped and unlinked,
    // so the weights are exactly those of `g4 quantize` on the converted file.
    HfLoadOptions o = opts;
    o.dtype = "auto";
    auto img = load_hf_checkpoint(dir, o);
    if (!img.ok()) return img.status();
    static std::atomic<int> counter{0};
    const std::string tmp =
        (std::filesystem::temp_directory_path() /
         ("g4_hf_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".gguf"))
            .string();
    QuantizeOptions q;
    q.target = parse_quant_type(opts.dtype).value();
    auto r = quantize_gguf(*img.value(), dir, tmp, q);
    if (!r.ok()) return r.status();
    auto f = GgufFile::open(tmp);
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    if (!f.ok()) return f.status();
    return f;
  }
  auto img = convert_hf_checkpoint(dir, opts);
  if (!img.ok()) return img.status();
  const size_t n = img.value().size;
  return GgufFile::parse_owned(std::move(img.value().data), n, dir);
}

}  // namespace g4
