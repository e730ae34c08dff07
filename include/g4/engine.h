// g4 public C++ API.
//
//   auto engine = g4::Engine::load({.model_path = "model.gguf", .n_threads = 2});
//   g4::Session s(*engine.value());
//   s.generate(prompt_ids, opts, [](std::string_view piece) { std::cout << piece; return true; });
//
// An Engine is immutable after load (weights, config, tokenizer) and shareable between
// threads. A Session is one conversation (one KV sequence); it keeps its cache between
// turns, so a follow-up message only prefills the new tokens.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "kernels/sparse_attention.h"
#include "model/model.h"
#include "sampling/sampler.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace g4 {

class GgufFile;
class ConstraintCompiler;
struct CompiledConstraint;

struct EngineOptions {
  std::string model_path;
  int n_threads = 0;        // 0 = all cores
  int64_t n_ctx = 4096;     // context per session (capped at the model's trained context)
  int64_t max_chunk = 512;  // prefill chunk (tokens per forward step per sequence)
  EmbedScale embed_scale = EmbedScale::kBf16Rounded;
  // Exact numerics: f32 activations in every matmul instead of llama.cpp-style int8 blocks.
  // Slower; removes activation-rounding noise (~0.2 logits on Gemma 3 270M).
  bool exact = false;
  // K/V cache in float32 instead of fp16 (twice the memory; for reference comparisons).
  bool kv_f32 = false;
  // K/V storage type "f16", "f32" or "q8_0" (kv_f32 = true means "f32").
  std::string kv_type = "f16";
  // Sparse attention routing on global layers (off by default; kernels/sparse_attention.h).
  SparseAttentionOptions sparse;
  // Hugging Face checkpoint directories (model_path holds config.json): matrix type on load,
  // "auto" (as stored), "f32", "f16", "bf16" or "q8_0" (src/io/hf_checkpoint.h).
  std::string hf_dtype = "auto";
};

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> load(const EngineOptions& opts);
  ~Engine();

  const Model& model() const { return *model_; }
  const Tokenizer& tokenizer() const { return tok_; }
  const GgufFile& file() const { return *file_; }
  const EngineOptions& options() const { return opts_; }
  // True when the checkpoint looks instruction-tuned (chat template, or "-it"/"instruct" in
  // its name); base models should be prompted with plain text.
  bool instruction_tuned() const { return instruction_tuned_; }
  // The checkpoint's Jinja chat template: GGUF `tokenizer.chat_template`, or for a Hugging Face
  // directory tokenizer_config.json's `chat_template` / chat_template.jinja; "" when none.
  const std::string& chat_template() const { return chat_template_; }
  ExecContext& exec() { return *exec_; }
  // KV cache settings from the options (context, chunk, storage type, sparse routing); the
  // caller adds the pool size and ring slack it needs.
  KvCacheOptions kv_options() const;
  // Compiles JSON-schema / regex / choice / grammar constraints for this vocabulary
  // (thread-safe; the vocabulary's tables are built on first use).
  ConstraintCompiler& constraints() { return *constraints_; }

 private:
  Engine() = default;
  EngineOptions opts_;
  std::unique_ptr<GgufFile> file_;
  std::unique_ptr<Model> model_;
  Tokenizer tok_;
  bool instruction_tuned_ = false;
  std::string chat_template_;
  std::unique_ptr<ExecContext> exec_;
  std::unique_ptr<ConstraintCompiler> constraints_;
};

struct GenerateOptions {
  SamplingParams sampling;
  int max_tokens = 256;
  std::vector<std::string> stop;  // stop strings (not included in the output)
  bool stop_at_eog = true;
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to those tokens' logits
  // Output constrained to a compiled grammar (Engine::constraints().compile, constrain/
  // grammar.h); end of turn then always ends generation.
  std::shared_ptr<const CompiledConstraint> constraint;
  // Gemma 4's thought channel: the ids of <|channel> and <channel|> (-1: no channel). With
  // them a constraint starts only once the channel closes (or at once when the model answers
  // without opening it), and thinking_budget (-1: no cap) closes the channel after that many
  // tokens inside it.
  int32_t thought_open = -1;
  int32_t thought_close = -1;
  int thinking_budget = -1;
  // Control tokens stream as their text (<|channel>, ...), for an output parser that needs them.
  bool show_control = false;
};

struct GenerateResult {
  std::vector<int32_t> tokens;
  std::string text;
  // "stop" (end of turn, stop string) | "length" (max_tokens, or a full context) | "cancelled"
  std::string finish_reason;
  int n_prompt_tokens = 0;  // tokens that were prefilled (not already cached)
  int n_cached_tokens = 0;  // prompt tokens reused from the session's KV cache
  double prefill_seconds = 0;
  double decode_seconds = 0;
  double ttft_seconds = 0;
};

class Session {
 public:
  explicit Session(Engine& engine, int seq_id = 0);
  ~Session();

  // Makes the cache hold exactly `ids` (reusing the longest cached prefix), then samples.
  // on_piece receives text as it is produced (whole UTF-8 characters); returning false cancels.
  Result<GenerateResult> generate(const std::vector<int32_t>& ids, const GenerateOptions& opts,
                                  const std::function<bool(std::string_view)>& on_piece = {});

  // Runs the model over ids and returns logits for every position ([n][vocab]).
  Result<std::vector<float>> logits_all(const std::vector<int32_t>& ids);

  const std::vector<int32_t>& history() const { return history_; }
  void reset();
  // Sparse routing for this session's next steps (KvCache::set_routing): prompts keep their
  // K/V, so answers under two routings can share one prefill.
  Status set_routing(const SparseAttentionOptions& o);

 private:
  Status sync(const std::vector<int32_t>& ids, bool all_logits, std::vector<float>* all,
              int* n_cached);

  Engine& engine_;
  int seq_;
  std::unique_ptr<KvCache> kv_;
  std::vector<int32_t> history_;  // tokens whose K/V are in the cache
  StepOutput out_;
};

}  // namespace g4
