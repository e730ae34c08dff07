// One forward step's activations, by name (as gemma.cpp's Activations): every architecture
// keeps the same things in the same buffers. Each grows to the largest step seen (sizes come
// from the config and the step's token count T), so a steady decode step allocates nothing;
// src/model/memory_estimate.cc counts the same buffers for `g4 plan`.
#pragma once
#include <vector>

namespace g4 {

struct Activations {
  std::vector<float> x;       // residual stream [T, d]
  std::vector<float> h;       // a block's normed input, then its output [T, d]
  std::vector<float> rope;    // RoPE cos | sin per token: local [T][n_rot_l], global [T][n_rot_g]
  std::vector<float> q;       // queries [T, H * hd]
  std::vector<float> k, v;    // keys, values of this step [T, Hkv * hd]
  std::vector<float> att;     // attention output [T, H * hd]
  std::vector<float> scores;  // attention scratch, one slice per pool thread
  std::vector<float> att_chunks;  // chunk-parallel decode: key chunks' rows and stats
  std::vector<float> gate, up;    // gated MLP [T, ff]
  std::vector<float> ffn_in;      // MoE layers: ffn_norm(x) [T, d], then pre_ffw_norm_2(x) [T, d]
  std::vector<float> experts;     // MoE layers: the routed experts' output [T, d]
  std::vector<float> ple;         // per-layer embedding inputs [T, L * P]
  std::vector<float> ple_proj;    // their projection from x [T, L * P]
  std::vector<float> ple_tok;     // one token's per-layer embedding row [L * P]
  std::vector<float> ple_gate;    // one layer's PLE gate [T, P]
  std::vector<float> head_in;     // output_norm(x) of the rows that want logits [R, d]
  // MoE dispatch (moe.cc)
  std::vector<float> moe_in;  // router input, then gathered expert inputs [T, d]
  std::vector<float> moe_a;   // router logits | shared GeGLU row | expert gate [T, max]
  std::vector<float> moe_b;   // one token's [k, ff] products | expert up [T, ff]
  std::vector<float> moe_y;   // expert outputs [T, d]
};

inline float* grow(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

}  // namespace g4
