// Binding of GGUF tensors to the Gemma 3 weight structure. One tensor list per block
// (for_each_tensor) drives loading, shape validation and memory accounting.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/matmul.h"
#include "model/config.h"

namespace g4 {

class GgufFile;

struct Gemma3Layer {
  std::vector<float> attn_norm;       // [d]
  WeightView q, k, v, o;              // q: [H*hd, d]  k, v: [Hkv*hd, d]  o: [d, H*hd]
  std::vector<float> q_norm, k_norm;  // [hd]
  std::vector<float> post_attn_norm;  // [d]
  std::vector<float> ffn_norm;        // [d]
  WeightView gate, up, down;          // gate, up: [ff, d]  down: [d, ff]
  std::vector<float> post_ffw_norm;   // [d]
};

struct Gemma3Weights {
  WeightView tok_embd;             // [vocab, d], also the tied LM head
  std::vector<float> output_norm;  // [d]
  std::vector<Gemma3Layer> layers;
};

// A tensor slot: GGUF name, expected ggml shape {ne0, ne1} (ne1 = 0 for 1-D), and where it goes.
struct TensorSlot {
  std::string name;
  int64_t ne0 = 0, ne1 = 0;
  WeightView* matrix = nullptr;       // 2-D weights stay in the file (any supported type)
  std::vector<float>* vec = nullptr;  // 1-D weights are converted to f32
};

void for_each_tensor(const ModelConfig& c, Gemma3Weights& w,
                     const std::function<void(TensorSlot&)>& fn);

Result<Gemma3Weights> bind_gemma3(const GgufFile& f, const ModelConfig& c);

}  // namespace g4
