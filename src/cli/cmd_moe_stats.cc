// g4 inspect MODEL --moe-stats: prefill a prompt and report how the router spread its tokens
// over each layer's experts (from the model's MoeCounters), with a load-balance summary.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "g4/engine.h"
#include "model/moe.h"

namespace g4::cli {

namespace {

int fail(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "g4: %s\n", msg.c_str());
  return code;
}

nlohmann::json summary_json(const MoeLoadSummary& s) {
  return {{"total", s.total},
          {"max", s.max},
          {"min", s.min},
          {"mean", s.mean},
          {"max_over_mean", s.max_over_mean},
          {"entropy_bits", s.entropy},
          {"entropy_norm", s.entropy_norm},
          {"unused", s.unused}};
}

}  // namespace

int run_moe_stats(const MoeStatsArgs& a) {
  int given = 0;
  for (const std::string* s : {&a.prompt, &a.file, &a.ids}) given += s->empty() ? 0 : 1;
  if (given > 1) return fail("give only one of --prompt, --file and --ids", 2);
  EngineOptions eo;
  eo.model_path = a.model;
  eo.n_threads = a.threads;
  eo.n_ctx = 1 << 20;  // capped at the model's trained context by the engine
  eo.exact = a.exact;
  eo.kv_f32 = a.exact;
  auto eng = Engine::load(eo);
  if (!eng.ok()) return fail(eng.error());
  Engine& e = *eng.value();
  const ModelConfig& c = e.model().config();
  if (c.n_experts <= 0)
    return fail("'" + a.model + "' is a dense model (" + c.arch +
                ", no mixture-of-experts layers): --moe-stats needs an MoE model");
  std::vector<int32_t> ids;
  std::string text = a.prompt;
  if (!a.ids.empty()) {
    auto r = parse_token_ids(a.ids);
    if (!r.ok()) return fail(r.error(), 2);
    ids = r.value();
  } else {
    if (!a.file.empty()) {
      std::ifstream in(a.file, std::ios::binary);
      if (!in) return fail("cannot read '" + a.file + "'");
      text.assign(std::istreambuf_iterator<char>(in), {});
    } else if (text.empty()) {
      text = "The quick brown fox jumps over the lazy dog.";
    }
    ids = e.tokenizer().encode(text, true, false);
  }
  if (ids.empty()) return fail("the prompt has no tokens");
  // Prefill only (no sampling); the counters start at zero in a freshly loaded model.
  Session s(e);
  GenerateOptions go;
  go.max_tokens = 0;
  auto r = s.generate(ids, go);
  if (!r.ok()) return fail(r.error());
  const auto load = e.model().expert_load();
  const size_t E = size_t(c.n_experts);
  // Across layers (each layer has its own experts): the worst imbalance, the mean normalised
  // entropy and the (layer, expert) pairs that got no token.
  double worst = 0, entropy_mean = 0;
  int unused = 0;
  for (const auto& layer : load) {
    const MoeLoadSummary m = summarize_expert_load(layer);
    worst = std::max(worst, m.max_over_mean);
    entropy_mean += m.entropy_norm / double(load.size());
    unused += m.unused;
  }

  if (a.json) {
    nlohmann::json j{{"model", a.model},
                     {"n_tokens", ids.size()},
                     {"n_layers", c.n_layers},
                     {"n_experts", c.n_experts},
                     {"n_experts_used", c.n_experts_used},
                     {"layers", nlohmann::json::array()}};
    for (size_t l = 0; l < load.size(); ++l) {
      nlohmann::json lj = summary_json(summarize_expert_load(load[l]));
      lj["layer"] = l;
      lj["counts"] = load[l];
      j["layers"].push_back(lj);
    }
    j["all_layers"] = {
        {"max_over_mean", worst}, {"entropy_norm_mean", entropy_mean}, {"unused", unused}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf(
      "model: %s\n%d layers x %d experts, top-%d; prompt of %zu tokens -> %zu routed "
      "token-expert pairs per layer\n\n",
      a.model.c_str(), c.n_layers, c.n_experts, c.n_experts_used, ids.size(),
      ids.size() * size_t(c.n_experts_used));
  std::printf("layer  max/mean  entropy(norm)  unused  busiest  tokens per expert 0..%zu\n", E - 1);
  for (size_t l = 0; l < load.size(); ++l) {
    const MoeLoadSummary m = summarize_expert_load(load[l]);
    std::ostringstream counts;
    for (size_t x = 0; x < E; ++x) counts << (x ? " " : "") << load[l][x];
    std::printf("%5zu  %8.2f  %13.3f  %6d  %7llu  %s\n", l, m.max_over_mean, m.entropy_norm,
                m.unused, (unsigned long long)m.max, counts.str().c_str());
  }
  std::printf(
      "\nall layers: worst max/mean %.2f, mean entropy %.3f of uniform, %d of %zu (layer, "
      "expert) pairs unused\n",
      worst, entropy_mean, unused, load.size() * E);
  return 0;
}

}  // namespace g4::cli
