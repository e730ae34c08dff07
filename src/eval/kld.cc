#include "eval/kld.h"

#include <algorithm>
#include <cmath>
#include <span>

#include "eval/perplexity.h"
#include "io/gguf.h"
#include "runtime/kv_cache.h"
#include "runtime/step_batch.h"

namespace g4 {

namespace {

Status same_vocabulary(const Engine& a, const Engine& b) {
  const int va = a.model().config().vocab_size, vb = b.model().config().vocab_size;
  if (va != vb)
    return Status::error("the models have different vocabularies (" + std::to_string(va) + " vs " +
                         std::to_string(vb) + " tokens)");
  const GgufValue* ta = a.file().find("tokenizer.ggml.tokens");
  const GgufValue* tb = b.file().find("tokenizer.ggml.tokens");
  if (ta == nullptr && tb == nullptr) return {};  // token-id-only files: the sizes agree
  if (ta == nullptr || tb == nullptr || ta->strings != tb->strings)
    return Status::error("the models have different vocabularies (tokenizer.ggml.tokens differ)");
  return {};
}

int top_index(const float* row, int n) {
  int best = 0;
  for (int k = 1; k < n; ++k)
    if (row[k] > row[best]) best = k;
  return best;
}

// The base's argmax and how far it leads the next best (in the row's units).
struct Top {
  int index = 0;
  double lead = 0;
};
Top top_and_lead(const float* row, int n) {
  Top t{top_index(row, n), 0};
  float second = -INFINITY;
  for (int k = 0; k < n; ++k)
    if (k != t.index) second = std::max(second, row[k]);
  t.lead = n > 1 ? double(row[t.index]) - double(second) : INFINITY;
  return t;
}

// Running sums over scored positions.
struct Tally {
  std::vector<double> kls;
  double nll_base = 0, nll_model = 0;
  size_t agree = 0;
  size_t clear = 0, clear_agree = 0;
  std::vector<double> miss_leads;  // the base's lead where the argmaxes differ
};

// One scored position: the base's row as log-probabilities (lpb, argmax base_top, and its
// NLL already counted, its argmax and lead) against the model's raw logits.
void score_row(const float* lpb, const Top& base_top, const float* row, int vocab, int32_t target,
               Tally& t) {
  const double lse = logsumexp(row, vocab);
  t.nll_model += lse - double(row[target]);
  double kl = 0;
  for (int k = 0; k < vocab; ++k) {
    const double pb = std::exp(double(lpb[k]));
    kl += pb * (double(lpb[k]) - (double(row[k]) - lse));
  }
  t.kls.push_back(std::max(0.0, kl));
  const bool same = top_index(row, vocab) == base_top.index;
  t.agree += same ? 1 : 0;
  if (base_top.lead >= KldResult::kClearLead) {
    ++t.clear;
    t.clear_agree += same ? 1 : 0;
  }
  if (!same) t.miss_leads.push_back(base_top.lead);
}

// The base's row to log-probabilities in place; counts its NLL, returns its argmax and lead
// (a difference of logits is one of log-probabilities).
Top base_row(float* row, int vocab, int32_t target, Tally& t) {
  const double lse = logsumexp(row, vocab);
  t.nll_base += lse - double(row[target]);
  const Top top = top_and_lead(row, vocab);
  for (int k = 0; k < vocab; ++k) row[k] = float(double(row[k]) - lse);
  return top;
}

// One engine's own KV cache for one chunk, stepped by hand (Session keeps every row).
struct Stepper {
  Engine& e;
  KvCache kv;
  StepOutput out;
  explicit Stepper(Engine& engine)
      : e(engine), kv(engine.model().kv_geometry(), engine.kv_options()) {}
  Status init() { return kv.add_sequence(0); }
  // prompt: the unscored part (read as a prompt); scored steps are decoding steps when of one
  // token, as in generation.
  Status step(const std::vector<int32_t>& ids, size_t b, size_t n, bool all_logits,
              bool prompt = false) {
    StepBatch batch;
    batch.seqs.push_back(
        {0, std::span<const int32_t>(ids.data() + b, n), int64_t(b), all_logits, prompt});
    return e.model().forward(batch, kv, e.exec(), out);
  }
  // Reads ids[b, e) in steps of at most max_chunk tokens, without logits.
  Status prefill(const std::vector<int32_t>& ids, size_t b, size_t end) {
    for (; b < end; b += size_t(kv.max_chunk())) {
      Status s = step(ids, b, std::min(end, b + size_t(kv.max_chunk())) - b, false, true);
      if (!s.ok()) return s;
    }
    return {};
  }
};

// The last o.last positions of `chunk`, both engines side by side.
Status score_tail(Engine& base, Engine& model, const std::vector<int32_t>& chunk,
                  const KldOptions& o, int vocab, Tally& t,
                  const std::function<void(size_t)>& on_rows) {
  const size_t rows = chunk.size() - 1;
  const size_t first = rows - std::min(rows, size_t(o.last));
  Stepper sb(base), sm(model);
  if (auto s = sb.init(); !s.ok()) return s;
  if (auto s = sm.init(); !s.ok()) return s;
  if (auto s = sb.prefill(chunk, 0, first); !s.ok()) return s;
  if (auto s = sm.prefill(chunk, 0, first); !s.ok()) return s;
  const size_t step =
      size_t(std::clamp<int64_t>(o.step, 1, std::min(sb.kv.max_chunk(), sm.kv.max_chunk())));
  for (size_t b = first; b < rows; b += step) {
    const size_t n = std::min(step, rows - b);
    if (auto s = sb.step(chunk, b, n, true); !s.ok()) return s;
    if (auto s = sm.step(chunk, b, n, true); !s.ok()) return s;
    for (size_t i = 0; i < n; ++i) {
      float* lpb = sb.out.logits.data() + i * size_t(vocab);
      const Top top = base_row(lpb, vocab, chunk[b + i + 1], t);
      score_row(lpb, top, sm.out.row(i), vocab, chunk[b + i + 1], t);
    }
    if (on_rows) on_rows(n);
  }
  return {};
}

}  // namespace

Result<KldResult> kl_divergence_chunks(Engine& base, Engine& model,
                                       const std::vector<std::vector<int32_t>>& chunks,
                                       const KldOptions& o,
                                       const std::function<void(size_t, size_t)>& on_progress) {
  if (auto s = same_vocabulary(base, model); !s.ok()) return s;
  if (chunks.empty()) return Status::error("nothing to score");
  for (const auto& c : chunks) {
    if (c.size() < 2) return Status::error("a chunk needs at least 2 tokens");
    if (int64_t(c.size()) > base.options().n_ctx || int64_t(c.size()) > model.options().n_ctx)
      return Status::error("a chunk of " + std::to_string(c.size()) +
                           " tokens exceeds an engine's context");
  }
  if (o.last < 0 || o.step < 1) return Status::error("kld: last must be >= 0 and step >= 1");
  const int vocab = model.model().config().vocab_size;
  Tally t;
  if (o.last > 0) {
    size_t total = 0, done = 0;
    for (const auto& c : chunks) total += std::min(c.size() - 1, size_t(o.last));
    for (const auto& chunk : chunks) {
      Status s = score_tail(base, model, chunk, o, vocab, t, [&](size_t n) {
        done += n;
        if (on_progress) on_progress(done, total);
      });
      if (!s.ok()) return s;
    }
  } else {
    for (size_t c = 0; c < chunks.size(); ++c) {
      const auto& chunk = chunks[c];
      const size_t rows = chunk.size() - 1;
      std::vector<float> base_lp;  // the base's log-probabilities, then its logits are freed
      std::vector<Top> base_top(rows);
      {
        Session s(base);
        auto lg = s.logits_all(chunk);
        if (!lg.ok()) return lg.status();
        base_lp = std::move(lg).value();
        for (size_t i = 0; i < rows; ++i)
          base_top[i] = base_row(base_lp.data() + i * size_t(vocab), vocab, chunk[i + 1], t);
      }
      Session s(model);
      auto lg = s.logits_all(chunk);
      if (!lg.ok()) return lg.status();
      for (size_t i = 0; i < rows; ++i)
        score_row(base_lp.data() + i * size_t(vocab), base_top[i],
                  lg.value().data() + i * size_t(vocab), vocab, chunk[i + 1], t);
      if (on_progress) on_progress(c + 1, chunks.size());
    }
  }
  KldResult r;
  r.n_chunks = chunks.size();
  r.n_predicted = t.kls.size();
  const double n = double(t.kls.size());
  r.ppl_base = std::exp(t.nll_base / n);
  r.ppl_model = std::exp(t.nll_model / n);
  double sum = 0;
  for (double k : t.kls) sum += k;
  r.mean_kl = sum / n;
  r.top1_agreement = double(t.agree) / n;
  r.clear_positions = t.clear;
  r.top1_agreement_clear = t.clear > 0 ? double(t.clear_agree) / double(t.clear) : 1.0;
  if (!t.miss_leads.empty()) {
    auto mid = t.miss_leads.begin() + std::ptrdiff_t(t.miss_leads.size() / 2);
    std::nth_element(t.miss_leads.begin(), mid, t.miss_leads.end());
    r.miss_lead_median = *mid;
  }
  r.kl = t.kls;
  std::sort(t.kls.begin(), t.kls.end());
  r.max_kl = t.kls.back();
  // Nearest-rank 99th percentile.
  r.p99_kl = t.kls[std::min(t.kls.size() - 1, size_t(std::ceil(0.99 * n)) - 1)];
  return r;
}

Result<KldResult> kl_divergence(Engine& base, Engine& model, const std::string& text, int64_t ctx,
                                const KldOptions& o,
                                const std::function<void(size_t, size_t)>& on_progress) {
  if (ctx < 3) return Status::error("chunk size must be at least 3");
  if (ctx > base.options().n_ctx || ctx > model.options().n_ctx)
    return Status::error("chunk size " + std::to_string(ctx) + " exceeds an engine's context");
  // The chunking of eval/perplexity.h.
  const auto ids = model.tokenizer().encode(text, false, false);
  const size_t per = size_t(ctx - 1);
  std::vector<std::vector<int32_t>> chunks;
  for (size_t b = 0; b < ids.size(); b += per) {
    const size_t n = std::min(per, ids.size() - b);
    if (n < 2) break;
    std::vector<int32_t> c{int32_t(model.tokenizer().bos())};
    c.insert(c.end(), ids.begin() + long(b), ids.begin() + long(b + n));
    chunks.push_back(std::move(c));
    if (o.max_chunks > 0 && int(chunks.size()) >= o.max_chunks) break;
  }
  if (chunks.empty())
    return Status::error("the text is too short (" + std::to_string(ids.size()) + " tokens)");
  auto r = kl_divergence_chunks(base, model, chunks, o, on_progress);
  if (r.ok()) r.value().n_tokens_text = ids.size();
  return r;
}

Result<KldResult> kl_divergence(Engine& base, Engine& model, const std::string& text, int64_t ctx,
                                int max_chunks,
                                const std::function<void(size_t, size_t)>& on_chunk) {
  KldOptions o;
  o.max_chunks = max_chunks;
  return kl_divergence(base, model, text, ctx, o, on_chunk);
}

}  // namespace g4
