#include "eval/kld.h"

#include <algorithm>
#include <cmath>

#include "eval/perplexity.h"
#include "io/gguf.h"

namespace g4 {

namespace {

Status same_vocabulary(const Engine& a, const Engine& b) {
  const int va = a.model().config().vocab_size, vb = b.model().config().vocab_size;
  if (va != vb)
    return Status::error("the models have different vocabularies (" + std::to_string(va) + " vs " +
                         std::to_string(vb) + " tokens)");
  const GgufValue* ta = a.file().find("tokenizer.ggml.tokens");
  const GgufValue* tb = b.file().find("tokenizer.ggml.tokens");
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

}  // namespace

Result<KldResult> kl_divergence(Engine& base, Engine& model, const std::string& text, int64_t ctx,
                                int max_chunks,
                                const std::function<void(size_t, size_t)>& on_chunk) {
  if (auto s = same_vocabulary(base, model); !s.ok()) return s;
  if (ctx < 3) return Status::error("chunk size must be at least 3");
  if (ctx > base.options().n_ctx || ctx > model.options().n_ctx)
    return Status::error("chunk size " + std::to_string(ctx) + " exceeds an engine's context");
  // The chunking of eval/perplexity.h.
  const auto ids = model.tokenizer().encode(text, false, false);
  KldResult r;
  r.n_tokens_text = ids.size();
  const size_t per = size_t(ctx - 1);
  std::vector<std::vector<int32_t>> chunks;
  for (size_t b = 0; b < ids.size(); b += per) {
    const size_t n = std::min(per, ids.size() - b);
    if (n < 2) break;
    std::vector<int32_t> c{int32_t(model.tokenizer().bos())};
    c.insert(c.end(), ids.begin() + long(b), ids.begin() + long(b + n));
    chunks.push_back(std::move(c));
    if (max_chunks > 0 && int(chunks.size()) >= max_chunks) break;
  }
  if (chunks.empty())
    return Status::error("the text is too short (" + std::to_string(ids.size()) + " tokens)");
  const int vocab = model.model().config().vocab_size;
  std::vector<double> kls;
  double nll_base = 0, nll_model = 0;
  size_t agree = 0;
  for (size_t c = 0; c < chunks.size(); ++c) {
    const auto& chunk = chunks[c];
    const size_t rows = chunk.size() - 1;
    std::vector<float> base_lp;  // the base's log-probabilities, then its logits are freed
    std::vector<int> base_top(rows);
    {
      Session s(base);
      auto lg = s.logits_all(chunk);
      if (!lg.ok()) return lg.status();
      base_lp = std::move(lg).value();
      for (size_t i = 0; i < rows; ++i) {
        float* row = base_lp.data() + i * size_t(vocab);
        const double lse = logsumexp(row, vocab);
        nll_base += lse - double(row[chunk[i + 1]]);
        base_top[i] = top_index(row, vocab);
        for (int k = 0; k < vocab; ++k) row[k] = float(double(row[k]) - lse);
      }
    }
    Session s(model);
    auto lg = s.logits_all(chunk);
    if (!lg.ok()) return lg.status();
    for (size_t i = 0; i < rows; ++i) {
      const float* row = lg.value().data() + i * size_t(vocab);
      const float* lpb = base_lp.data() + i * size_t(vocab);
      const double lse = logsumexp(row, vocab);
      nll_model += lse - double(row[chunk[i + 1]]);
      double kl = 0;
      for (int k = 0; k < vocab; ++k) {
        const double pb = std::exp(double(lpb[k]));
        kl += pb * (double(lpb[k]) - (double(row[k]) - lse));
      }
      kls.push_back(std::max(0.0, kl));
      agree += top_index(row, vocab) == base_top[i] ? 1 : 0;
    }
    if (on_chunk) on_chunk(c + 1, chunks.size());
  }
  r.n_chunks = chunks.size();
  r.n_predicted = kls.size();
  const double n = double(kls.size());
  r.ppl_base = std::exp(nll_base / n);
  r.ppl_model = std::exp(nll_model / n);
  double sum = 0;
  for (double k : kls) sum += k;
  r.mean_kl = sum / n;
  std::sort(kls.begin(), kls.end());
  r.max_kl = kls.back();
  // Nearest-rank 99th percentile.
  r.p99_kl = kls[std::min(kls.size() - 1, size_t(std::ceil(0.99 * n)) - 1)];
  r.top1_agreement = double(agree) / n;
  return r;
}

}  // namespace g4
