// Sampler chain: penalties -> temperature -> top-k -> top-p -> min-p -> draw.
// temperature <= 0 is greedy (argmax, ties to the lowest id). Same seed => same draws.
// Per-sequence state (RNG, penalty history); not thread-safe, one per sequence.
#pragma once
#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

#include "core/status.h"

namespace g4 {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 40;                   // 0 = off
  float top_p = 0.95f;              // 1 = off
  float min_p = 0.05f;              // 0 = off
  float repetition_penalty = 1.0f;  // llama.cpp style: divide positive / multiply negative logits
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int penalty_last_n = 64;  // window of recent tokens the penalties look at (-1 = all)
  uint64_t seed = 0;

  Status validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  // Chooses a token from logits[vocab]. `banned` ids (e.g. padding) are never chosen.
  int32_t sample(const float* logits, int vocab);
  // Records a token (prompt or generated) for the penalties.
  void accept(int32_t id);
  const SamplingParams& params() const { return p_; }

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<int32_t> history_;
  struct Cand {
    int32_t id;
    float logit;
  };
  std::vector<Cand> cand_;  // reused between calls
  template <class Less>
  int32_t sample_top_k(const float* logits, int vocab, const Less& by_logit);
  // A draw over the first `keep` candidates with weights w (cand_ order).
  int32_t draw(const std::vector<double>& w, size_t keep);
  std::vector<float> pen_;  // the logits row with penalties applied (reused)
  std::vector<double> prob_;
  std::unordered_map<int32_t, int> counts_;
};

int32_t argmax(const float* logits, int vocab);

}  // namespace g4
