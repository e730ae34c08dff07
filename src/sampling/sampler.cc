#include "sampling/sampler.h"

#include <algorithm>
#include <cmath>

namespace g4 {

Status SamplingParams::validate() const {
  if (!(temperature >= 0.f) || temperature > 100.f)
    return Status::error("temperature must be in [0, 100]");
  if (top_k < 0) return Status::error("top_k must be >= 0");
  if (!(top_p > 0.f && top_p <= 1.f)) return Status::error("top_p must be in (0, 1]");
  if (!(min_p >= 0.f && min_p <= 1.f)) return Status::error("min_p must be in [0, 1]");
  if (!(repetition_penalty > 0.f)) return Status::error("repetition_penalty must be > 0");
  if (!std::isfinite(presence_penalty) || !std::isfinite(frequency_penalty)) {
    return Status::error("penalties must be finite");
  }
  return Status();
}

int32_t argmax(const float* logits, int vocab) {
  int32_t best = 0;
  for (int i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) {}

void Sampler::accept(int32_t id) {
  history_.push_back(id);
  counts_[id]++;
  if (p_.penalty_last_n >= 0 && int(history_.size()) > p_.penalty_last_n) {
    const int32_t old = history_[history_.size() - size_t(p_.penalty_last_n) - 1];
    if (--counts_[old] == 0) counts_.erase(old);
  }
}

int32_t Sampler::sample(const float* logits, int vocab) {
  const bool penalties =
      p_.repetition_penalty != 1.f || p_.presence_penalty != 0.f || p_.frequency_penalty != 0.f;
  auto penalised = [&](int32_t id, float z) {
    auto it = counts_.find(id);
    if (it == counts_.end()) return z;
    z = z > 0 ? z / p_.repetition_penalty : z * p_.repetition_penalty;
    return z - float(it->second) * p_.frequency_penalty - p_.presence_penalty;
  };
  if (p_.temperature <= 0.f) {
    if (!penalties) return argmax(logits, vocab);
    int32_t best = 0;
    float bz = penalised(0, logits[0]);
    for (int i = 1; i < vocab; ++i) {
      const float z = counts_.count(i) ? penalised(i, logits[i]) : logits[i];
      if (z > bz) {
        bz = z;
        best = i;
      }
    }
    return best;
  }
  cand_.resize(size_t(vocab));
  for (int i = 0; i < vocab; ++i) cand_[size_t(i)] = {i, logits[i]};
  if (penalties) {
    for (const auto& [id, n] : counts_) {
      if (id >= 0 && id < vocab) cand_[size_t(id)].logit = penalised(id, logits[id]);
    }
  }
  auto by_logit = [](const Cand& a, const Cand& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  size_t n = cand_.size();
  if (p_.top_k > 0 && size_t(p_.top_k) < n) {
    // Linear-time selection, then sort only the k survivors. by_logit is a strict total
    // order (ties by id), so this is the same sequence a full sort would start with.
    std::nth_element(cand_.begin(), cand_.begin() + (p_.top_k - 1), cand_.end(), by_logit);
    std::sort(cand_.begin(), cand_.begin() + p_.top_k, by_logit);
    n = size_t(p_.top_k);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // Softmax with temperature over the survivors.
  std::vector<double>& prob = prob_;
  prob.resize(n);
  const double mx = cand_[0].logit;
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    prob[i] = std::exp((double(cand_[i].logit) - mx) / p_.temperature);
    sum += prob[i];
  }
  for (double& q : prob) q /= sum;
  size_t keep = n;
  if (p_.top_p < 1.f) {
    double cum = 0;
    for (size_t i = 0; i < n; ++i) {
      cum += prob[i];
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  if (p_.min_p > 0.f) {
    const double th = prob[0] * p_.min_p;
    size_t m = 1;
    while (m < keep && prob[m] >= th) ++m;
    keep = m;
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += prob[i];
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_);
  for (size_t i = 0; i < keep; ++i) {
    r -= prob[i];
    if (r <= 0) return cand_[i].id;
  }
  return cand_[keep - 1].id;
}

}  // namespace g4
