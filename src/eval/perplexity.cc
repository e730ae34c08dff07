#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>

namespace g4 {

double logsumexp(const float* row, int n) {
  double mx = row[0];
  for (int k = 1; k < n; ++k) mx = std::max(mx, double(row[k]));
  double se = 0;
  for (int k = 0; k < n; ++k) se += std::exp(double(row[k]) - mx);
  return mx + std::log(se);
}

Result<PerplexityResult> perplexity(Engine& e, const std::string& text, int64_t ctx, int max_chunks,
                                    const std::function<void(size_t, size_t, double)>& on_chunk) {
  if (ctx < 3) return Status::error("perplexity chunk size must be at least 3");
  if (ctx > e.options().n_ctx) {
    return Status::error("chunk size " + std::to_string(ctx) + " exceeds the engine context " +
                         std::to_string(e.options().n_ctx));
  }
  PerplexityResult r;
  const auto ids = e.tokenizer().encode(text, false, false);
  r.n_tokens_text = ids.size();
  const size_t per = size_t(ctx - 1);
  std::vector<std::vector<int32_t>> chunks;
  for (size_t b = 0; b < ids.size(); b += per) {
    const size_t n = std::min(per, ids.size() - b);
    if (n < 2) break;
    std::vector<int32_t> c{int32_t(e.tokenizer().bos())};
    c.insert(c.end(), ids.begin() + long(b), ids.begin() + long(b + n));
    chunks.push_back(std::move(c));
    if (max_chunks > 0 && int(chunks.size()) >= max_chunks) break;
  }
  if (chunks.empty())
    return Status::error("the text is too short (" + std::to_string(ids.size()) + " tokens)");
  const int vocab = e.model().config().vocab_size;
  Session s(e);
  for (size_t c = 0; c < chunks.size(); ++c) {
    auto lg = s.logits_all(chunks[c]);
    if (!lg.ok()) return lg.status();
    double cn = 0;
    for (size_t i = 0; i + 1 < chunks[c].size(); ++i) {
      const float* row = lg.value().data() + i * size_t(vocab);
      cn += logsumexp(row, vocab) - double(row[chunks[c][i + 1]]);
    }
    r.nll_sum += cn;
    r.n_predicted += chunks[c].size() - 1;
    r.chunk_perplexity.push_back(std::exp(cn / double(chunks[c].size() - 1)));
    if (on_chunk) on_chunk(c + 1, chunks.size(), std::exp(r.nll_sum / double(r.n_predicted)));
  }
  r.perplexity = std::exp(r.nll_sum / double(r.n_predicted));
  return r;
}

}  // namespace g4
