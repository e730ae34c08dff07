// Binding of GGUF tensors to the Gemma 3 weight structure. One tensor list per block
// (for_each_tensor) drives loading, shape validation and memory accounting.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/matmul.h"
#include "kernels/repack.h"
#include "model/config.h"

namespace g4 {

class GgufFile;

struct Gemma3Layer {
  std::vector<float> attn_norm;       // [d]
  WeightView q, k, v, o;              // q: [H*hd, d]  k, v: [Hkv*hd, d]  o: [d, H*hd]
  std::vector<float> q_norm, k_norm;  // [hd]; empty without QK-norm (gemma2)
  std::vector<float> post_attn_norm;  // [d]
  std::vector<float> ffn_norm;        // [d]
  WeightView gate, up, down;          // gate, up: [ff, d]  down: [d, ff]
  std::vector<float> post_ffw_norm;   // [d]
};

struct Gemma3Weights {
  WeightView tok_embd;             // [vocab, d], also the LM head when `output` is absent
  WeightView output;               // [vocab, d] untied LM head (output.weight), or empty
  std::vector<float> output_norm;  // [d]
  std::vector<Gemma3Layer> layers;
  std::shared_ptr<PackedStore> packed;  // R16 copies (pack_matrices), if any
};

// A tensor slot: GGUF name, expected ggml shape {ne0, ne1} (ne1 = 0 for 1-D), and where it goes.
struct TensorSlot {
  std::string name;
  int64_t ne0 = 0, ne1 = 0;
  WeightView* matrix = nullptr;       // 2-D weights stay in the file (any supported type)
  std::vector<float>* vec = nullptr;  // 1-D weights are converted to f32
  int64_t ne2 = 0;                    // > 0: 3-D {ne0, ne1, ne2}, bound as ne1*ne2 rows
  bool optional = false;              // absent tensor leaves the slot empty (data == nullptr)
};

// Binds every slot `for_each` produces: checks presence, type and shape, fills the views.
Status bind_slots(const GgufFile& f,
                  const std::function<void(const std::function<void(TensorSlot&)>&)>& for_each);

// Gemma 4 (spec §2.3, §3.3). Optional parts are empty views / vectors when absent.
struct Gemma4Layer {
  std::vector<float> attn_norm;       // [d]
  WeightView q, k, v, o;              // v empty on K=V layers; k, v empty on KV-shared layers
  std::vector<float> q_norm, k_norm;  // [hd_l]
  std::vector<float> post_attn_norm, ffn_norm, post_ffw_norm;  // [d]
  WeightView gate, up, down;                                   // dense (or shared) GeGLU MLP
  // MoE (26B-A4B-like): router, extra norms, experts stored as ne1*ne2 rows.
  WeightView router;  // [n_experts, d]
  std::vector<float> router_scale, pre_ffw_norm_2, post_ffw_norm_1, post_ffw_norm_2;  // [d]
  WeightView gate_up_exps;          // [n_experts * 2*ffe, d]: per expert gate rows then up rows
  WeightView gate_exps, up_exps;    // alternative unfused layout [n_experts * ffe, d]
  WeightView down_exps;             // [n_experts * d, ffe]
  std::vector<float> expert_scale;  // [n_experts]
  // Per-layer embeddings (E2B/E4B-like).
  WeightView inp_gate;             // [P, d]
  WeightView proj;                 // [d, P]
  std::vector<float> post_norm;    // [d]
  std::vector<float> layer_scale;  // [1]; empty = 1.0
};

struct Gemma4Weights {
  WeightView tok_embd;  // [vocab, d], also the LM head when `output` is absent
  WeightView output;    // [vocab, d] untied LM head (output.weight), or empty
  std::vector<float> output_norm;
  std::vector<float> rope_freqs;     // [rope_dims_global/2] frequency divisors; empty = none
  WeightView ple_embd;               // [vocab, L*P]
  WeightView ple_model_proj;         // [L*P, d]
  std::vector<float> ple_proj_norm;  // [P]
  std::vector<Gemma4Layer> layers;
  std::shared_ptr<PackedStore> packed;  // R16 copies (pack_matrices), if any
};

void for_each_tensor(const ModelConfig& c, Gemma4Weights& w,
                     const std::function<void(TensorSlot&)>& fn);

Result<Gemma4Weights> bind_gemma4(const GgufFile& f, const ModelConfig& c);

void for_each_tensor(const ModelConfig& c, Gemma3Weights& w,
                     const std::function<void(TensorSlot&)>& fn);

Result<Gemma3Weights> bind_gemma3(const GgufFile& f, const ModelConfig& c);

// The LM head: the untied output.weight when the file has one, else the tied embedding.
inline const WeightView& lm_head(const WeightView& output, const WeightView& tok_embd) {
  return output.data != nullptr ? output : tok_embd;
}

// Checks that `f` holds a model g4 can run: its config and every tensor's presence, type and
// shape, without packing anything (g4 convert runs it before writing a file).
Status validate_model_file(const GgufFile& f);

// Gives every packable 2-D matrix an R16 copy (kernels/repack.h) when this CPU runs the
// AVX2 or AVX-512 VNNI kernels, and returns the mapped source pages of fully packed tensors to the
// kernel (only exact mode and row lookups read them again). Expert stacks stay as stored.
// G4_PACK=0 turns packing off, G4_PACK=q8 packs Q8_0 matrices only (A/B benchmarks).
// Bytes pack_matrices would put in its arena for the same slots (bound views): the resident
// copy of the weights (g4 plan).
size_t packed_arena_bytes(
    const GgufFile& f,
    const std::function<void(const std::function<void(TensorSlot&)>&)>& for_each);

std::shared_ptr<PackedStore> pack_matrices(
    const GgufFile& f,
    const std::function<void(const std::function<void(TensorSlot&)>&)>& for_each);

}  // namespace g4
