// Model hyperparameters: plain data read from the checkpoint (ref: gemma-architecture.md §1, §3.2).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace g4 {

class GgufFile;

enum class EmbedScale { kBf16Rounded, kExact };

struct ModelConfig {
  std::string arch;  // "gemma2" | "gemma3" | "gemma4"
  std::string name;
  int n_layers = 0;
  int model_dim = 0;
  int ff_dim = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int vocab_size = 0;
  int window = 0;
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-6f;
  float rope_theta_global = 1e6f;
  float rope_theta_local = 1e4f;
  float rope_scale_global = 1.f;  // linear factor (positions divided by it) on global layers
  float query_scale = 0.f;        // query_pre_attn_scalar^-0.5
  float final_softcap = 0.f;
  float attn_softcap = 0.f;         // attention logit soft-cap (gemma2; 0 = none)
  bool qk_norm = true;              // RMSNorm on q and k heads (gemma3/4; not gemma2)
  std::vector<bool> layer_sliding;  // per layer: true = sliding window

  // Gemma 4 (spec §1.2, §2.3-2.7, §3.2); empty / zero for gemma3. For gemma4, head_dim is the
  // global layers' head size and n_kv_heads / ff_dim those of layer 0; the per-layer vectors
  // (n_layers entries each) are authoritative.
  std::vector<int> layer_head_dim, layer_kv_heads, layer_ff_dim;
  std::vector<int>
      kv_donor;  // -1: the layer owns its KV cache; else the layer whose cache it reads
  int head_dim_swa = 0;
  int rope_dims_global = 0, rope_dims_local = 0;  // rotated span (rope.dimension_count[_swa])
  int n_kv_shared = 0;                            // last n layers read a donor's cache
  int ple_dim = 0;                                // per-layer-embedding width P (0: none)
  int n_experts = 0, n_experts_used = 0, expert_ff_dim = 0;  // MoE (0: dense)
  bool expert_swiglu = false;  // experts use SiLU instead of GELU-tanh (not in Google's models)

  // bf16(sqrt(model_dim)) as HF/gemma.cpp (default) or exact sqrt as llama.cpp (spec §2.6).
  float embed_scale(EmbedScale mode) const;
  std::string summary() const;
};

// gemma2 and gemma3 metadata (one reader: Gemma 2 is Gemma 3's forward without QK-norm, with
// an attention soft-cap, one RoPE theta and a period-2 layer pattern); gemma4 is delegated.
Result<ModelConfig> config_from_gguf(const GgufFile& f);

// Gemma 4 metadata (called by config_from_gguf for general.architecture = gemma4).
Result<ModelConfig> gemma4_config_from_gguf(const GgufFile& f);

// Known Gemma 4 shapes (spec §1.2): e2b, e4b, 31b, 26b-a4b; per-layer vectors, KV donors and
// double-wide MLPs resolved exactly as gemma4_config_from_gguf does. Overrides (0 / empty =
// keep) reshape a preset, e.g. the brief's MoE bench shape {8 experts, top-2, SwiGLU}.
struct Gemma4PresetOverrides {
  int n_experts = 0, n_experts_used = 0, expert_ff_dim = 0;
  int swiglu = -1;        // -1 keep, 0 GeGLU, 1 SwiGLU experts
  int window = 0;         // sliding window W
  int global_period = 0;  // layer i is global iff (i + 1) % period == 0 (+ last layer)
  int64_t n_ctx = 0;      // context length
};
Result<ModelConfig> gemma4_preset(const std::string& size, const Gemma4PresetOverrides& o = {});
// Per-layer derivations shared by the GGUF reader and the presets: head sizes from the layer
// types, and KV donors (HF rule: the last non-shared layer of the same type).
Status gemma4_finish_layers(ModelConfig& c);

// The product brief's family (../shared/docs/product-brief.txt: dense 2B/9B/27B, a 270B MoE
// with 8 routed experts, 2-3 active), which Google has not published, as gemma4-architecture
// shapes: the dense ones take Gemma 2 2B/9B/27B's published dimensions (layers, width, heads,
// head size, FFN) with Gemma 4's 5:1 sliding/global pattern (last layer global); the 270B MoE
// is the 31B trunk with 8 SwiGLU experts (top-2) of width 30720 beside its dense MLP
// (~268B parameters, ~90B active). Sizes: 2b, 9b, 27b, 270b. For planning and shape tests.
Result<ModelConfig> brief_preset(const std::string& size);

// Known Gemma 3 shapes (for tests, docs and `g4 inspect`): 270m, 1b, 4b, 12b, 27b.
Result<ModelConfig> gemma3_preset(const std::string& size);

}  // namespace g4
