#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "sampling/sampler.h"

namespace g4 {

namespace {

// Regularised lower incomplete gamma P(a, x): series for x < a + 1, Lentz's continued fraction
// for Q = 1 - P otherwise (Numerical Recipes, 3rd ed., §6.2).
double gamma_p(double a, double x) {
  if (x <= 0) return 0;
  const double log_front = a * std::log(x) - x - std::lgamma(a);
  if (x < a + 1) {
    double term = 1 / a, sum = term;
    for (int n = 1; n < 1000 && std::fabs(term) > 1e-16 * std::fabs(sum); ++n) {
      term *= x / (a + n);
      sum += term;
    }
    return sum * std::exp(log_front);
  }
  const double tiny = 1e-300;
  double b = x + 1 - a, c = 1 / tiny, d = 1 / b, h = d;
  for (int i = 1; i < 1000; ++i) {
    const double an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (std::fabs(d) < tiny) d = tiny;
    c = b + an / c;
    if (std::fabs(c) < tiny) c = tiny;
    d = 1 / d;
    const double del = d * c;
    h *= del;
    if (std::fabs(del - 1) < 1e-16) break;
  }
  return 1 - std::exp(log_front) * h;
}

// The chi-square value a goodness-of-fit statistic with `df` degrees of freedom exceeds with
// probability `alpha`: the x with P(df/2, x/2) = 1 - alpha, by bisection.
double chi_square_critical(int df, double alpha) {
  double lo = 0, hi = 10.0 * df + 100;
  for (int i = 0; i < 200; ++i) {
    const double mid = (lo + hi) / 2;
    (gamma_p(df / 2.0, mid / 2) < 1 - alpha ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

// softmax(z / temperature) in double.
std::vector<double> softmax(const std::vector<float>& z, double temperature) {
  const double mx = *std::max_element(z.begin(), z.end());
  std::vector<double> p(z.size());
  double sum = 0;
  for (size_t i = 0; i < z.size(); ++i) sum += p[i] = std::exp((double(z[i]) - mx) / temperature);
  for (double& q : p) q /= sum;
  return p;
}

// Keeps the ids in `keep` and renormalises: the distribution a truncating sampler draws from.
std::vector<double> restrict_to(std::vector<double> p, const std::vector<bool>& keep) {
  double total = 0;
  for (size_t i = 0; i < p.size(); ++i) total += keep[i] ? p[i] : 0;
  for (size_t i = 0; i < p.size(); ++i) p[i] = keep[i] ? p[i] / total : 0;
  return p;
}

// Ids sorted by descending probability, ties by ascending id.
std::vector<size_t> by_prob(const std::vector<double>& p) {
  std::vector<size_t> order(p.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
  return order;
}

struct Fit {
  double chi2 = 0;
  int df = 0;
  size_t outside = 0;  // draws of ids whose expected probability is 0
};

// Pearson's chi-square of `draws` samples against `expected` (ids with probability 0 are not
// cells; any draw of one is counted in `outside`). Every expected cell count must be >= 5 for
// the chi-square approximation; the tests pick distributions where it is.
Fit fit(Sampler& s, const std::vector<float>& z, const std::vector<double>& expected, int draws) {
  std::vector<int> count(z.size(), 0);
  for (int i = 0; i < draws; ++i) {
    const int32_t id = s.sample(z.data(), int(z.size()));
    EXPECT_GE(id, 0);
    EXPECT_LT(size_t(id), z.size());
    if (id >= 0 && size_t(id) < z.size()) ++count[size_t(id)];
  }
  Fit f;
  for (size_t i = 0; i < z.size(); ++i) {
    if (expected[i] == 0) {
      f.outside += size_t(count[i]);
      continue;
    }
    const double e = expected[i] * draws;
    EXPECT_GE(e, 5.0) << "cell " << i << " too small for a chi-square test";
    f.chi2 += (count[i] - e) * (count[i] - e) / e;
    ++f.df;
  }
  f.df -= 1;
  return f;
}

// Draws `draws` tokens and checks they follow `expected`: chi-square below the p = 0.001
// critical value for its degrees of freedom, and no draw outside the support.
void expect_follows(Sampler& s, const std::vector<float>& z, const std::vector<double>& expected,
                    int draws = 20000) {
  const Fit f = fit(s, z, expected, draws);
  ASSERT_GE(f.df, 1) << "a one-cell distribution needs no chi-square";
  const double crit = chi_square_critical(f.df, 0.001);
  EXPECT_LT(f.chi2, crit) << "df " << f.df;
  EXPECT_EQ(f.outside, 0u) << "draws of truncated ids";
}

SamplingParams plain(float temperature, uint64_t seed) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.f;
  p.min_p = 0.f;
  p.seed = seed;
  return p;
}

// Eight logits, positive and negative, no ties: softmax at T = 1 runs from ~0.33 to ~0.01.
const std::vector<float> kLogits = {1.2f, -0.4f, 0.3f, 2.1f, -1.5f, 0.8f, 1.7f, -0.9f};

}  // namespace

TEST(Sampler, GreedyIsArgmaxLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p);
  const float z[5] = {0.1f, 3.f, 3.f, -1.f, 2.f};
  EXPECT_EQ(s.sample(z, 5), 1);
}

TEST(Sampler, SameSeedSameDraws) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.f;
  p.min_p = 0.f;
  p.seed = 42;
  std::vector<float> z(100);
  for (int i = 0; i < 100; ++i) z[size_t(i)] = std::sin(float(i));
  Sampler a(p), b(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(a.sample(z.data(), 100), b.sample(z.data(), 100));
}

// Top-k selection (nth_element + sort of k) picks the same ordered survivors as a full sort:
// with the one dropped candidate's probability underflowing to 0, top_k = vocab - 1 and
// top_k = 0 (full sort) must give identical draws, ties (broken by id) included.
TEST(Sampler, TopKSelectionMatchesFullSort) {
  const int vocab = 5000;
  std::vector<float> lg(static_cast<size_t>(vocab));
  for (int i = 0; i < vocab; ++i) lg[size_t(i)] = float((i * 7919) % 61) * 0.05f;  // many ties
  lg[123] = -2000.f;  // exp(-2000) == 0 in double
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  p.min_p = 0.f;
  p.seed = 9;
  SamplingParams full = p;
  full.top_k = 0;
  p.top_k = vocab - 1;
  Sampler a(p), b(full);
  for (int i = 0; i < 300; ++i) ASSERT_EQ(a.sample(lg.data(), vocab), b.sample(lg.data(), vocab));
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplingParams p;
  p.temperature = 5.f;
  p.top_k = 1;
  p.seed = 3;
  Sampler s(p);
  const float z[4] = {1, 2, 9, 3};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.sample(z, 4), 2);
}

TEST(Sampler, TopPAndMinPCutTheTail) {
  SamplingParams p;
  p.temperature = 1.f;
  p.top_k = 0;
  p.top_p = 0.5f;
  p.min_p = 0.f;
  p.seed = 9;
  const float z[3] = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
  Sampler s(p);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.sample(z, 3), 0);  // 0.6 >= top_p alone
  p.top_p = 1.f;
  p.min_p = 0.4f;  // keep p >= 0.24: ids 0 and 1
  Sampler m(p);
  std::map<int, int> seen;
  for (int i = 0; i < 300; ++i) seen[m.sample(z, 3)]++;
  EXPECT_EQ(seen.count(2), 0u);
  EXPECT_GT(seen[1], 0);
}

TEST(Sampler, PenaltiesDiscourageRepeats) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.f;
  Sampler s(p);
  const float z[2] = {2.f, 1.5f};
  EXPECT_EQ(s.sample(z, 2), 0);
  s.accept(0);
  EXPECT_EQ(s.sample(z, 2), 1);  // 2/2 = 1 < 1.5
  SamplingParams q;
  q.temperature = 0;
  q.presence_penalty = 1.f;
  Sampler t(q);
  t.accept(0);
  EXPECT_EQ(t.sample(z, 2), 1);
}

// The critical-value helper against the chi-square table (NIST/SEMATECH e-Handbook of
// Statistical Methods, 1.3.6.7.4, upper-tail critical values).
TEST(Sampler, ChiSquareCriticalValuesMatchTheTable) {
  EXPECT_NEAR(chi_square_critical(1, 0.001), 10.828, 1e-3);
  EXPECT_NEAR(chi_square_critical(7, 0.001), 24.322, 1e-3);
  EXPECT_NEAR(chi_square_critical(10, 0.001), 29.588, 1e-3);
  EXPECT_NEAR(chi_square_critical(4, 0.05), 9.488, 1e-3);
}

// Draws follow softmax(z / T) with no truncation, at a fixed seed (deterministic): a sampler
// that returns one token, the argmax, or ignores the temperature fails.
TEST(Sampler, DrawsFollowSoftmaxWithTemperature) {
  for (float t : {1.0f, 0.5f, 2.0f}) {
    SCOPED_TRACE(t);
    Sampler s(plain(t, 1234));
    expect_follows(s, kLogits, softmax(kLogits, t));
  }
}

// The test has the power to see a wrong temperature: draws at T = 0.5 (or 1.3) against the
// softmax at T = 1 are rejected.
TEST(Sampler, ChiSquareRejectsAWrongTemperature) {
  for (float t : {0.5f, 1.3f}) {
    Sampler s(plain(t, 1234));
    const Fit f = fit(s, kLogits, softmax(kLogits, 1.0), 20000);
    EXPECT_GT(f.chi2, chi_square_critical(f.df, 0.001)) << "T = " << t;
  }
}

// top-k keeps the k most probable ids and renormalises; the temperature scales the survivors.
TEST(Sampler, TopKDrawsFollowTheTruncatedSoftmax) {
  for (int k : {2, 3, 5}) {
    for (float t : {1.0f, 0.7f}) {
      SCOPED_TRACE(testing::Message() << "k " << k << " T " << t);
      SamplingParams p = plain(t, 77);
      p.top_k = k;
      const auto full = softmax(kLogits, t);
      const auto order = by_prob(full);
      std::vector<bool> keep(kLogits.size(), false);
      for (int i = 0; i < k; ++i) keep[order[size_t(i)]] = true;
      Sampler s(p);
      expect_follows(s, kLogits, restrict_to(full, keep));
    }
  }
}

// top-p keeps the shortest most-probable prefix whose probability reaches p (llama.cpp's
// llama_sampler_top_p_apply: stop at the first cumulative sum >= p), then renormalises.
TEST(Sampler, TopPDrawsFollowTheTruncatedSoftmax) {
  for (float top_p : {0.5f, 0.7f, 0.9f}) {
    SCOPED_TRACE(top_p);
    SamplingParams p = plain(1.f, 5);
    p.top_p = top_p;
    const auto full = softmax(kLogits, 1.0);
    std::vector<bool> keep(kLogits.size(), false);
    double cum = 0;
    for (size_t id : by_prob(full)) {
      keep[id] = true;
      cum += full[id];
      if (cum >= top_p) break;
    }
    Sampler s(p);
    expect_follows(s, kLogits, restrict_to(full, keep));
  }
}

// min-p keeps the ids with probability >= min_p * the largest (llama.cpp's
// llama_sampler_min_p_apply, in logits: z >= z_max + log(min_p)), then renormalises.
TEST(Sampler, MinPDrawsFollowTheTruncatedSoftmax) {
  for (float min_p : {0.1f, 0.3f}) {
    SCOPED_TRACE(min_p);
    SamplingParams p = plain(1.f, 11);
    p.min_p = min_p;
    const auto full = softmax(kLogits, 1.0);
    const double top = *std::max_element(full.begin(), full.end());
    std::vector<bool> keep(kLogits.size());
    for (size_t i = 0; i < full.size(); ++i) keep[i] = full[i] >= min_p * top;
    Sampler s(p);
    expect_follows(s, kLogits, restrict_to(full, keep));
  }
}

// The whole chain in the header's order: top-k, then top-p on the renormalised survivors,
// then min-p.
TEST(Sampler, TopKTopPMinPChainDrawsFollowTheTruncatedSoftmax) {
  SamplingParams p = plain(1.f, 21);
  p.top_k = 6;
  p.top_p = 0.9f;
  p.min_p = 0.1f;
  const auto full = softmax(kLogits, 1.0);
  const auto order = by_prob(full);
  std::vector<bool> keep(kLogits.size(), false);
  for (int i = 0; i < p.top_k; ++i) keep[order[size_t(i)]] = true;
  auto dist = restrict_to(full, keep);
  std::fill(keep.begin(), keep.end(), false);
  double cum = 0;
  for (size_t id : order) {
    keep[id] = true;
    cum += dist[id];
    if (cum >= p.top_p) break;
  }
  dist = restrict_to(dist, keep);
  for (size_t i = 0; i < dist.size(); ++i) keep[i] = dist[i] >= p.min_p * dist[order[0]];
  Sampler s(p);
  expect_follows(s, kLogits, restrict_to(dist, keep));
}

namespace {

// llama.cpp's penalties (llama_sampler_penalties_apply, src/llama-sampling.cpp; the comment
// in sampling/sampler.h): for a token seen count > 0 times in the last penalty_last_n
// accepted tokens (all of them for -1, none for 0),
//   logit = logit <= 0 ? logit * repeat : logit / repeat;
//   logit -= count * frequency + (count > 0) * presence.
std::vector<float> penalised(std::vector<float> z, const std::vector<int32_t>& history,
                             const SamplingParams& p) {
  size_t first = 0;
  if (p.penalty_last_n >= 0)
    first = history.size() - std::min(history.size(), size_t(p.penalty_last_n));
  std::map<int32_t, int> count;
  for (size_t i = first; i < history.size(); ++i) count[history[i]]++;
  for (const auto& [id, n] : count) {
    float& l = z[size_t(id)];
    l = l <= 0 ? l * p.repetition_penalty : l / p.repetition_penalty;
    l -= float(n) * p.frequency_penalty + float(n > 0) * p.presence_penalty;
  }
  return z;
}

size_t argmax_of(const std::vector<float>& z) {
  return size_t(std::max_element(z.begin(), z.end()) - z.begin());  // first = lowest id
}

}  // namespace

// Draws with all three penalties follow the softmax of the adjusted logits (positive and
// negative logits among the repeated ids), and not the softmax of the raw ones.
TEST(Sampler, PenalisedDrawsFollowSoftmaxOfAdjustedLogits) {
  SamplingParams p = plain(1.f, 99);
  p.repetition_penalty = 1.3f;
  p.presence_penalty = 0.4f;
  p.frequency_penalty = 0.2f;
  p.penalty_last_n = -1;
  const std::vector<int32_t> history = {3, 4, 6, 3, 6, 3};  // 3 x3 (z > 0), 4 x1 (z < 0), 6 x2
  const auto adjusted = penalised(kLogits, history, p);
  Sampler s(p);
  for (int32_t id : history) s.accept(id);
  expect_follows(s, kLogits, softmax(adjusted, 1.0));
  Sampler again(p);
  for (int32_t id : history) again.accept(id);
  const Fit raw = fit(again, kLogits, softmax(kLogits, 1.0), 20000);
  EXPECT_GT(raw.chi2, chi_square_critical(raw.df, 0.001)) << "penalties had no visible effect";
}

// Each penalty on its own moves the greedy choice exactly where its formula says.
TEST(Sampler, EachPenaltyChangesTheGreedyChoiceAsItsFormulaSays) {
  struct Case {
    const char* what;
    std::vector<float> z;
    std::vector<int32_t> history;
    float repeat, presence, frequency;
    size_t want;  // argmax of the adjusted logits, worked out in the comment
  };
  const Case cases[] = {
      // 2 / 1.5 = 1.33 < 1.5
      {"repetition, positive logit divided", {2.f, 1.5f}, {0}, 1.5f, 0, 0, 1},
      // -1 * 1.5 = -1.5 < -1.2 (dividing would give -0.67 and keep id 0)
      {"repetition, negative logit multiplied", {-1.f, -1.2f, -3.f}, {0}, 1.5f, 0, 0, 1},
      // 3 - 0.6 = 2.4 > 2: presence does not grow with the count
      {"presence, once per token", {3.f, 2.f}, {0, 0, 0, 0, 0}, 1, 0.6f, 0, 0},
      // 3 - 2 * 0.4 = 2.2 > 2
      {"frequency, two repeats", {3.f, 2.f}, {0, 0}, 1, 0, 0.4f, 0},
      // 3 - 3 * 0.4 = 1.8 < 2
      {"frequency, three repeats", {3.f, 2.f}, {0, 0, 0}, 1, 0, 0.4f, 1},
      // a negative penalty encourages: 1 + 0.6 = 1.6 > 1.5
      {"negative presence", {1.5f, 1.f}, {1}, 1, -0.6f, 0, 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    SamplingParams p = plain(0, 1);
    p.repetition_penalty = c.repeat;
    p.presence_penalty = c.presence;
    p.frequency_penalty = c.frequency;
    ASSERT_EQ(argmax_of(penalised(c.z, c.history, p)), c.want);
    Sampler s(p);
    for (int32_t id : c.history) s.accept(id);
    EXPECT_EQ(size_t(s.sample(c.z.data(), int(c.z.size()))), c.want);
  }
}

// Random logits, histories and penalty settings: the greedy token (temperature 0) and the
// top-k = 1 token (the sampling path) are the argmax of the adjusted logits, including the
// penalty_last_n window (-1 = all, 0 = none). Most cases must change the unpenalised choice,
// so a sampler that ignores penalties, or always returns one token, fails.
TEST(Sampler, GreedyChoiceIsArgmaxOfAdjustedLogits) {
  std::mt19937 rng(2024);
  std::uniform_real_distribution<float> logit(-3.f, 3.f);
  std::uniform_int_distribution<int> token(0, 11);
  const int vocab = 48;
  int changed = 0, cases = 0;
  for (int last_n : {-1, 0, 1, 4, 16}) {
    for (int trial = 0; trial < 40; ++trial) {
      std::vector<float> z(static_cast<size_t>(vocab));
      for (float& v : z) v = logit(rng);
      std::vector<int32_t> history(static_cast<size_t>(1 + trial % 24));
      for (int32_t& id : history) id = token(rng);  // ids 0..11 repeat often
      // Make a repeated id the unpenalised winner so the penalties have something to do.
      z[size_t(history.back())] = 3.5f;
      SamplingParams p = plain(0, uint64_t(trial));
      p.penalty_last_n = last_n;
      p.repetition_penalty = 1.f + 0.1f * float(trial % 5);
      p.presence_penalty = 0.3f * float(trial % 3);
      p.frequency_penalty = 0.25f * float((trial / 3) % 3);
      const auto adjusted = penalised(z, history, p);
      const size_t want = argmax_of(adjusted);
      SamplingParams top1 = p;
      top1.temperature = 0.9f;
      top1.top_k = 1;
      Sampler greedy(p), sampled(top1);
      for (int32_t id : history) {
        greedy.accept(id);
        sampled.accept(id);
      }
      EXPECT_EQ(size_t(greedy.sample(z.data(), vocab)), want) << "last_n " << last_n;
      EXPECT_EQ(size_t(sampled.sample(z.data(), vocab)), want) << "last_n " << last_n;
      changed += want != argmax_of(z);
      ++cases;
    }
  }
  std::printf("penalties changed the greedy choice in %d of %d cases\n", changed, cases);
  EXPECT_GT(changed, cases / 2);
}

TEST(Sampler, ValidatesParams) {
  SamplingParams p;
  p.top_p = 0.f;
  EXPECT_FALSE(p.validate().ok());
  p = {};
  p.temperature = -1.f;
  EXPECT_FALSE(p.validate().ok());
  p = {};
  EXPECT_TRUE(p.validate().ok());
}

}  // namespace g4
