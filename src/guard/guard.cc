#include "guard/guard.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace g4 {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

using Seg = Tokenizer::Segment;

// The rendered text in one tokenizer pass with special tokens on, as a tokenizer applied to the
// whole template would (SentencePiece then merges across the seams: "Question: How" ->
// "▁How"), unless a plain segment holds special-token text: then piece by piece with specials
// off in the plain pieces, so user text can never produce a control token.
std::vector<int32_t> encode_rendered(const Tokenizer& tok, const std::vector<Seg>& segs, bool bos) {
  std::string all;
  for (const Seg& s : segs) {
    if (!s.special && tok.encode(s.text, false, true) != tok.encode(s.text, false, false))
      return tok.encode_segments(segs, bos);
    all += s.text;
  }
  return tok.encode(all, bos, true);
}

// P(Yes) from the two answer logits: softmax over {Yes, No}.
float yes_probability(float yes, float no) {
  return float(1.0 / (1.0 + std::exp(double(no) - yes)));
}

}  // namespace

Result<std::unique_ptr<Guard>> Guard::load(const EngineOptions& eo, const GuardOptions& go) {
  Result<std::unique_ptr<Engine>> e = Engine::load(eo);
  if (!e.ok()) return Status::error("guard model: " + e.error());
  return create(std::move(e.value()), go);
}

Result<std::unique_ptr<Guard>> Guard::create(std::unique_ptr<Engine> engine,
                                             const GuardOptions& go) {
  if (!engine) return Status::error("guard: no engine");
  if (go.window_tokens < 16) return Status::error("guard: window_tokens must be at least 16");
  if (go.overlap_tokens < 0 || go.overlap_tokens >= go.window_tokens)
    return Status::error("guard: overlap_tokens must lie in [0, window_tokens)");
  const Tokenizer& tok = engine->tokenizer();
  if (tok.size() == 0) return Status::error("guard model has no tokenizer");
  std::vector<int32_t> yes = tok.encode(go.yes_text, false, false);
  std::vector<int32_t> no = tok.encode(go.no_text, false, false);
  if (go.yes_id >= 0) yes = {go.yes_id};
  if (go.no_id >= 0) no = {go.no_id};
  const int vocab = engine->model().config().vocab_size;
  if (yes.empty() || no.empty() || yes[0] == no[0] || yes[0] >= vocab || no[0] >= vocab)
    return Status::error("guard: the vocabulary gives no distinct first tokens for '" +
                         go.yes_text + "' and '" + go.no_text + "'");
  std::unique_ptr<Guard> g(new Guard());
  g->engine_ = std::move(engine);
  g->opts_ = go;
  g->yes_id_ = yes[0];
  g->no_id_ = no[0];
  return g;
}

Guard::~Guard() = default;

Result<std::vector<GuardPrompt>> Guard::build(const GuardInput& in,
                                              const std::vector<GuardPolicy>& policies) const {
  if (policies.empty()) return Status::error("guard: no policies to check");
  const std::string& judged = in.response.empty() ? in.prompt : in.response;
  if (in.prompt.size() + in.response.size() > size_t(opts_.max_input_bytes))
    return Status::error("input of " + std::to_string(in.prompt.size() + in.response.size()) +
                         " bytes exceeds the guard's limit of " +
                         std::to_string(opts_.max_input_bytes));
  if (judged.empty()) return Status::error("guard: empty input");
  const Tokenizer& tok = engine_->tokenizer();
  const GuardTemplate& t = opts_.tmpl;
  const bool resp = !in.response.empty();

  std::vector<std::vector<int32_t>> suffixes;
  size_t max_suffix = 0;
  for (const GuardPolicy& p : policies) {
    const std::string& g = resp ? p.response_guideline : p.prompt_guideline;
    suffixes.push_back(encode_rendered(
        tok, {Seg{g, false}, Seg{resp ? t.epilogue_response : t.epilogue_prompt, true}}, false));
    max_suffix = std::max(max_suffix, suffixes.back().size());
  }
  const int64_t n_ctx = engine_->options().n_ctx;
  if (int64_t(max_suffix) > engine_->options().max_chunk)
    return Status::error("guard: a policy's text is longer than the prefill chunk (" +
                         std::to_string(max_suffix) + " tokens)");

  // Markup around the judged text: head (with BOS) + judged + tail.
  std::string head = resp ? t.preamble_response : t.preamble_prompt;
  head += t.prompt_open;
  const std::string tail = (resp ? t.response_close : t.prompt_close) + t.principles;
  const std::vector<int32_t> judged_ids = tok.encode(judged, false, false);

  std::vector<Seg> head_segs{Seg{head, true}};
  std::string mid;  // response form: between the question and the response
  std::vector<int32_t> prompt_ids;
  if (resp) {
    mid = t.prompt_close + t.response_open;
    prompt_ids = tok.encode(in.prompt, false, false);
  }
  const std::vector<int32_t> tail_ids = tok.encode_segments({Seg{tail, true}}, false);
  const std::vector<int32_t> mid_ids =
      resp ? tok.encode_segments({Seg{mid, true}}, false) : std::vector<int32_t>{};
  const std::vector<int32_t> head_ids = tok.encode_segments(head_segs, true);

  // Window size that fits the context next to the markup and the longest suffix. In the
  // response form the question keeps at most its last window/2 tokens.
  const int64_t fixed = int64_t(head_ids.size() + mid_ids.size() + tail_ids.size() + max_suffix);
  int64_t window = std::min<int64_t>(opts_.window_tokens, n_ctx - fixed);
  size_t prompt_keep = 0;
  if (resp) {
    prompt_keep = std::min<size_t>(prompt_ids.size(), size_t(std::max<int64_t>(window / 2, 0)));
    window -= int64_t(prompt_keep);
  }
  if (window < 8)
    return Status::error("guard: the context (" + std::to_string(n_ctx) +
                         " tokens) is too small for the template and policies");
  const int64_t overlap = std::min<int64_t>(opts_.overlap_tokens, window / 2);

  std::vector<GuardPrompt> out;
  if (int64_t(judged_ids.size()) <= window && prompt_keep == prompt_ids.size()) {
    // One window: the whole text tokenized in one pass (merges across the markup seams), as
    // a tokenizer applied to the rendered template would.
    GuardPrompt gp;
    if (resp) {
      gp.prefix = encode_rendered(tok,
                                  {Seg{head, true}, Seg{in.prompt, false}, Seg{mid, true},
                                   Seg{in.response, false}, Seg{tail, true}},
                                  true);
    } else {
      gp.prefix =
          encode_rendered(tok, {Seg{head, true}, Seg{in.prompt, false}, Seg{tail, true}}, true);
    }
    if (int64_t(gp.prefix.size() + max_suffix) <= n_ctx) {
      gp.suffixes = suffixes;
      out.push_back(std::move(gp));
      return out;
    }
  }
  // Windows of token ids spliced between separately tokenized markup.
  const int64_t step = window - overlap;
  for (int64_t b = 0;; b += step) {
    const int64_t e = std::min<int64_t>(int64_t(judged_ids.size()), b + window);
    GuardPrompt gp;
    gp.prefix = head_ids;
    if (resp) {
      gp.prefix.insert(gp.prefix.end(), prompt_ids.end() - long(prompt_keep), prompt_ids.end());
      gp.prefix.insert(gp.prefix.end(), mid_ids.begin(), mid_ids.end());
    }
    gp.prefix.insert(gp.prefix.end(), judged_ids.begin() + b, judged_ids.begin() + e);
    gp.prefix.insert(gp.prefix.end(), tail_ids.begin(), tail_ids.end());
    gp.suffixes = suffixes;
    out.push_back(std::move(gp));
    if (e >= int64_t(judged_ids.size())) break;
  }
  return out;
}

Status Guard::score_window(const GuardPrompt& p, std::vector<float>& scores) {
  const Model& m = engine_->model();
  const EngineOptions& eo = engine_->options();
  const size_t n_seqs = p.suffixes.size() + 1;
  if (!kv_ || kv_seqs_ < n_seqs) {
    KvCacheOptions ko;
    ko.n_ctx = eo.n_ctx;
    ko.max_chunk = eo.max_chunk;
    ko.f32 = eo.kv_f32;
    // The prefix's blocks once, plus per fork the block it copies on write and its suffix.
    ko.pool_tokens = eo.n_ctx * int64_t(n_seqs + 1);
    kv_.reset();
    kv_ = std::make_unique<KvCache>(m.kv_geometry(), ko);
    kv_seqs_ = n_seqs;
  }
  KvCache& kv = *kv_;
  for (size_t s = 0; s < kv_seqs_; ++s)
    if (kv.has_sequence(int(s))) kv.remove_sequence(int(s));
  Status st = kv.add_sequence(0);
  if (!st.ok()) return st;
  const int64_t n = int64_t(p.prefix.size());
  for (int64_t b = 0; b < n; b += eo.max_chunk) {
    const int64_t e = std::min(n, b + eo.max_chunk);
    StepBatch sb;
    sb.seqs.push_back({0, std::span<const int32_t>(p.prefix.data() + b, size_t(e - b)), b, false});
    st = m.forward(sb, kv, engine_->exec(), out_);
    if (!st.ok()) return st;
  }
  StepBatch sb;
  for (size_t i = 0; i < p.suffixes.size(); ++i) {
    const int seq = int(i) + 1;
    st = kv.add_sequence(seq);
    if (!st.ok()) return st;
    kv.copy_prefix(0, seq, n);
    sb.seqs.push_back({seq, std::span<const int32_t>(p.suffixes[i]), n, false});
  }
  st = m.forward(sb, kv, engine_->exec(), out_);
  if (!st.ok()) return st;
  scores.assign(p.suffixes.size(), 0.f);
  for (size_t r = 0; r < out_.n_rows(); ++r) {
    const float* row = out_.row(r);
    scores[size_t(out_.row_seq[r])] = yes_probability(row[yes_id_], row[no_id_]);
  }
  return Status();
}

Status Guard::score(const GuardPrompt& p, std::vector<float>& scores) {
  if (p.prefix.empty() || p.suffixes.empty()) return Status::error("guard: empty prompt");
  for (const auto& sfx : p.suffixes)
    if (sfx.empty() || int64_t(sfx.size()) > engine_->options().max_chunk ||
        int64_t(p.prefix.size() + sfx.size()) > engine_->options().n_ctx)
      return Status::error("guard: a suffix is empty or does not fit");
  std::lock_guard<std::mutex> lock(mu_);
  return score_window(p, scores);
}

Result<GuardResult> Guard::check(const GuardInput& in, const RiskProfile& profile) {
  const double t0 = now_s();
  Result<std::vector<GuardPrompt>> prompts = build(in, profile.policies);
  if (!prompts.ok()) return prompts.status();
  std::lock_guard<std::mutex> lock(mu_);
  GuardResult r;
  std::vector<float> best(profile.policies.size(), 0.f), scores;
  for (const GuardPrompt& p : prompts.value()) {
    Status s = score_window(p, scores);
    if (!s.ok()) return Status::error("guard: " + s.message());
    for (size_t i = 0; i < best.size(); ++i) best[i] = std::max(best[i], scores[i]);
    r.prefix_tokens = std::max(r.prefix_tokens, int(p.prefix.size()));
    int suffix = 0;
    for (const auto& sfx : p.suffixes) suffix += int(sfx.size());
    r.suffix_tokens = suffix;
  }
  r.windows = int(prompts.value().size());
  float fired_score = -1;
  for (size_t i = 0; i < best.size(); ++i) {
    PolicyScore ps;
    ps.policy = profile.policies[i].name;
    ps.score = best[i];
    ps.threshold = profile.threshold(ps.policy);
    ps.flagged = ps.score >= ps.threshold;
    if (ps.flagged) {
      r.flagged = true;
      if (ps.score > fired_score) {
        fired_score = ps.score;
        r.fired = ps.policy;
      }
    }
    r.scores.push_back(std::move(ps));
  }
  r.seconds = now_s() - t0;
  return r;
}

}  // namespace g4
