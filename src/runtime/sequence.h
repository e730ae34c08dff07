// One generating sequence's per-token rules, shared by Session::generate (the CLI, the library)
// and the server's Scheduler, so that both produce the same tokens for the same request and
// seed: an ordered chain of logits processors (padding mask, logit_bias; later the grammar
// mask), the sampler, end of generation, stop strings, the token and context limits, and
// logprobs. The model is not involved: the caller runs the forward and hands in each logits row.
//
// Thread-safety: none; one owner (the CLI's thread or the server's engine thread).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "runtime/text_stream.h"
#include "sampling/sampler.h"

namespace g4 {

class Tokenizer;
struct GenerateOptions;

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0;
};

// One link of the logits chain. apply() edits a [vocab] row in place before sampling;
// accept() sees every token the sequence takes (prompt tokens are not shown).
class LogitsProcessor {
 public:
  virtual ~LogitsProcessor() = default;
  virtual void apply(float* logits, int vocab) = 0;
  virtual void accept(int32_t /*token*/) {}
};

// Never sample rows beyond the tokenizer (padding rows of the embedding, spec §6.16).
class PaddingMask final : public LogitsProcessor {
 public:
  explicit PaddingMask(int n_tokens) : n_(n_tokens) {}
  void apply(float* logits, int vocab) override;

 private:
  int n_;
};

// OpenAI's logit_bias: a value added to a token's logit before sampling (-100 bans it in
// practice, +100 all but forces it).
class LogitBias final : public LogitsProcessor {
 public:
  explicit LogitBias(std::vector<std::pair<int32_t, float>> bias) : bias_(std::move(bias)) {}
  void apply(float* logits, int vocab) override;

 private:
  std::vector<std::pair<int32_t, float>> bias_;
};

// What one sampled token did.
struct TokenOutcome {
  int32_t token = -1;  // the token taken, or -1 when the step ended generation (end of turn)
  std::string text;    // text that became final (may be empty: held back for stop strings)
  float logprob = 0;   // log-softmax of the model's distribution (padding masked), if asked
  std::vector<TokenLogprob> top;
  // "" = go on (feed `token` to the model); "stop" (end of turn or a stop string) or
  // "length" (max_tokens reached, or the context has no room for another token).
  std::string finish;
};

class Sequence {
 public:
  // top_logprobs: -1 none, 0 the chosen token's, k > 0 also the top k alternatives.
  Sequence(const Tokenizer& tok, int vocab, const GenerateOptions& opts, int top_logprobs = -1);
  ~Sequence();
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  // Processors run after the padding mask and logit_bias, in the order added.
  void add_processor(std::unique_ptr<LogitsProcessor> p);
  // The prompt, for the penalties' history.
  void accept_prompt(std::span<const int32_t> ids);
  // Samples from the model's logits row for the last fed token. cache_len: positions the
  // sequence holds in its KV cache now (the sampled token not yet fed); n_ctx: its capacity.
  TokenOutcome next(const float* logits, int64_t cache_len, int64_t n_ctx);
  // End of generation (not after a cancel): text held back for stop strings, incomplete UTF-8.
  std::string flush();

  int n_generated() const { return int(tokens_.size()); }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  const std::string& text() const { return text_.text(); }

 private:
  const Tokenizer& tok_;
  int vocab_;
  int max_tokens_;
  bool stop_at_eog_;
  int top_logprobs_;
  Sampler sampler_;
  StopTextStream text_;
  bool show_control_ = false;
  std::vector<std::unique_ptr<LogitsProcessor>> chain_;
  size_t n_model_ = 0;      // processors that belong to the model's distribution (padding mask)
  std::vector<float> row_;  // the logits row the processors edit (reused per token)
  std::vector<float> model_row_;  // the model's row for logprobs when later processors edit
  std::vector<int32_t> tokens_;
};

}  // namespace g4
