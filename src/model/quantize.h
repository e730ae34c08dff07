// `g4 quantize`: re-encode a GGUF model's weight matrices into one target type, following
// llama-quantize's per-tensor rules that matter for Gemma (src/llama-quant.cpp):
//  - only tensors named "*weight" with 2+ dimensions are converted; 1-D tensors and norms
//    are copied unchanged (F32 in every Gemma file), and so are the MoE router
//    (ffn_gate_inp) and the Gemma 4 PLE projection (per_layer_model_proj);
//  - the tied token embedding (no output.weight) takes the output-tensor rule of a quantised
//    request: Q8_0 if its rows are not a multiple of the target's block, else Q6_K unless the
//    target is Q8_0;
//  - a row width that is not a multiple of the chosen type's block falls back: Q4_K -> Q5_0,
//    Q6_K -> Q8_0, then F16 if still not divisible (llama.cpp throws for the 32-blocks; g4
//    falls back to F16 instead);
//  - a tensor already stored in its chosen type is copied byte for byte.
// Other tensors are dequantised to f32 (kernels/quant.h) and requantised by the reference
// quantisers (kernels/quantize_ref.h), so the output is a deterministic function of the input.
// Unlike llama-quantize's Q4_K_S/Q4_K_M presets, `q4_k` does not promote any tensor to a
// higher type.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "io/gguf.h"

namespace g4 {

// Target names accepted by `g4 quantize --type`: f16 bf16 q8_0 q4_0 q5_0 q4_k q6_k.
Result<DType> parse_quant_type(const std::string& name);
// llama.cpp's LLAMA_FTYPE for a target (general.file_type): F16 1, Q4_0 2, Q8_0 7, Q5_0 8,
// Q4_K 14 (MOSTLY_Q4_K_S, the closest preset), Q6_K 18, BF16 32.
uint32_t llama_ftype(DType target);

struct TensorPlan {
  std::string name;
  DType from, to;
  bool fallback = false;   // the row width forced a type other than the rule's first choice
  bool converted = false;  // false: bytes copied unchanged
};

// The type each tensor of `in` gets for `target` (the rules above).
std::vector<TensorPlan> plan_quantization(const GgufFile& in, DType target);

struct QuantizeOptions {
  DType target = DType::kQ8_0;
  int n_threads = 0;  // 0 = all cores
  // Called after each chunk of work: bytes of output written so far, total output bytes.
  std::function<void(uint64_t, uint64_t)> progress;
};

struct QuantizeReport {
  std::vector<TensorPlan> plan;
  std::map<std::string, int> tensors_by_type;  // output type name -> count
  int n_fallback = 0;
  uint64_t in_bytes = 0, out_bytes = 0;
};

Result<QuantizeReport> quantize_model(const std::string& in_path, const std::string& out_path,
                                      const QuantizeOptions& opt);
// The same from a GGUF already open (e.g. a converted Hugging Face image); `in_name` names it
// in errors.
Result<QuantizeReport> quantize_gguf(const GgufFile& in, const std::string& in_name,
                                     const std::string& out_path, const QuantizeOptions& opt);

}  // namespace g4
