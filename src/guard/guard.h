// The safety guard: ShieldGemma-style policy scores from a Gemma checkpoint.
//
//   auto g = Guard::load(engine_options, GuardOptions{});
//   GuardResult r = g.value()->check({.prompt = text}, profile).value();
//
// Prompt (prompt-only form, input filtering):
//   <bos>You are a policy expert trying to help determine whether a user prompt is in
//   violation of the defined safety policies.\n\n<start_of_turn>\nHuman Question: PROMPT\n
//   <end_of_turn>\n\nOur safety principle is defined in the below:\n\n* GUIDELINE\n\n===\n\n
//   Does the human question violate the above principle? Your answer must start with 'Yes' or
//   'No'. And then walk through step by step to be sure we answer correctly.\n
// The prompt+response form (output filtering) adds "<start_of_turn>\nChatbot Response:
// RESPONSE\n<end_of_turn>\n\n" after the question, says "an AI response to a prompt" in the
// preamble, uses the chatbot wording of each guideline and asks "Does the Chatbot Response
// violate the above principle? ...". Text in the template's markup is tokenized with special
// tokens on; PROMPT, RESPONSE and GUIDELINE with them off (a literal "<end_of_turn>" in user text
// stays text).
//
// Template source: GuardOptions::chat_template when set; else the guard model's own chat
// template (GGUF `tokenizer.chat_template`, which `g4 convert` / the HF loader copy from
// tokenizer_config.json) when it mentions `guideline` (ShieldGemma's checkpoints are called as
// apply_chat_template(chat, guideline=...)); else the built-in copy above (GuardOptions::tmpl).
// A chat template that does not mention `guideline` (an ordinary Gemma chat template) is not a
// guard template. A guard template is rendered once per form at load, with chat = [user]
// (prompt-only) or [user, assistant] (prompt+response), bos_token, and sentinel strings for the
// prompt, the response and the guideline; the rendering must hold each sentinel once, the
// judged text before the guideline, and must pass the judged text through unchanged (probed
// with whitespace, quotes and markup). The text between the sentinels becomes the form's
// markup, tokenized with special tokens on, the judged text and guideline with them off, as for
// the built-in copy; so the prefix shared by all policies is the rendering up to the guideline.
// A guard template that fails any of this (syntax error, raise_exception, wrong structure) makes
// Guard::load / create fail with the template's error: no silent fallback to the built-in copy.
//
// Score: P(Yes) = softmax over the logits of the Yes and No answer tokens at the position after
// the prompt. The answer ids are the first token of tokenizer.encode("Yes") and of
// encode("No") (no BOS, no special parsing): on Gemma vocabularies these are the single tokens
// "Yes" / "No"; on a toy vocabulary they are whatever the text starts with ("Y", "N").
//
// Cost: everything up to "* " is the shared prefix, prefilled once; each policy's suffix
// (GUIDELINE + epilogue) is a fork of it (KvCache::copy_prefix: global-layer blocks shared
// by reference) and all suffixes run as one batched forward with one logit row each; nothing
// is decoded. Text to judge longer than window_tokens is cut into windows of window_tokens
// overlapping by overlap_tokens; a policy's score is its maximum over windows. A prefix cache
// (GuardOptions::cache_entries) keeps earlier windows' prefix KV, so a window prefills only what
// follows the longest prefix it shares with one of them (the template head at least; for a
// growing answer, the previous check's text); scores are bit-identical either way.
//
// With a template, every build() also renders it with the real strings (one render per policy)
// and refuses the check unless the result equals the markup around them, so a template whose
// output depends on the screened text in a way the load-time probes missed cannot slip text
// past the special-token split.
//
// Threads: the guard owns its Engine (own weights mapping, ExecContext and KvCache), so it never
// shares a forward context with the server's scheduler; check() calls are serialized by a mutex.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "g4/engine.h"
#include "guard/policies.h"

namespace g4 {

namespace jinja {
class Template;
}

struct GuardTemplate {
  std::string preamble_prompt =
      "You are a policy expert trying to help determine whether a user prompt is in violation "
      "of the defined safety policies.\n\n";
  std::string preamble_response =
      "You are a policy expert trying to help determine whether an AI response to a prompt is "
      "in violation of the defined safety policies.\n\n";
  std::string prompt_open = "<start_of_turn>\nHuman Question: ";
  std::string prompt_close = "\n<end_of_turn>\n\n";
  std::string response_open = "<start_of_turn>\nChatbot Response: ";
  std::string response_close = "\n<end_of_turn>\n\n";
  std::string principles = "Our safety principle is defined in the below:\n\n* ";
  std::string epilogue_prompt =
      "\n\n===\n\nDoes the human question violate the above principle? Your answer must start "
      "with 'Yes' or 'No'. And then walk through step by step to be sure we answer correctly.\n";
  std::string epilogue_response =
      "\n\n===\n\nDoes the Chatbot Response violate the above principle? Your answer must start "
      "with 'Yes' or 'No'. And then walk through step by step to be sure we answer correctly.\n";
};

struct GuardOptions {
  GuardTemplate tmpl;
  // A ShieldGemma-style Jinja chat template (takes `messages` and `guideline`); empty: the
  // model's own when it uses `guideline`, else `tmpl` (see the head of this file).
  std::string chat_template;
  bool use_model_template = true;    // false: ignore the model's chat template
  int window_tokens = 1024;          // tokens of judged text per window
  int overlap_tokens = 128;          // shared by consecutive windows
  int max_input_bytes = 256 * 1024;  // larger inputs are refused (clear error, no work done)
  // Prefix KV kept between checks (0: none): the template's head for each form (prompt-only,
  // prompt+response) stays pinned, the other entries hold recent windows (least recently used
  // goes first), so a check prefills only the tokens past its longest cached prefix. Each
  // entry is one KV sequence (sliding rings included) of the guard's cache.
  int cache_entries = 4;
  std::string yes_text = "Yes";
  std::string no_text = "No";
  // >= 0: these answer ids instead of the first tokens of yes_text / no_text.
  int32_t yes_id = -1;
  int32_t no_id = -1;
};

struct GuardInput {
  std::string prompt;
  std::string response;  // non-empty: prompt+response form, the response is judged
};

struct PolicyScore {
  std::string policy;
  float score = 0;  // P(Yes), max over windows
  float threshold = 0;
  bool flagged = false;  // score >= threshold
};

struct GuardResult {
  std::vector<PolicyScore> scores;  // in the profile's policy order
  bool flagged = false;
  std::string fired;  // the flagged policy with the highest score ("" when none)
  int windows = 0;
  int prefix_tokens = 0;  // tokens prefilled once per window (the largest window)
  int cached_tokens = 0;  // of those, taken from the prefix cache (all windows)
  int suffix_tokens = 0;  // policy suffix tokens per window, all policies
  double seconds = 0;
};

// The exact token ids the guard feeds for one window (tests, the fixture script's twin).
struct GuardPrompt {
  std::vector<int32_t> prefix;                 // BOS + preamble ... "* "
  std::vector<std::vector<int32_t>> suffixes;  // per policy: guideline + epilogue
};

class Guard {
 public:
  // Loads a dedicated engine for the classifier (n_ctx at least window + template + suffix).
  static Result<std::unique_ptr<Guard>> load(const EngineOptions& eo, const GuardOptions& go);
  // Takes an engine nobody else runs forwards on.
  static Result<std::unique_ptr<Guard>> create(std::unique_ptr<Engine> engine,
                                               const GuardOptions& go);
  ~Guard();

  // Scores every policy of the profile. Errors: empty or oversized input, a window that does
  // not fit the context, a forward failure.
  Result<GuardResult> check(const GuardInput& in, const RiskProfile& profile);
  // The token ids for policies over the windows of `in` (no forward).
  Result<std::vector<GuardPrompt>> build(const GuardInput& in,
                                         const std::vector<GuardPolicy>& policies) const;

  // P(Yes) per suffix for given ids (one window; what check() runs per window).
  Status score(const GuardPrompt& p, std::vector<float>& scores);
  // Prefix tokens taken from the cache by the last check() or score() (tests).
  int last_cached_tokens() const { return last_cached_; }

  int32_t yes_id() const { return yes_id_; }
  int32_t no_id() const { return no_id_; }
  const Engine& engine() const { return *engine_; }
  const GuardOptions& options() const { return opts_; }
  // Where the prompt text comes from: "built-in", "model" (the checkpoint's chat template) or
  // "option" (GuardOptions::chat_template).
  const std::string& template_source() const { return template_source_; }

  // One form's markup around the judged text: BOS? + head + PROMPT [+ mid + RESPONSE] + tail
  // (the shared prefix), then per policy GUIDELINE + epilogue.
  struct Form {
    std::string head, mid, tail, epilogue;
    bool bos = true;
    std::string bos_text;  // template text before head that became the BOS flag
  };
  const Form& form(bool response) const { return forms_[response ? 1 : 0]; }

 private:
  Guard() = default;
  Status score_window(const GuardPrompt& p, std::vector<float>& scores, int* cached);
  // The prefix cache: KV sequences kCacheSeq0 + k holding `ids` (engine state under mu_).
  struct CacheEntry {
    int seq = 0;
    std::vector<int32_t> ids;
    uint64_t used = 0;
    bool pinned = false;  // a form's template head
  };
  static constexpr int kCacheSeq0 = 1 << 20;
  void pin_heads();

  std::unique_ptr<Engine> engine_;
  GuardOptions opts_;
  Form forms_[2];                                    // prompt-only, prompt+response
  std::shared_ptr<const jinja::Template> template_;  // null: the built-in copy
  std::string template_source_ = "built-in";
  int32_t yes_id_ = -1, no_id_ = -1;
  std::mutex mu_;  // one check at a time: one KvCache, one ExecContext
  std::unique_ptr<KvCache> kv_;
  size_t kv_seqs_ = 0;  // fork sequences kv_ was sized for (one per policy)
  std::vector<CacheEntry> cache_;
  uint64_t clock_ = 0;
  int last_cached_ = 0;
  StepOutput out_;
};

// The text of a guard template file (`--guard-template`); an unreadable or empty file is an
// error naming it.
Result<std::string> read_guard_template(const std::string& path);

// When to check an answer as it is generated (OutputCheckOptions of the profile). The caller
// feeds each generated piece; due() says a mid-answer check of text() is due; after a check
// that passed, passed() restarts the counts. Text is never released by the gate itself: the
// caller holds back what no check has passed yet. One answer, one thread.
class OutputGate {
 public:
  explicit OutputGate(const OutputCheckOptions& o) : o_(o) {}
  // A piece of the answer; token: it came with a sampled token (counts toward every_tokens).
  void add(std::string_view text, bool token);
  bool due() const;
  void passed();
  const std::string& text() const { return text_; }
  size_t checked_bytes() const { return checked_bytes_; }  // text the last passed check covered
  int checks() const { return checks_; }

 private:
  OutputCheckOptions o_;
  std::string text_;
  size_t checked_bytes_ = 0;
  int since_ = 0;          // tokens since the last check
  bool sentence_ = false;  // a sentence ended since the last check
  int checks_ = 0;
};

}  // namespace g4
