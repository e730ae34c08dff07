// Sampler cost per token over a 262,144-entry logits row (Gemma's vocabulary), for the
// settings clients send: OpenAI's defaults (top_k 0, top_p 1), top-p alone, and top-k 40.
// The row is normal(0, 3) noise with one clear favourite, a typical LM shape.
//   build/release/g4_sampler_bench [iterations]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "sampling/sampler.h"

int main(int argc, char** argv) {
  const int iters = argc > 1 ? std::atoi(argv[1]) : 200;
  const int vocab = 262144;
  std::vector<float> logits(static_cast<size_t>(vocab));
  std::mt19937 rng(1);
  std::normal_distribution<float> noise(0, 3);
  for (float& x : logits) x = noise(rng);
  logits[5] = 25;
  struct Setting {
    const char* name;
    int top_k;
    float top_p, min_p;
  } settings[] = {{"top_k 0, top_p 1 (OpenAI defaults)", 0, 1.0f, 0.0f},
                  {"top_k 0, top_p 0.95", 0, 0.95f, 0.0f},
                  {"top_k 0, min_p 0.05", 0, 1.0f, 0.05f},
                  {"top_k 40, top_p 0.95, min_p 0.05 (g4 run)", 40, 0.95f, 0.05f}};
  std::printf("| setting | ms per token |\n|---|---|\n");
  for (const Setting& s : settings) {
    g4::SamplingParams p;
    p.temperature = 1.0f;
    p.top_k = s.top_k;
    p.top_p = s.top_p;
    p.min_p = s.min_p;
    p.seed = 1;
    g4::Sampler sampler(p);
    const auto t0 = std::chrono::steady_clock::now();
    long sum = 0;
    for (int i = 0; i < iters; ++i) sum += sampler.sample(logits.data(), vocab);
    const double ms =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters * 1e3;
    std::printf("| %s | %.3f |\n", s.name, ms);
    if (sum < 0) return 1;
  }
  return 0;
}
