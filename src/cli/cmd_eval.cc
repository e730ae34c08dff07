// g4 eval: quality checks that need the model. `g4 eval niah`: needle in a haystack over a
// grid of context lengths and depths (src/eval/niah.h), as a table or JSON.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "eval/niah.h"
#include "g4/engine.h"

namespace g4::cli {

namespace {

// "1024,2048,4k" -> token counts (k = 1024).
bool parse_sizes(const std::string& s, std::vector<int64_t>* out) {
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) return false;
    int64_t mul = 1;
    if (item.back() == 'k' || item.back() == 'K') {
      mul = 1024;
      item.pop_back();
    }
    try {
      size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used != item.size() || v <= 0) return false;
      out->push_back(int64_t(v) * mul);
    } catch (...) {
      return false;
    }
  }
  return !out->empty();
}

}  // namespace

Runner add_eval(CLI::App& app) {
  struct A {
    std::string model, ctx = "1024,2048,4096", depths = "0,25,50,75,100";
    int trials = 1, threads = 0;
    uint64_t seed = 1;
    bool chat = false, no_chat = false, json = false, verbose = false;
  };
  auto a = std::make_shared<A>();
  app.require_subcommand(1);
  CLI::App* niah = app.add_subcommand(
      "niah", "Needle in a haystack: does the model find a number hidden at each depth?");
  niah->add_option("model", a->model, "GGUF model (default: the pulled model)");
  niah->add_option("--ctx", a->ctx, "Prompt lengths in tokens, comma-separated (4k = 4096)")
      ->capture_default_str();
  niah->add_option("--depths", a->depths, "Needle depths in percent, comma-separated")
      ->capture_default_str();
  niah->add_option("--trials", a->trials, "Haystacks per context (different seeds)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  niah->add_option("--seed", a->seed, "Seed of the generated haystacks")->capture_default_str();
  niah->add_option("-t,--threads", a->threads, "Threads (0 = all cores)")->capture_default_str();
  niah->add_flag("--chat", a->chat,
                 "Use the chat template (default: for instruction-tuned models)");
  niah->add_flag("--no-chat", a->no_chat,
                 "Plain completion prompt even for instruction-tuned models");
  niah->add_flag("--json", a->json, "JSON output (with every sample's answer)");
  niah->add_flag("-v,--verbose", a->verbose, "Print each sample's answer");
  return [a] {
    NiahOptions o;
    o.contexts.clear();
    if (!parse_sizes(a->ctx, &o.contexts)) {
      std::fprintf(stderr, "g4: --ctx: expected comma-separated token counts, got '%s'\n",
                   a->ctx.c_str());
      return 2;
    }
    o.depths.clear();
    {
      std::stringstream ss(a->depths);
      std::string item;
      while (std::getline(ss, item, ',')) {
        char* end = nullptr;
        const double v = std::strtod(item.c_str(), &end);
        if (item.empty() || *end != '\0' || !(v >= 0 && v <= 100)) {
          std::fprintf(stderr, "g4: --depths: expected percentages in [0, 100], got '%s'\n",
                       a->depths.c_str());
          return 2;
        }
        o.depths.push_back(v / 100.0);
      }
    }
    o.trials = a->trials;
    o.seed = a->seed;
    if (!resolve_model(a->model)) return 1;
    EngineOptions eo;
    eo.model_path = a->model;
    eo.n_threads = a->threads;
    int64_t max_ctx = 0;
    for (int64_t c : o.contexts) max_ctx = std::max(max_ctx, c);
    eo.n_ctx = max_ctx + o.answer_tokens + 16;
    auto eng = Engine::load(eo);
    if (!eng.ok()) {
      std::fprintf(stderr, "g4: %s\n", eng.error().c_str());
      return 1;
    }
    Engine& e = *eng.value();
    o.chat = a->chat || (e.instruction_tuned() && !a->no_chat);
    auto r = run_niah(e, o, [](size_t done, size_t total) {
      progress("niah", double(done) / double(total), done == total);
    });
    if (!r.ok()) {
      std::fprintf(stderr, "g4: %s\n", r.error().c_str());
      return 1;
    }
    const NiahResult& res = r.value();
    int correct = 0, total = 0;
    for (const auto& c : res.cells) correct += c.correct, total += c.total;
    if (a->json) {
      nlohmann::json cells = nlohmann::json::array(), samples = nlohmann::json::array();
      for (const auto& c : res.cells)
        cells.push_back(
            {{"ctx", c.ctx}, {"depth", c.depth}, {"correct", c.correct}, {"total", c.total}});
      for (const auto& s : res.samples)
        samples.push_back({{"ctx", s.ctx},
                           {"depth", s.depth},
                           {"trial", s.trial},
                           {"prompt_tokens", s.prompt_tokens},
                           {"expected", s.expected},
                           {"output", s.output},
                           {"correct", s.correct}});
      nlohmann::json j{{"model", a->model},
                       {"chat", o.chat},
                       {"seed", o.seed},
                       {"trials", o.trials},
                       {"accuracy", double(correct) / total},
                       {"seconds", res.seconds},
                       {"cells", cells},
                       {"samples", samples}};
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      return 0;
    }
    if (a->verbose)
      for (const auto& s : res.samples)
        std::printf("ctx %lld depth %3.0f%% trial %d: %s (want %s): %s\n", (long long)s.ctx,
                    100 * s.depth, s.trial, s.correct ? "found" : "missed", s.expected.c_str(),
                    s.output.c_str());
    std::printf("| context \\ depth |");
    for (double d : o.depths) std::printf(" %.0f%% |", 100 * d);
    std::printf("\n|---|");
    for (size_t i = 0; i < o.depths.size(); ++i) std::printf("---|");
    std::printf("\n");
    for (size_t i = 0; i < res.cells.size(); i += o.depths.size()) {
      std::printf("| %lld |", (long long)res.cells[i].ctx);
      for (size_t k = 0; k < o.depths.size(); ++k)
        std::printf(" %d/%d |", res.cells[i + k].correct, res.cells[i + k].total);
      std::printf("\n");
    }
    std::printf("\naccuracy %.1f%% (%d/%d), %s prompts, %.1f s\n", 100.0 * correct / total, correct,
                total, o.chat ? "chat" : "completion", res.seconds);
    return 0;
  };
}

}  // namespace g4::cli
