// Perplexity with a fixed, documented chunking (shared by `g4 perplexity`, the golden test
// and scripts/gen_logit_fixtures.py): the text is tokenized without <bos> and cut into
// chunks of ctx-1 tokens (a last chunk under 2 tokens is dropped); each chunk is scored
// fresh as [<bos>] + chunk, counting the NLL of every chunk token (the first predicted from <bos>).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "g4/engine.h"

namespace g4 {

struct PerplexityResult {
  size_t n_tokens_text = 0;
  size_t n_predicted = 0;
  double nll_sum = 0;
  double perplexity = 0;
  std::vector<double> chunk_perplexity;
};

// on_chunk(done, total, running_ppl) after each chunk. max_chunks 0 = all.
Result<PerplexityResult> perplexity(
    Engine& e, const std::string& text, int64_t ctx, int max_chunks = 0,
    const std::function<void(size_t, size_t, double)>& on_chunk = {});

// log(sum(exp(row))) in double precision.
double logsumexp(const float* row, int n);

}  // namespace g4
