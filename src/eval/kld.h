// KL divergence of a model against a base model on a text (llama-perplexity's --kl-divergence
// report): both models score the same chunks (src/eval/perplexity.h chunking) and, for every
// predicted position, KL(base || model) over the full vocabulary, in double precision:
// sum_v p_base(v) * (log p_base(v) - log p_model(v)). Logits are held for one chunk of one
// model at a time plus the base's log-probabilities for that chunk.
//
// With KldOptions::last > 0 only the last `last` predicted positions of each chunk are scored
// (KL at 32K over 2K positions): both engines read the rest of the chunk without logits, then
// advance side by side `step` tokens at a time and compare each scored row as it comes, so
// memory is two steps of logits, not the chunk's. step 1 makes every scored position a
// decoding step (where sparse routing applies by default); a larger step goes through the
// prompt path (routed only with --sparse-prefill).
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
  // The same over the positions where the base's best token leads its second by at least
  // kClearLead nats of log-probability (clear_positions of them): whether disagreements are
  // near-ties. miss_lead_median: the base's lead at the positions whose argmaxes differ
  // (median; 0 when none differ).
  static constexpr double kClearLead = 1.0;
  double top1_agreement_clear = 0;
  size_t clear_positions = 0;
  double miss_lead_median = 0;
  std::vector<double> kl;  // every scored position's KL, in chunk then position order
};

struct KldOptions {
  int max_chunks = 0;  // 0 = all
  int64_t last = 0;    // score only the last `last` positions of each chunk (0 = all)
  int64_t step = 1;    // with `last`: tokens per forward step over the scored positions
};

// Errors when the two models' vocabularies differ.
Result<KldResult> kl_divergence(Engine& base, Engine& model, const std::string& text, int64_t ctx,
                                int max_chunks = 0,
                                const std::function<void(size_t, size_t)>& on_chunk = {});
Result<KldResult> kl_divergence(Engine& base, Engine& model, const std::string& text, int64_t ctx,
                                const KldOptions& o,
                                const std::function<void(size_t, size_t)>& on_progress = {});
// The same on chunks given as token ids (each scored as a whole; no chunking, no <bos> added).
Result<KldResult> kl_divergence_chunks(Engine& base, Engine& model,
                                       const std::vector<std::vector<int32_t>>& chunks,
                                       const KldOptions& o,
                                       const std::function<void(size_t, size_t)>& on_progress = {});

}  // namespace g4
