// Engine options for comparisons against float32 references (transformers): f32 activations
// in every matmul, f32 K/V, the exact sqrt(d) embedding scale, 2 threads, a small context.
#pragma once
#include <string>

#include "g4/engine.h"

namespace g4 {

inline EngineOptions exact_options(const std::string& path) {
  EngineOptions o;
  o.model_path = path;
  o.n_threads = 2;
  o.n_ctx = 64;
  o.max_chunk = 64;
  o.exact = true;                      // f32 activations
  o.kv_f32 = true;                     // f32 K/V: the reference keeps K/V in float32
  o.embed_scale = EmbedScale::kExact;  // float32 HF computes sqrt(d) unrounded
  return o;
}

}  // namespace g4
