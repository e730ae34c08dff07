#include "runtime/sequence.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "constrain/grammar.h"
#include "g4/engine.h"
#include "tokenizer/tokenizer.h"

namespace g4 {

void PaddingMask::apply(float* logits, int vocab) {
  for (int i = std::max(0, n_); i < vocab; ++i) logits[i] = -INFINITY;
}

void LogitBias::apply(float* logits, int vocab) {
  for (const auto& [id, b] : bias_)
    if (id >= 0 && id < vocab) logits[id] += b;
}

namespace {

// Gemma 4's thought channel in front of a constraint: the constraint starts after the channel
// closes (the first token may also open the channel), and a budget forces the close.
class ThoughtGate final : public LogitsProcessor {
 public:
  ThoughtGate(int32_t open, int32_t close, int budget, std::unique_ptr<LogitsProcessor> inner)
      : open_(open), close_(close), budget_(budget), inner_(std::move(inner)) {}

  void apply(float* logits, int vocab) override {
    if (state_ == kThinking) {
      if (budget_ >= 0 && n_ >= budget_ && close_ < vocab) {
        const float keep = std::isfinite(logits[close_]) ? logits[close_] : 0.0f;
        std::fill(logits, logits + vocab, -INFINITY);
        logits[close_] = keep;
      }
      return;
    }
    if (!inner_) return;
    const float keep = open_ < vocab ? logits[open_] : 0.0f;
    inner_->apply(logits, vocab);
    if (state_ == kStart && open_ < vocab) logits[open_] = keep;
  }

  void accept(int32_t t) override {
    if (state_ == kStart && t == open_) {
      state_ = kThinking;
    } else if (state_ == kThinking) {
      if (t == close_)
        state_ = kAnswer;
      else
        ++n_;
    } else {
      state_ = kAnswer;
      if (inner_) inner_->accept(t);
    }
  }

 private:
  enum State { kStart, kThinking, kAnswer };
  int32_t open_, close_;
  int budget_;
  std::unique_ptr<LogitsProcessor> inner_;
  State state_ = kStart;
  int n_ = 0;
};

}  // namespace

Sequence::Sequence(const Tokenizer& tok, int vocab, const GenerateOptions& opts, int top_logprobs)
    : tok_(tok),
      vocab_(vocab),
      max_tokens_(opts.max_tokens),
      stop_at_eog_(opts.stop_at_eog),
      top_logprobs_(top_logprobs),
      sampler_(opts.sampling),
      text_(opts.stop),
      show_control_(opts.show_control) {
  if (tok.size() < vocab) {
    chain_.push_back(std::make_unique<PaddingMask>(tok.size()));
    n_model_ = 1;
  }
  if (!opts.logit_bias.empty()) chain_.push_back(std::make_unique<LogitBias>(opts.logit_bias));
  std::unique_ptr<LogitsProcessor> mask;
  if (opts.constraint) {
    mask = make_constraint_mask(opts.constraint, vocab);
    stop_at_eog_ = true;  // a complete grammar leaves only end-of-turn tokens
  }
  if (opts.thought_open >= 0 && opts.thought_close >= 0)
    mask = std::make_unique<ThoughtGate>(opts.thought_open, opts.thought_close,
                                         opts.thinking_budget, std::move(mask));
  if (mask) chain_.push_back(std::move(mask));
}

Sequence::~Sequence() = default;

void Sequence::add_processor(std::unique_ptr<LogitsProcessor> p) {
  chain_.push_back(std::move(p));
}

void Sequence::accept_prompt(std::span<const int32_t> ids) {
  for (int32_t id : ids) sampler_.accept(id);
}

namespace {

// log-softmax of row[0, n) at `id`, and the k most likely ids (ties: lower id first).
void logprobs(const float* row, int n, int32_t id, int k, TokenOutcome* o) {
  float mx = -INFINITY;
  for (int i = 0; i < n; ++i) mx = std::max(mx, row[i]);
  double z = 0;
  for (int i = 0; i < n; ++i) z += std::exp(double(row[i] - mx));
  const float lse = mx + float(std::log(z));
  o->logprob = row[id] - lse;
  if (k <= 0) return;
  std::vector<TokenLogprob> top;
  for (int i = 0; i < n; ++i) {
    if (int(top.size()) < k || row[i] > top.back().logprob) {
      TokenLogprob t{i, row[i]};
      auto at = std::upper_bound(top.begin(), top.end(), t, [](const auto& x, const auto& y) {
        return x.logprob > y.logprob;
      });
      top.insert(at, t);
      if (int(top.size()) > k) top.pop_back();
    }
  }
  for (auto& t : top) t.logprob -= lse;
  o->top = std::move(top);
}

}  // namespace

TokenOutcome Sequence::next(const float* logits, int64_t cache_len, int64_t n_ctx) {
  TokenOutcome o;
  const float* row = logits;
  if (!chain_.empty()) {
    row_.assign(logits, logits + vocab_);
    row = row_.data();
  }
  // The model's distribution (padding masked) is what logprobs report; bias and constraints
  // only steer the choice.
  for (size_t i = 0; i < n_model_; ++i) chain_[i]->apply(row_.data(), vocab_);
  const bool later = chain_.size() > n_model_;
  if (top_logprobs_ >= 0 && later) model_row_.assign(row, row + vocab_);  // reused buffer
  for (size_t i = n_model_; i < chain_.size(); ++i) chain_[i]->apply(row_.data(), vocab_);
  const int32_t next = sampler_.sample(row, vocab_);
  sampler_.accept(next);
  for (auto& p : chain_) p->accept(next);
  if (stop_at_eog_ && tok_.is_eog(next)) {
    o.finish = "stop";
    return o;
  }
  o.token = next;
  tokens_.push_back(next);
  if (top_logprobs_ >= 0) {
    logprobs(later ? model_row_.data() : row, std::min(tok_.size(), vocab_), next, top_logprobs_,
             &o);
  }
  o.text = text_.push(tok_.piece(next, show_control_));
  if (text_.stopped())
    o.finish = "stop";
  else if (n_generated() >= max_tokens_ || cache_len >= n_ctx)
    o.finish = "length";
  return o;
}

std::string Sequence::flush() {
  return text_.finish();
}

}  // namespace g4
