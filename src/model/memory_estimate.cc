#include "model/memory_estimate.h"

#include "kernels/attention.h"

#include <algorithm>
#include <cstring>

#include "io/gguf.h"
#include "kernels/dtype.h"
#include "model/weights.h"

namespace g4 {

std::vector<KvLayerGeometry> kv_geometry_for(const ModelConfig& c) {
  std::vector<KvLayerGeometry> g;
  const bool g4 = c.arch == "gemma4";
  for (int l = 0; l < c.n_layers; ++l) {
    const size_t i = size_t(l);
    const int window = c.layer_sliding[i] ? c.window : 0;
    if (g4)
      g.push_back({c.layer_kv_heads[i], c.layer_head_dim[i], window, c.kv_donor[i]});
    else
      g.push_back({c.n_kv_heads, c.head_dim, window});
  }
  return g;
}

namespace {

struct PresetEntry {
  const char* name;
  const char* family;  // gemma3, gemma4, brief
  const char* size;
  bool k_eq_v;  // global layers have no attn_v (31B trunk)
};
const PresetEntry kPresets[] = {
    {"gemma3-270m", "gemma3", "270m", false},
    {"gemma3-1b", "gemma3", "1b", false},
    {"gemma3-4b", "gemma3", "4b", false},
    {"gemma3-12b", "gemma3", "12b", false},
    {"gemma3-27b", "gemma3", "27b", false},
    {"gemma4-e2b", "gemma4", "e2b", false},
    {"gemma4-e4b", "gemma4", "e4b", false},
    {"gemma4-31b", "gemma4", "31b", true},
    {"gemma4-26b-a4b", "gemma4", "26b-a4b", true},
    {"brief-2b", "brief", "2b", false},
    {"brief-9b", "brief", "9b", false},
    {"brief-27b", "brief", "27b", false},
    {"brief-270b", "brief", "270b", true},
};

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// llama.cpp's use_more_bits(i_layer, n_layers) (src/llama-quant.cpp): Q4_K_M gives these
// attn_v / ffn_down tensors Q6_K.
bool use_more_bits(int i, int n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

// One tensor of a preset shape: its name, elements per row, rows.
struct ShapeTensor {
  std::string name;
  int64_t in = 0, rows = 0;
  bool matrix = false;
};

// The loader's tensor list for a config, without a file: optional tensors a Google checkpoint
// has (rope_freqs, layer_output_scale, fused expert gate_up) are counted; the untied head,
// and attn_v on K=V global layers, are not.
std::vector<ShapeTensor> shape_tensors(const ModelConfig& c, bool k_eq_v) {
  std::vector<ShapeTensor> out;
  static uint8_t dummy;
  auto visit = [&](TensorSlot& s) {
    if (s.name == "output.weight") return;
    if (k_eq_v && ends_with(s.name, "attn_v.weight")) {
      const int layer = std::atoi(s.name.c_str() + 4);  // "blk.N."
      if (!c.layer_sliding[size_t(layer)]) return;
    }
    if (s.matrix != nullptr) s.matrix->data = &dummy;  // bound: skips the unfused experts
    const int64_t rows = s.matrix == nullptr ? 1 : s.ne1 * std::max<int64_t>(1, s.ne2);
    out.push_back({s.name, s.ne0, rows, s.matrix != nullptr});
  };
  if (c.arch == "gemma4") {
    Gemma4Weights w;
    for_each_tensor(c, w, visit);
  } else {
    Gemma3Weights w;
    for_each_tensor(c, w, visit);
  }
  return out;
}

// The type a Q4_K_M file gives a tensor (see the header); idx/n: its use_more_bits counters.
DType q4_k_m_type(const ShapeTensor& t, bool more_bits) {
  if (!t.matrix || ends_with(t.name, "ffn_gate_inp.weight")) return DType::kF32;
  if (t.name == "per_layer_model_proj.weight") return DType::kF16;
  const bool table = t.name == "token_embd.weight" || t.name == "per_layer_token_embd.weight";
  const DType want = table || more_bits ? DType::kQ6_K : DType::kQ4_K;
  if (t.in % 256 == 0) return want;
  return want == DType::kQ6_K ? DType::kQ8_0 : DType::kQ5_0;
}

}  // namespace

std::vector<std::string> footprint_preset_names() {
  std::vector<std::string> v;
  for (const PresetEntry& p : kPresets) v.push_back(p.name);
  return v;
}

bool is_footprint_preset(const std::string& name) {
  for (const PresetEntry& p : kPresets)
    if (name == p.name) return true;
  return false;
}

Result<ModelFootprint> footprint_from_preset(const std::string& name,
                                             const std::string& weight_type) {
  const PresetEntry* e = nullptr;
  for (const PresetEntry& p : kPresets)
    if (name == p.name) e = &p;
  if (e == nullptr) {
    std::string list;
    for (const PresetEntry& p : kPresets) list += std::string(list.empty() ? "" : ", ") + p.name;
    return Status::error("unknown preset '" + name + "' (" + list + ")");
  }
  const std::string fam = e->family;
  auto c = fam == "gemma3"   ? gemma3_preset(e->size)
           : fam == "gemma4" ? gemma4_preset(e->size)
                             : brief_preset(e->size);
  if (!c.ok()) return c.status();
  if (weight_type != "q4_k_m" && weight_type != "q8_0" && weight_type != "bf16" &&
      weight_type != "f16")
    return Status::error("unknown weight type '" + weight_type + "' (q4_k_m, q8_0, bf16, f16)");
  ModelFootprint m;
  m.config = std::move(c).value();
  m.source = name;
  m.weight_type = weight_type;
  m.float_matmuls = weight_type == "bf16" || weight_type == "f16";
  const std::vector<ShapeTensor> ts = shape_tensors(m.config, e->k_eq_v);
  const int n_layers = m.config.n_layers;
  int n_v = 0;
  for (const ShapeTensor& t : ts) n_v += ends_with(t.name, "attn_v.weight") ? 1 : 0;
  int i_v = 0;
  for (const ShapeTensor& t : ts) {
    const int64_t n = t.in * t.rows;
    m.n_params += n;
    DType type = DType::kF32;
    if (weight_type == "q4_k_m") {
      bool more = false;
      if (ends_with(t.name, "attn_v.weight")) more = use_more_bits(i_v++, n_v);
      if (ends_with(t.name, "ffn_down.weight") || ends_with(t.name, "ffn_down_exps.weight"))
        more = use_more_bits(std::atoi(t.name.c_str() + 4), n_layers);
      type = q4_k_m_type(t, more);
    } else if (t.matrix && !ends_with(t.name, "ffn_gate_inp.weight")) {
      type = weight_type == "q8_0"   ? DType::kQ8_0
             : weight_type == "bf16" ? DType::kBF16
                                     : DType::kF16;
    }
    const int64_t bytes = int64_t(row_bytes(type, t.in)) * t.rows;
    m.weight_bytes += bytes;
    // Resident: R16 packing adds a 320-byte head per 256 columns and 16 rows to K-quants
    // (4.625 / 6.625 bits); the PLE table stays mapped; 1-D tensors are f32 already.
    int64_t resident = bytes;
    if (t.name == "per_layer_token_embd.weight") {
      m.mapped_bytes += bytes;
      resident = 0;
    } else if (t.matrix && t.rows % 16 == 0 && t.in % 256 == 0) {
      if (type == DType::kQ4_K) resident = t.in / 256 * (t.rows / 16) * (16 * 144 + 64);
      if (type == DType::kQ6_K) resident = t.in / 256 * (t.rows / 16) * (16 * 210 + 32);
    }
    m.resident_bytes += resident;
  }
  return m;
}

Result<ModelFootprint> footprint_from_file(const std::string& path) {
  auto f = GgufFile::open(path);
  if (!f.ok()) return f.status();
  const GgufFile& file = *f.value();
  auto c = config_from_gguf(file);
  if (!c.ok()) return Status::error(path + ": " + c.error());
  ModelFootprint m;
  m.config = std::move(c).value();
  m.source = path;
  m.from_file = true;
  m.weight_type = "file";
  const bool untied = file.tensor("output.weight") != nullptr;
  for (const GgufTensor& t : file.tensors()) {
    m.n_params += t.n_elements();
    m.weight_bytes += int64_t(t.nbytes);
    if (t.name == "per_layer_token_embd.weight" || (untied && t.name == "token_embd.weight"))
      m.mapped_bytes += int64_t(t.nbytes);
  }
  // Bind as the loader does, then size pack_matrices' arena; 1-D vectors are f32 copies.
  int64_t vectors = 0;
  auto measure = [&](auto w) -> Status {
    auto each = [&](const std::function<void(TensorSlot&)>& fn) {
      for_each_tensor(m.config, w, fn);
    };
    Status s = bind_slots(file, each);
    if (!s.ok()) return s;
    each([&](TensorSlot& s) {
      if (s.vec != nullptr) vectors += int64_t(s.vec->size() * sizeof(float));
      if (s.matrix != nullptr && s.matrix->data != nullptr) {
        const DType t = s.matrix->type;
        if (t == DType::kF32 || t == DType::kF16 || t == DType::kBF16) m.float_matmuls = true;
      }
    });
    m.resident_bytes = int64_t(packed_arena_bytes(file, each)) + vectors;
    return Status();
  };
  Status s = m.config.arch == "gemma4" ? measure(Gemma4Weights{}) : measure(Gemma3Weights{});
  if (!s.ok()) return Status::error(path + ": " + s.message());
  return m;
}

ActivationPlan plan_activations(const ModelConfig& c, int64_t step_tokens, int64_t logit_rows,
                                int64_t n_ctx, int threads, bool float_matmuls) {
  ActivationPlan a;
  const int64_t T = step_tokens, d = c.model_dim, H = c.n_heads, L = c.n_layers;
  a.step_tokens = T;
  a.logit_rows = logit_rows;
  const bool g4 = c.arch == "gemma4";
  int64_t max_qd = 0, max_kvd = 0, max_ff = 0, max_scores = 0, max_in = d;
  for (int l = 0; l < c.n_layers; ++l) {
    const size_t i = size_t(l);
    const int64_t hd = g4 ? c.layer_head_dim[i] : c.head_dim;
    const int64_t kvh = g4 ? c.layer_kv_heads[i] : c.n_kv_heads;
    const int64_t ff = g4 ? c.layer_ff_dim[i] : c.ff_dim;
    max_qd = std::max(max_qd, H * hd);
    max_kvd = std::max(max_kvd, kvh * hd);
    max_ff = std::max(max_ff, ff);
    // attention_op's scratch per thread: a query block's rows and scores over one key chunk,
    // a chunk's rows and stats (attention_split_scratch_floats).
    const int64_t keys = attention_chunk_keys(c.layer_sliding[i] ? c.window : 0, n_ctx);
    const AttentionArgs args{int(H), int(kvh), int(hd)};
    const int nq = int(std::min<int64_t>(T, attention_query_block(int(H / kvh), int(hd), keys)));
    max_scores = std::max(max_scores, int64_t(attention_split_scratch_floats(args, nq, keys)));
  }
  max_in = std::max({max_in, max_qd, max_ff});
  // Floats of ExecContext::act (model/activations.h), as the forwards grow them.
  int64_t stream = 2 * T * d;  // x, h
  if (!g4) {
    stream += 2 * T * c.head_dim;  // RoPE tables, local and global
  } else {
    stream += T * (c.rope_dims_local + c.rope_dims_global);  // RoPE tables
    if (c.n_experts > 0) stream += 2 * T * d;                // ffn_norm(x), pre_ffw_norm_2(x)
    if (c.ple_dim > 0) {
      const int64_t LP = L * c.ple_dim;
      // ple, ple_proj, ple_gate, one embedding row per thread
      stream += 2 * T * LP + T * c.ple_dim + int64_t(threads) * LP;
    }
  }
  int64_t ffn = 2 * T * max_ff;  // gate, up
  if (g4 && c.n_experts > 0) {
    const int64_t E = c.n_experts, k = c.n_experts_used, fe = c.expert_ff_dim;
    // m2, router input, expert outputs; gate (or router logits, or shared GeGLU row);
    // up (or [k, ff] one-token products)
    ffn += 3 * T * d + std::max({T * E, T * fe, max_ff}) + std::max(k * fe, T * fe);
  }
  a.stream = 4 * stream;
  a.ffn = 4 * ffn;
  a.attention = 4 * (2 * T * max_qd + 2 * T * max_kvd);  // q, attention out, k, v
  // Chunk-parallel decode (fewer than 2 jobs per thread): every chunk's rows and stats.
  a.attention += 4 * 2 * int64_t(threads) * attention_key_chunks(0, n_ctx - 1) * (max_qd + 2 * H);
  a.scores = 4 * int64_t(threads) * max_scores;
  // Prepared activations: int8 blocks (34 bytes per 32 values, Q8_0 layout, an upper bound
  // for Q8_K and the R16 layouts) or f32 for float weights.
  a.matmul = T * (float_matmuls ? 4 * max_in : (max_in + 31) / 32 * 36);
  a.logits = 4 * logit_rows * (int64_t(c.vocab_size) + d);
  a.total = a.stream + a.ffn + a.attention + a.scores + a.matmul + a.logits;
  return a;
}

int64_t runtime_overhead_bytes(const ModelConfig& c) {
  // Calibrated on the default model (Gemma 3 270M, 262144 pieces): `g4 --version` peaks at
  // 9.6 MiB (code, libraries); `g4 run` with a prompt filling 2K and 8K contexts peaked
  // 40.4 MiB above weights + KV + buffers, the same at both sizes. Per vocabulary entry: the
  // tokenizer's strings, scores and maps, the constraint compiler's vocabulary, the
  // sampler's candidates, and the embedding rows the prompt touched in the file mapping.
  return (int64_t(10) << 20) + int64_t(c.vocab_size) * 120;
}

int64_t plan_step_tokens(int64_t max_chunk, int64_t parallel) {
  if (parallel <= 1) return max_chunk;
  return std::max(max_chunk, parallel - 1 + std::min<int64_t>(16, max_chunk));
}

MemoryPlan plan_memory(const ModelFootprint& m, const MemoryPlanOptions& o) {
  MemoryPlan p;
  p.kv = plan_kv(kv_geometry_for(m.config), o.kv);
  p.act = plan_activations(m.config, plan_step_tokens(o.kv.max_chunk, o.kv.parallel), o.kv.parallel,
                           o.kv.n_ctx, o.threads, m.float_matmuls);
  p.weights = m.resident_bytes;
  p.overhead = runtime_overhead_bytes(m.config);
  p.total = p.kv.bytes + p.act.total + p.weights + p.overhead;
  return p;
}

}  // namespace g4
