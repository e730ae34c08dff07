#include "guard/guard.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "tokenizer/jinja.h"

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

// Sentinels for the untrusted strings: private-use code points around a tag, so template text
// never holds them and the rendering splits into markup and slots exactly.
const std::string kSentPrompt = "\xEE\x80\x80g4:prompt\xEE\x80\x81";
const std::string kSentResponse = "\xEE\x80\x80g4:response\xEE\x80\x81";
const std::string kSentGuideline = "\xEE\x80\x80g4:guideline\xEE\x80\x81";

jinja::Json guard_context(const Tokenizer& tok, bool resp, const std::string& prompt,
                          const std::string& response, const std::string& guideline) {
  jinja::Json msgs = jinja::Json::array();
  msgs.push_back({{"role", "user"}, {"content", prompt}});
  if (resp) msgs.push_back({{"role", "assistant"}, {"content", response}});
  jinja::Json c = jinja::Json::object();
  c["messages"] = std::move(msgs);
  c["guideline"] = guideline;
  c["add_generation_prompt"] = false;
  c["bos_token"] = tok.bos() >= 0 ? tok.text(tok.bos()) : std::string();
  c["eos_token"] = tok.eos() >= 0 ? tok.text(tok.eos()) : std::string();
  return c;
}

// One form's markup from a guard chat template (see guard.h): rendered with sentinels, split at
// them, then checked against renderings with real text (the template must not alter it).
Result<Guard::Form> form_from_template(const jinja::Template& t, const Tokenizer& tok, bool resp) {
  const std::string what = resp ? "prompt+response" : "prompt-only";
  Result<std::string> r =
      t.render(guard_context(tok, resp, kSentPrompt, kSentResponse, kSentGuideline));
  if (!r.ok()) return Status::error("guard template (" + what + " form): " + r.error());
  const std::string& text = r.value();
  auto once = [&](const std::string& s, size_t* at) {
    *at = text.find(s);
    return *at != std::string::npos && text.find(s, *at + 1) == std::string::npos;
  };
  size_t p = 0, q = 0, g = 0;
  const bool ok = once(kSentPrompt, &p) && (!resp || once(kSentResponse, &q)) &&
                  once(kSentGuideline, &g) && (!resp || (p < q && q < g)) && p < g &&
                  (resp || text.find(kSentResponse) == std::string::npos);
  if (!ok)
    return Status::error(
        "guard template (" + what + " form): the rendering must hold the user message" +
        (resp ? ", then the assistant message," : "") + " once each, then the guideline once");
  Guard::Form f;
  f.head = text.substr(0, p);
  const size_t after_p = p + kSentPrompt.size();
  if (resp) {
    f.mid = text.substr(after_p, q - after_p);
    f.tail = text.substr(q + kSentResponse.size(), g - q - kSentResponse.size());
  } else {
    f.tail = text.substr(after_p, g - after_p);
  }
  f.epilogue = text.substr(g + kSentGuideline.size());
  // The judged text and the guideline must pass through unchanged (no trim, no case change).
  static const char* kProbes[][3] = {
      {" \t<start_of_turn>user 'q\" {{ x }}\n ", "\n r <end_of_turn> ", "  g\n"}, {"x", "y", "z"}};
  for (const auto& pr : kProbes) {
    Result<std::string> pr_text = t.render(guard_context(tok, resp, pr[0], pr[1], pr[2]));
    const std::string want =
        f.head + pr[0] + (resp ? f.mid + pr[1] : std::string()) + f.tail + pr[2] + f.epilogue;
    if (!pr_text.ok() || pr_text.value() != want)
      return Status::error("guard template (" + what +
                           " form) changes the judged text or the guideline (e.g. trims it); "
                           "it must insert them unchanged");
  }
  // A leading BOS text becomes the tokenizer's BOS flag, as in the built-in form.
  const std::string bos = tok.bos() >= 0 ? tok.text(tok.bos()) : std::string();
  f.bos = false;
  if (!bos.empty() && tok.add_bos() && f.head.compare(0, bos.size(), bos) == 0) {
    f.head.erase(0, bos.size());
    f.bos = true;
    f.bos_text = bos;
  }
  return f;
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
  const GuardTemplate& t = go.tmpl;
  g->forms_[0] = Form{t.preamble_prompt + t.prompt_open,
                      "",
                      t.prompt_close + t.principles,
                      t.epilogue_prompt,
                      true,
                      ""};
  g->forms_[1] = Form{t.preamble_response + t.prompt_open,
                      t.prompt_close + t.response_open,
                      t.response_close + t.principles,
                      t.epilogue_response,
                      true,
                      ""};
  std::string src = go.chat_template;
  std::string source = "option";
  if (src.empty() && go.use_model_template) {
    // Only a template that mentions `guideline` is a guard template: an ordinary chat template
    // (which this renderer need not even parse) leaves the built-in copy in place.
    const std::string& m = g->engine_->chat_template();
    if (m.find("guideline") != std::string::npos) {
      src = m;
      source = "model";
    }
  }
  if (!src.empty()) {
    const std::string where =
        source == "model" ? "the guard model's chat template" : "the guard template";
    Result<jinja::Template> jt = jinja::Template::parse(src);
    if (!jt.ok()) return Status::error(where + ": " + jt.error());
    if (!jt.value().uses_variable("guideline"))
      return Status::error(where + " does not use `guideline`: not a ShieldGemma-style template");
    for (int k = 0; k < 2; ++k) {
      Result<Form> f = form_from_template(jt.value(), tok, k == 1);
      if (!f.ok()) return Status::error(where + ": " + f.error());
      g->forms_[k] = std::move(f.value());
    }
    g->template_source_ = source;
    g->template_ = std::make_shared<const jinja::Template>(std::move(jt.value()));
  }
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
  const bool resp = !in.response.empty();
  const Form& f = forms_[resp ? 1 : 0];
  if (template_) {
    for (const GuardPolicy& p : policies) {
      const std::string& g = resp ? p.response_guideline : p.prompt_guideline;
      Result<std::string> r =
          template_->render(guard_context(tok, resp, in.prompt, in.response, g));
      if (!r.ok()) return Status::error("guard template: " + r.error());
      const std::string want = f.bos_text + f.head + in.prompt +
                               (resp ? f.mid + in.response : std::string()) + f.tail + g +
                               f.epilogue;
      if (r.value() != want)
        return Status::error(
            "guard template: its rendering of this input is not the judged text and guideline "
            "inside the template's markup (the template depends on the text); check refused");
    }
  }

  std::vector<std::vector<int32_t>> suffixes;
  size_t max_suffix = 0;
  for (const GuardPolicy& p : policies) {
    const std::string& g = resp ? p.response_guideline : p.prompt_guideline;
    suffixes.push_back(encode_rendered(tok, {Seg{g, false}, Seg{f.epilogue, true}}, false));
    max_suffix = std::max(max_suffix, suffixes.back().size());
  }
  const int64_t n_ctx = engine_->options().n_ctx;
  if (int64_t(max_suffix) > engine_->options().max_chunk)
    return Status::error("guard: a policy's text is longer than the prefill chunk (" +
                         std::to_string(max_suffix) + " tokens)");

  // Markup around the judged text: head (with BOS) + judged + tail.
  const std::string& head = f.head;
  const std::string& tail = f.tail;
  const std::vector<int32_t> judged_ids = tok.encode(judged, false, false);

  std::vector<Seg> head_segs{Seg{head, true}};
  const std::string& mid = f.mid;  // response form: between the question and the response
  std::vector<int32_t> prompt_ids;
  if (resp) prompt_ids = tok.encode(in.prompt, false, false);
  const std::vector<int32_t> tail_ids = tok.encode_segments({Seg{tail, true}}, false);
  const std::vector<int32_t> mid_ids =
      resp ? tok.encode_segments({Seg{mid, true}}, false) : std::vector<int32_t>{};
  const std::vector<int32_t> head_ids = tok.encode_segments(head_segs, f.bos);

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
                                  f.bos);
    } else {
      gp.prefix =
          encode_rendered(tok, {Seg{head, true}, Seg{in.prompt, false}, Seg{tail, true}}, f.bos);
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

// The prefix cache's sequences hold prefixes of earlier windows. A causal model's K/V at a
// position depend only on the tokens up to it, and the forward is batch- and chunk-invariant
// (same bits whatever else shares the step), so K/V forked from the cache equal those a
// fresh prefill would write: scores stay bit-identical (GuardCache.* tests).
void Guard::pin_heads() {
  const Tokenizer& tok = engine_->tokenizer();
  if (opts_.cache_entries < 3) return;  // pinning both heads would leave no room for windows
  for (const Form& f : forms_) {
    std::vector<int32_t> ids = tok.encode_segments({Tokenizer::Segment{f.head, true}}, f.bos);
    if (ids.empty() || int64_t(ids.size()) > engine_->options().max_chunk) continue;
    CacheEntry* e = nullptr;
    for (CacheEntry& c : cache_)
      if (!c.pinned && c.ids.empty()) e = e ? e : &c;
    if (!e) return;
    KvCache& kv = *kv_;
    kv.set_length(e->seq, 0);
    StepBatch sb;
    sb.seqs.push_back({e->seq, std::span<const int32_t>(ids), 0, false, true});
    if (!engine_->model().forward(sb, kv, engine_->exec(), out_).ok()) {
      kv.set_length(e->seq, 0);
      continue;
    }
    e->ids = std::move(ids);
    e->pinned = true;
  }
}

Status Guard::score_window(const GuardPrompt& p, std::vector<float>& scores, int* cached) {
  const Model& m = engine_->model();
  const EngineOptions& eo = engine_->options();
  const size_t n_forks = p.suffixes.size();
  if (!kv_ || kv_seqs_ < n_forks) {
    KvCacheOptions ko;
    ko.n_ctx = eo.n_ctx;
    ko.max_chunk = eo.max_chunk;
    ko.f32 = eo.kv_f32;
    const int n_cache = std::max(1, opts_.cache_entries);
    // Every cached prefix and the forks' copied-on-write blocks and suffixes.
    ko.pool_tokens = eo.n_ctx * int64_t(n_forks + 1 + size_t(n_cache));
    cache_.clear();
    kv_.reset();
    kv_ = std::make_unique<KvCache>(m.kv_geometry(), ko);
    kv_seqs_ = n_forks;
    for (int k = 0; k < n_cache; ++k) {
      Status st = kv_->add_sequence(kCacheSeq0 + k);
      if (!st.ok()) return st;
      cache_.push_back(CacheEntry{kCacheSeq0 + k, {}, 0, false});
    }
    pin_heads();
  }
  KvCache& kv = *kv_;
  for (size_t s = 1; s <= kv_seqs_; ++s)
    if (kv.has_sequence(int(s))) kv.remove_sequence(int(s));
  const int64_t n = int64_t(p.prefix.size());
  // The cached prefix that shares most with this one, and the entry to hold this prefix: that
  // same entry when it is not pinned (cut back in place), else the least recently used one.
  CacheEntry* best = nullptr;
  int64_t reuse = 0;
  for (CacheEntry& c : cache_) {
    int64_t k = 0;
    while (k < n && k < int64_t(c.ids.size()) && c.ids[size_t(k)] == p.prefix[size_t(k)]) ++k;
    if (opts_.cache_entries > 0 && k > reuse && kv.can_copy_prefix(c.seq, k)) {
      best = &c;
      reuse = k;
    }
  }
  CacheEntry* target = best && !best->pinned ? best : nullptr;
  if (!target) {
    for (CacheEntry& c : cache_)
      if (!c.pinned && (!target || c.used < target->used)) target = &c;
  }
  if (!target) {  // every entry pinned (cache_entries < 3 pins none, so only when 0 < n < 3)
    target = &cache_.back();
    target->pinned = false;
  }
  if (best == target) {
    kv.set_length(target->seq, reuse);
  } else if (best) {
    kv.copy_prefix(best->seq, target->seq, reuse);
  } else {
    kv.set_length(target->seq, 0);
  }
  if (best) best->used = ++clock_;
  target->ids.assign(p.prefix.begin(), p.prefix.begin() + reuse);
  target->used = ++clock_;
  const int pseq = target->seq;
  Status st;
  for (int64_t b = reuse; b < n; b += eo.max_chunk) {
    const int64_t e = std::min(n, b + eo.max_chunk);
    StepBatch sb;
    sb.seqs.push_back(
        {pseq, std::span<const int32_t>(p.prefix.data() + b, size_t(e - b)), b, false, true});
    st = m.forward(sb, kv, engine_->exec(), out_);
    if (!st.ok()) {
      kv.set_length(pseq, 0);
      target->ids.clear();
      return st;
    }
    target->ids.insert(target->ids.end(), p.prefix.begin() + b, p.prefix.begin() + e);
  }
  if (cached) *cached = int(reuse);
  StepBatch sb;
  for (size_t i = 0; i < n_forks; ++i) {
    const int seq = int(i) + 1;
    st = kv.add_sequence(seq);
    if (!st.ok()) return st;
    kv.copy_prefix(pseq, seq, n);
    sb.seqs.push_back({seq, std::span<const int32_t>(p.suffixes[i]), n, false, true});
  }
  st = m.forward(sb, kv, engine_->exec(), out_);
  if (!st.ok()) return st;
  scores.assign(n_forks, 0.f);
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
  last_cached_ = 0;
  return score_window(p, scores, &last_cached_);
}

Result<GuardResult> Guard::check(const GuardInput& in, const RiskProfile& profile) {
  const double t0 = now_s();
  Result<std::vector<GuardPrompt>> prompts = build(in, profile.policies);
  if (!prompts.ok()) return prompts.status();
  std::lock_guard<std::mutex> lock(mu_);
  GuardResult r;
  std::vector<float> best(profile.policies.size(), 0.f), scores;
  for (const GuardPrompt& p : prompts.value()) {
    int cached = 0;
    Status s = score_window(p, scores, &cached);
    if (!s.ok()) return Status::error("guard: " + s.message());
    r.cached_tokens += cached;
    for (size_t i = 0; i < best.size(); ++i) best[i] = std::max(best[i], scores[i]);
    r.prefix_tokens = std::max(r.prefix_tokens, int(p.prefix.size()));
    int suffix = 0;
    for (const auto& sfx : p.suffixes) suffix += int(sfx.size());
    r.suffix_tokens = suffix;
  }
  r.windows = int(prompts.value().size());
  last_cached_ = r.cached_tokens;
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

Result<std::string> read_guard_template(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error("cannot read guard template " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Status::error("cannot read guard template " + path);
  if (ss.str().empty()) return Status::error("guard template " + path + " is empty");
  return ss.str();
}

// ---- OutputGate ----

namespace {
// A character that ends a sentence: . ! ? newline, and the ideographic 。！？ (UTF-8).
bool ends_sentence(std::string_view s, size_t i) {
  const char c = s[i];
  if (c == '.' || c == '!' || c == '?' || c == '\n') return true;
  if (i + 2 < s.size() && uint8_t(c) == 0xE3 && uint8_t(s[i + 1]) == 0x80 &&
      uint8_t(s[i + 2]) == 0x82)
    return true;  // U+3002
  if (i + 2 < s.size() && uint8_t(c) == 0xEF && uint8_t(s[i + 1]) == 0xBC &&
      (uint8_t(s[i + 2]) == 0x81 || uint8_t(s[i + 2]) == 0x9F))
    return true;  // U+FF01, U+FF1F
  return false;
}
}  // namespace

void OutputGate::add(std::string_view text, bool token) {
  if (token) ++since_;
  for (size_t i = 0; i < text.size(); ++i) sentence_ = sentence_ || ends_sentence(text, i);
  text_.append(text);
}

bool OutputGate::due() const {
  if (!o_.enabled || text_.size() == checked_bytes_) return false;
  if (o_.every_tokens > 0 && since_ >= o_.every_tokens) return true;
  return o_.sentence_end && sentence_ && since_ >= std::max(1, o_.min_tokens);
}

void OutputGate::passed() {
  checked_bytes_ = text_.size();
  since_ = 0;
  sentence_ = false;
  ++checks_;
}

}  // namespace g4
