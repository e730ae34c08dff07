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
  if (penalties && !counts_.empty()) {
    // One row with the penalties applied to the tokens seen (not a lookup per vocabulary entry).
    pen_.assign(logits, logits + vocab);
    for (const auto& [id, n] : counts_) {
      if (id < 0 || id >= vocab) continue;
      float z = logits[id];
      z = z > 0 ? z / p_.repetition_penalty : z * p_.repetition_penalty;
      pen_[size_t(id)] = z - float(n) * p_.frequency_penalty - p_.presence_penalty;
    }
    logits = pen_.data();
  }
  if (p_.temperature <= 0.f) return argmax(logits, vocab);
  auto by_logit = [](const Cand& a, const Cand& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  if (p_.top_k > 0 && p_.top_k < vocab) return sample_top_k(logits, vocab, by_logit);
  // No top-k: only tokens that can be drawn (a constraint or a ban leaves -inf), weighted in id
  // order; sorting, the expensive part with 262,144 candidates, happens only for what top-p or
  // min-p must rank, and only as far as they reach.
  cand_.clear();
  float mx = -INFINITY;
  for (int i = 0; i < vocab; ++i) {
    const float z = logits[i];
    if (z == -INFINITY) continue;
    cand_.push_back({i, z});
    mx = std::max(mx, z);
  }
  if (cand_.empty()) return argmax(logits, vocab);
  std::vector<double>& w = prob_;
  w.resize(cand_.size());
  double sum = 0;
  const float inv_t = 1.0f / p_.temperature;  // single-precision exp: relative error ~1e-7
  for (size_t i = 0; i < cand_.size(); ++i) {
    w[i] = double(std::exp((cand_[i].logit - mx) * inv_t));
    sum += w[i];
  }
  size_t keep = cand_.size();
  if (p_.min_p > 0.f || p_.top_p < 1.f) {
    // The candidates min-p keeps (weight >= min_p x the top weight, 1) lead the ranking; rank
    // them, or with top-p alone a growing head of the ranking until it holds top_p of the mass.
    size_t head = cand_.size();
    if (p_.min_p > 0.f) {
      const double th = double(p_.min_p);
      size_t m = 0;
      for (size_t i = 0; i < cand_.size(); ++i)
        if (w[i] >= th) std::swap(cand_[m++], cand_[i]);
      head = m;
    }
    auto rank = [&](size_t k) {
      if (k < head)
        std::nth_element(cand_.begin(), cand_.begin() + long(k), cand_.begin() + long(head),
                         by_logit);
      std::sort(cand_.begin(), cand_.begin() + long(std::min(k, head)), by_logit);
    };
    size_t k = std::min<size_t>(64, head);
    keep = head;  // min-p alone: the set is enough, its order does not matter
    while (p_.top_p < 1.f) {
      rank(k);
      keep = k;
      double cum = 0;
      bool reached = false;
      for (size_t i = 0; i < k; ++i) {
        cum += std::exp((double(cand_[i].logit) - mx) / p_.temperature) / sum;
        if (cum >= p_.top_p) {
          keep = i + 1;
          reached = true;
          break;
        }
      }
      if (reached || k == head) break;
      k = std::min(head, k * 8);
    }
    w.resize(keep);
    for (size_t i = 0; i < keep; ++i)
      w[i] = std::exp((double(cand_[i].logit) - mx) / p_.temperature);
  }
  return draw(w, keep);
}

template <class Less>
int32_t Sampler::sample_top_k(const float* logits, int vocab, const Less& by_logit) {
  // One pass with a heap of the k best so far (its top the worst of them): most tokens lose
  // one comparison against it. by_logit is a strict total order (ties by id), so the k
  // survivors, sorted, are the sequence a full sort would start with.
  const size_t n = size_t(p_.top_k);
  cand_.clear();
  cand_.reserve(n);
  for (int i = 0; i < vocab; ++i) {
    const Cand c{i, logits[i]};
    if (cand_.size() < n) {
      cand_.push_back(c);
      std::push_heap(cand_.begin(), cand_.end(), by_logit);
    } else if (by_logit(c, cand_.front())) {
      std::pop_heap(cand_.begin(), cand_.end(), by_logit);
      cand_.back() = c;
      std::push_heap(cand_.begin(), cand_.end(), by_logit);
    }
  }
  std::sort(cand_.begin(), cand_.end(), by_logit);
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
  return draw(prob, keep);
}

int32_t Sampler::draw(const std::vector<double>& w, size_t keep) {
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += w[i];
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_);
  for (size_t i = 0; i < keep; ++i) {
    r -= w[i];
    if (r <= 0) return cand_[i].id;
  }
  return cand_[keep - 1].id;
}

}  // namespace g4
