// KL divergence of a model against a base model on a text (llama-perplexity's --kl-divergence
// report): both models score the same chunks (src/eval/perplexity.h chunking) and, for every
// predicted position, KL(base || model) over the full vocabulary, in double precision:
// sum_v p_base(v) * (log p_base(v) - log p_model(v)). Logits are held for one chunk of one
// model at a time plus the base's log-probabilities for that chunk.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "g4/engine.h"

namespace g4 {

struct KldResult {
  size_t n_tokens_text = 0;
  size_t n_chunks = 0;
  size_t n_predicted = 0;
  double ppl_base = 0, ppl_model = 0;
  double mean_kl = 0, p99_kl = 0, max_kl = 0;
  double top1_agreement = 0;  // share of positions where both argmaxes are equal
};

// Errors when the two models' vocabularies differ.
Result<KldResult> kl_divergence(Engine& base, Engine& model, const std::string& text, int64_t ctx,
                                int max_chunks = 0,
                                const std::function<void(size_t, size_t)>& on_chunk = {});

}  // namespace g4
