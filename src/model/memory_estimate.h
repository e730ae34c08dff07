// Memory estimate of a model run (`g4 plan`): weights, KV (runtime/memory_plan.h), the
// forward's working buffers and the process's fixed cost, for a GGUF file or a preset shape.
//
// Weights: a file's tensor data bytes, and the resident copy after loading (the arena of
// pack_matrices: R16 packing adds 1/36 to Q4_K and 1/52 to Q6_K; tables read by row stay
// mapped and count only as touched). Presets: parameter counts from the loader's own tensor
// list (for_each_tensor) times the bytes of a weight type; q4_k_m follows llama-quantize's
// Q4_K_M mix (Q4_K; Q6_K for the embedding tables and for attn_v / ffn_down in the
// use_more_bits layers; Q5_0 / Q8_0 where a row is not a multiple of 256; 1-D tensors and the
// MoE router f32, the PLE projection f16), which matches llama.cpp's files within ~1%.
// Activations: the ExecContext buffers gemma3.cc / gemma4.cc / moe.cc grow for a step of
// step_tokens tokens (they keep their high-water mark), the per-thread attention scores,
// prepared matmul activations and the logit rows. Pure functions; thread-safe.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/config.h"
#include "runtime/memory_plan.h"

namespace g4 {

// The KV geometry Model::kv_geometry() returns for this config (gemma3 and gemma4).
std::vector<KvLayerGeometry> kv_geometry_for(const ModelConfig& c);

struct ModelFootprint {
  ModelConfig config;
  std::string source;  // file path or preset name
  bool from_file = false;
  std::string weight_type;     // presets: q4_k_m, q8_0, bf16, f16; files: "file"
  int64_t n_params = 0;        // weight values (matrices and vectors)
  int64_t weight_bytes = 0;    // tensor data as stored (file) or as the type gives (preset)
  int64_t resident_bytes = 0;  // after loading (packed arena + f32 vectors)
  // Tables only looked up by row (the PLE table, an untied embedding): left in the file
  // mapping, resident only as rows are touched; not in resident_bytes.
  int64_t mapped_bytes = 0;
  bool float_matmuls = false;  // some matrix is f32/f16/bf16: f32 prepared activations
};

// Preset names: gemma3-{270m,1b,4b,12b,27b}, gemma4-{e2b,e4b,31b,26b-a4b},
// brief-{2b,9b,27b,270b}.
std::vector<std::string> footprint_preset_names();
bool is_footprint_preset(const std::string& name);
// weight_type: q4_k_m, q8_0, bf16, f16.
Result<ModelFootprint> footprint_from_preset(const std::string& name,
                                             const std::string& weight_type);
// A GGUF file (config and tensor infos only; nothing is packed).
Result<ModelFootprint> footprint_from_file(const std::string& path);

struct ActivationPlan {
  int64_t step_tokens = 0;  // tokens of the largest step
  int64_t logit_rows = 0;   // rows of logits per step (one per sequence)
  int64_t stream = 0;       // residual stream, norms, RoPE angles, per-layer inputs [T, ...]
  int64_t attention = 0;    // q, k, v, attention output [T, ...]
  int64_t ffn = 0;          // gate/up (and MoE) [T, ff]
  int64_t scores = 0;       // attention scores, per thread [group * n_ctx + head_dim]
  int64_t matmul = 0;       // prepared activations [T, widest input]
  int64_t logits = 0;       // [rows, vocab] + the normed rows
  int64_t total = 0;
};

// step_tokens: tokens in one forward step (CLI: max_chunk; server: see MemoryPlanOptions).
ActivationPlan plan_activations(const ModelConfig& c, int64_t step_tokens, int64_t logit_rows,
                                int64_t n_ctx, int threads, bool float_matmuls);

// The process without model or KV: code, libraries, thread stacks, the tokenizer's tables
// (per vocabulary entry) and the constraint compiler. Calibrated on the default model
// (docs: README, g4 plan).
int64_t runtime_overhead_bytes(const ModelConfig& c);

struct MemoryPlanOptions {
  KvPlanOptions kv;  // n_ctx, parallel, max_chunk, ring_slack, types, block size
  int threads = 2;
};

struct MemoryPlan {
  KvPlan kv;
  ActivationPlan act;
  int64_t weights = 0;   // resident weights
  int64_t overhead = 0;  // runtime_overhead_bytes
  int64_t total = 0;
};

// Tokens of the largest step: max_chunk for one sequence; the server adds decoders beside a
// 16-token prompt slice (Scheduler::step).
int64_t plan_step_tokens(int64_t max_chunk, int64_t parallel);

MemoryPlan plan_memory(const ModelFootprint& m, const MemoryPlanOptions& o);

}  // namespace g4
