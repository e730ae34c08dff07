// g4 eval: quality checks that need the model. `g4 eval niah`: needle in a haystack over a
// grid of context lengths and depths (src/eval/niah.h); `g4 eval ruler`: the RULER-style
// suite (src/eval/ruler.h). Both print a table or JSON, and with --compare A:B run every case
// under two engine variants and test the paired outcomes (src/eval/compare.h).
// `g4 eval guard` and `g4 eval injection` live in cmd_eval_guard.cc.
#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "eval/compare.h"
#include "eval/niah.h"
#include "eval/ruler.h"
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

// Options every eval subcommand takes.
struct Common {
  std::string model, ctx = "1024,2048,4096", compare;
  int threads = 0;
  uint64_t seed = 1;
  bool chat = false, no_chat = false, json = false, verbose = false;
};

void add_common(CLI::App* c, Common& a) {
  c->add_option("model", a.model, "GGUF model (default: the pulled model)");
  c->add_option("--ctx", a.ctx, "Prompt lengths in tokens, comma-separated (4k = 4096)")
      ->capture_default_str();
  c->add_option("--seed", a.seed, "Seed of the generated text")->capture_default_str();
  c->add_option("-t,--threads", a.threads, "Threads (0 = all cores)")->capture_default_str();
  c->add_flag("--chat", a.chat, "Use the chat template (default: for instruction-tuned models)");
  c->add_flag("--no-chat", a.no_chat, "Plain completion prompt even for instruction-tuned models");
  c->add_option("--compare", a.compare,
                "Run every case under two engine variants A:B and test the paired outcomes, "
                "e.g. kv=f16:kv=f32 (" +
                    variant_keys_help() + ", or default)");
  c->add_flag("--json", a.json, "JSON output (with every sample's answer)");
  c->add_flag("-v,--verbose", a.verbose, "Print each sample's answer");
}

// The engine variants to run: one (no --compare) or two. Returns false after printing why.
bool variants(const Common& a, std::vector<EngineVariant>* out) {
  if (a.compare.empty()) {
    out->push_back(EngineVariant{"default", {}});
    return true;
  }
  auto p = parse_compare(a.compare);
  if (!p.ok()) {
    std::fprintf(stderr, "g4: %s\n", p.error().c_str());
    return false;
  }
  out->push_back(p.value().first);
  out->push_back(p.value().second);
  return true;
}

Result<std::unique_ptr<Engine>> load_variant(const Common& a, const EngineVariant& v,
                                             int64_t n_ctx) {
  EngineOptions eo;
  eo.model_path = a.model;
  eo.n_threads = a.threads;
  eo.n_ctx = n_ctx;
  Status s = apply_variant(v, &eo);
  if (!s.ok()) return s;
  return Engine::load(eo);
}

std::function<void(size_t, size_t)> reporter(const std::string& label, size_t per_ctx);

// When A and B differ only in sparse routing of decoding steps (keys attn, budget, min_ctx,
// recent, page), both answer every case over one prefill: one engine that keeps page summaries
// (of the routed variants' page size, which must agree), and the two routings switched per
// answer (Session::set_routing). Prompts are read densely either way, so the prompt's K/V are
// the same bits and the answers are those of two separate engines.
bool shared_prefill(const std::vector<EngineVariant>& vs,
                    std::vector<SparseAttentionOptions>* routings, EngineVariant* shared) {
  if (vs.size() != 2) return false;
  for (const EngineVariant& v : vs)
    for (const auto& [k, val] : v.settings)
      if (k != "attn" && k != "budget" && k != "min_ctx" && k != "recent" && k != "page")
        return false;
  int page = 0;
  for (const EngineVariant& v : vs) {
    EngineOptions eo;
    if (!apply_variant(v, &eo).ok()) return false;
    if (eo.sparse.enabled) {
      if (page != 0 && page != eo.sparse.page_tokens) return false;
      page = eo.sparse.page_tokens;
    }
    routings->push_back(eo.sparse);
  }
  if (page == 0) return false;  // neither routes
  for (SparseAttentionOptions& r : *routings) r.page_tokens = page;
  *shared = EngineVariant{"shared", {{"attn", "sparse"}, {"page", std::to_string(page)}}};
  return true;
}

// Runs `run(engine, routings)` once on a shared-prefill engine (results for A and B), or once
// per variant on its own engine. Returns false after printing why.
template <typename R, typename Run>
bool run_variants(const Common& a, const std::vector<EngineVariant>& vs, int64_t n_ctx,
                  const std::string& label, size_t per_ctx, bool* chat, const Run& run,
                  std::vector<R>* results) {
  std::vector<SparseAttentionOptions> routings;
  EngineVariant shared;
  if (shared_prefill(vs, &routings, &shared)) {
    auto eng = load_variant(a, shared, n_ctx);
    if (!eng.ok()) {
      std::fprintf(stderr, "g4: %s\n", eng.error().c_str());
      return false;
    }
    *chat = a.chat || (eng.value()->instruction_tuned() && !a.no_chat);
    std::fprintf(stderr, "%s: %s and %s share each prompt's prefill\n", label.c_str(),
                 vs[0].spec.c_str(), vs[1].spec.c_str());
    auto r = run(*eng.value(), routings, reporter(label, 2 * per_ctx));
    if (!r.ok()) {
      std::fprintf(stderr, "g4: %s\n", r.error().c_str());
      return false;
    }
    *results = std::move(r).value();
    return true;
  }
  for (const EngineVariant& v : vs) {
    auto eng = load_variant(a, v, n_ctx);
    if (!eng.ok()) {
      std::fprintf(stderr, "g4: %s\n", eng.error().c_str());
      return false;
    }
    *chat = a.chat || (eng.value()->instruction_tuned() && !a.no_chat);
    auto r = run(*eng.value(), {}, reporter(vs.size() > 1 ? label + " " + v.spec : label, per_ctx));
    if (!r.ok()) {
      std::fprintf(stderr, "g4: %s\n", r.error().c_str());
      return false;
    }
    results->push_back(std::move(r.value()[0]));
  }
  return true;
}

// Paired scores of variants A and B over a group of cases.
struct PairRow {
  std::string label, ctx;
  std::vector<double> a, b;
};

nlohmann::json pair_json(const PairRow& r) {
  const SignTest t = sign_test(r.a, r.b);
  double sa = 0, sb = 0;
  for (double x : r.a) sa += x;
  for (double x : r.b) sb += x;
  const double n = double(std::max<size_t>(1, r.a.size()));
  return {{"group", r.label},       {"ctx", r.ctx},
          {"n", r.a.size()},        {"mean_a", sa / n},
          {"mean_b", sb / n},       {"diff", (sb - sa) / n},
          {"a_better", t.a_better}, {"b_better", t.b_better},
          {"ties", t.ties},         {"p", t.p}};
}

void print_pairs(const char* group, const std::vector<PairRow>& rows, const EngineVariant& va,
                 const EngineVariant& vb) {
  std::printf(
      "A = %s, B = %s; scores in %%; p: exact two-sided sign test on the per-case "
      "scores (ties dropped; exact McNemar for 0/1 scores)\n\n",
      va.spec.c_str(), vb.spec.c_str());
  std::printf("| %s | ctx | n | A | B | B - A | A better | B better | p |\n", group);
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (const PairRow& r : rows) {
    const nlohmann::json j = pair_json(r);
    std::printf("| %s | %s | %zu | %.1f | %.1f | %+.1f | %d | %d | %.3g |\n", r.label.c_str(),
                r.ctx.c_str(), r.a.size(), 100 * j["mean_a"].get<double>(),
                100 * j["mean_b"].get<double>(), 100 * j["diff"].get<double>(),
                j["a_better"].get<int>(), j["b_better"].get<int>(), j["p"].get<double>());
  }
}

std::function<void(size_t, size_t)> reporter(const std::string& label, size_t per_ctx) {
  const auto t0 = std::chrono::steady_clock::now();
  return [label, per_ctx, t0](size_t done, size_t total) {
    progress(label.c_str(), double(done) / double(total), done == total);
    if (!isatty(2) && per_ctx && done % per_ctx == 0 && done != total)
      std::fprintf(stderr, "%s: %zu/%zu cases, %.0f s\n", label.c_str(), done, total,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  };
}

int niah_command(const Common& a, const std::string& depths, int trials);
int ruler_command(const Common& a, const std::string& tasks, int samples);

}  // namespace

Runner add_eval(CLI::App& app) {
  struct A {
    Common c;
    std::string depths = "0,25,50,75,100", tasks = "all";
    int trials = 1, samples = 4;
  };
  auto a = std::make_shared<A>();
  app.require_subcommand(1);
  CLI::App* niah = app.add_subcommand(
      "niah", "Needle in a haystack: does the model find a number hidden at each depth?");
  add_common(niah, a->c);
  niah->add_option("--depths", a->depths, "Needle depths in percent, comma-separated")
      ->capture_default_str();
  niah->add_option("--trials", a->trials, "Haystacks per context (different seeds)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  CLI::App* ruler = app.add_subcommand(
      "ruler",
      "RULER-style suite: needles, variable tracking, word frequencies, JSON key-value "
      "retrieval at each context length");
  add_common(ruler, a->c);
  ruler
      ->add_option("--tasks", a->tasks,
                   "all, or a comma-separated list of niah_single, niah_multikey, "
                   "niah_multivalue, niah_multiquery, vt, cwe, fwe, kv_json")
      ->capture_default_str();
  ruler->add_option("--samples", a->samples, "Cases per task and context")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  Runner guard = add_eval_guard(app);  // guard, injection (cmd_eval_guard.cc)
  return [a, niah, ruler, guard] {
    if (niah->parsed()) return niah_command(a->c, a->depths, a->trials);
    if (ruler->parsed()) return ruler_command(a->c, a->tasks, a->samples);
    return guard();
  };
}

namespace {

int niah_command(const Common& a_in, const std::string& depths, int trials) {
  Common a = a_in;
  NiahOptions o;
  o.contexts.clear();
  if (!parse_sizes(a.ctx, &o.contexts)) {
    std::fprintf(stderr, "g4: --ctx: expected comma-separated token counts, got '%s'\n",
                 a.ctx.c_str());
    return 2;
  }
  o.depths.clear();
  {
    std::stringstream ss(depths);
    std::string item;
    while (std::getline(ss, item, ',')) {
      char* end = nullptr;
      const double v = std::strtod(item.c_str(), &end);
      if (item.empty() || *end != '\0' || !(v >= 0 && v <= 100)) {
        std::fprintf(stderr, "g4: --depths: expected percentages in [0, 100], got '%s'\n",
                     depths.c_str());
        return 2;
      }
      o.depths.push_back(v / 100.0);
    }
  }
  o.trials = trials;
  o.seed = a.seed;
  std::vector<EngineVariant> vs;
  if (!variants(a, &vs)) return 2;
  if (!resolve_model(a.model)) return 1;
  int64_t max_ctx = 0;
  for (int64_t c : o.contexts) max_ctx = std::max(max_ctx, c);
  std::vector<NiahResult> results;
  auto run = [&](Engine& e, const std::vector<SparseAttentionOptions>& routings,
                 const std::function<void(size_t, size_t)>& progress) {
    return run_niah_routed(e, o, routings, progress);
  };
  if (!run_variants(a, vs, max_ctx + o.answer_tokens + 16, "niah",
                    o.depths.size() * size_t(o.trials), &o.chat, run, &results))
    return 1;
  if (vs.size() == 2) {
    // One row per context (all depths and trials), then all.
    std::vector<PairRow> rows;
    for (int64_t ctx : o.contexts) rows.push_back({"niah", std::to_string(ctx), {}, {}});
    rows.push_back({"niah", "all", {}, {}});
    nlohmann::json samples = nlohmann::json::array();
    for (size_t i = 0; i < results[0].samples.size(); ++i) {
      const NiahSample &x = results[0].samples[i], &y = results[1].samples[i];
      for (PairRow& r : rows)
        if (r.ctx == "all" || r.ctx == std::to_string(x.ctx))
          r.a.push_back(x.correct), r.b.push_back(y.correct);
      samples.push_back({{"ctx", x.ctx},
                         {"depth", x.depth},
                         {"trial", x.trial},
                         {"expected", x.expected},
                         {"output_a", x.output},
                         {"output_b", y.output},
                         {"correct_a", x.correct},
                         {"correct_b", y.correct}});
    }
    if (a.json) {
      nlohmann::json j{{"model", a.model},
                       {"chat", o.chat},
                       {"seed", o.seed},
                       {"a", vs[0].spec},
                       {"b", vs[1].spec},
                       {"test", "sign"},
                       {"rows", nlohmann::json::array()},
                       {"samples", samples}};
      for (const PairRow& r : rows) j["rows"].push_back(pair_json(r));
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      return 0;
    }
    print_pairs("task", rows, vs[0], vs[1]);
    return 0;
  }
  const NiahResult& res = results[0];
  int correct = 0, total = 0;
  for (const auto& c : res.cells) correct += c.correct, total += c.total;
  if (a.json) {
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
    nlohmann::json j{{"model", a.model},
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
  if (a.verbose)
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
}

nlohmann::json sample_json(const RulerSample& s) {
  return {{"task", ruler_task_name(s.task)},
          {"ctx", s.ctx},
          {"sample", s.sample},
          {"prompt_tokens", s.prompt_tokens},
          {"expected", s.expected},
          {"output", s.output},
          {"score", s.score}};
}

int ruler_command(const Common& a_in, const std::string& tasks, int samples) {
  Common a = a_in;
  RulerOptions o;
  o.contexts.clear();
  if (!parse_sizes(a.ctx, &o.contexts)) {
    std::fprintf(stderr, "g4: --ctx: expected comma-separated token counts, got '%s'\n",
                 a.ctx.c_str());
    return 2;
  }
  auto t = parse_ruler_tasks(tasks);
  if (!t.ok()) {
    std::fprintf(stderr, "g4: --tasks: %s\n", t.error().c_str());
    return 2;
  }
  o.tasks = t.value();
  o.samples = samples;
  o.seed = a.seed;
  std::vector<EngineVariant> vs;
  if (!variants(a, &vs)) return 2;
  if (!resolve_model(a.model)) return 1;
  int64_t max_ctx = 0;
  for (int64_t c : o.contexts) max_ctx = std::max(max_ctx, c);
  std::vector<RulerResult> results;
  auto run = [&](Engine& e, const std::vector<SparseAttentionOptions>& routings,
                 const std::function<void(size_t, size_t)>& progress) {
    return run_ruler_routed(e, o, routings, progress);
  };
  if (!run_variants(a, vs, max_ctx + 128, "ruler", size_t(o.samples) * o.tasks.size(), &o.chat, run,
                    &results))
    return 1;
  if (a.verbose)
    for (size_t k = 0; k < results.size(); ++k)
      for (const RulerSample& s : results[k].samples)
        std::printf("%s%s ctx %lld sample %d: %.2f (want %s): %s\n",
                    vs.size() > 1 ? (vs[k].spec + " ").c_str() : "", ruler_task_name(s.task),
                    (long long)s.ctx, s.sample, s.score, nlohmann::json(s.expected).dump().c_str(),
                    s.output.c_str());
  if (vs.size() == 2) {
    // One row per task (all contexts), one per context (all tasks), then the suite.
    std::vector<PairRow> rows;
    for (RulerTask task : o.tasks) rows.push_back({ruler_task_name(task), "all", {}, {}});
    for (int64_t ctx : o.contexts) rows.push_back({"all", std::to_string(ctx), {}, {}});
    rows.push_back({"all", "all", {}, {}});
    nlohmann::json js = nlohmann::json::array();
    for (size_t i = 0; i < results[0].samples.size(); ++i) {
      const RulerSample &x = results[0].samples[i], &y = results[1].samples[i];
      for (PairRow& r : rows)
        if ((r.label == "all" || r.label == ruler_task_name(x.task)) &&
            (r.ctx == "all" || r.ctx == std::to_string(x.ctx)))
          r.a.push_back(x.score), r.b.push_back(y.score);
      nlohmann::json j = sample_json(x);
      j.erase("output");
      j.erase("score");
      j["output_a"] = x.output;
      j["output_b"] = y.output;
      j["score_a"] = x.score;
      j["score_b"] = y.score;
      js.push_back(j);
    }
    if (a.json) {
      nlohmann::json j{{"model", a.model}, {"chat", o.chat},
                       {"seed", o.seed},   {"samples_per_cell", o.samples},
                       {"a", vs[0].spec},  {"b", vs[1].spec},
                       {"test", "sign"},   {"rows", nlohmann::json::array()},
                       {"samples", js}};
      for (const PairRow& r : rows) j["rows"].push_back(pair_json(r));
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      return 0;
    }
    print_pairs("task", rows, vs[0], vs[1]);
    return 0;
  }
  const RulerResult& res = results[0];
  const std::vector<RulerCell> cells = ruler_cells(o, res.samples);
  double suite = 0;
  for (const RulerSample& s : res.samples) suite += s.score;
  suite /= double(std::max<size_t>(1, res.samples.size()));
  if (a.json) {
    nlohmann::json jc = nlohmann::json::array(), js = nlohmann::json::array();
    for (const RulerCell& c : cells)
      jc.push_back(
          {{"task", ruler_task_name(c.task)}, {"ctx", c.ctx}, {"mean", c.mean}, {"n", c.n}});
    for (const RulerSample& s : res.samples) js.push_back(sample_json(s));
    nlohmann::json j{{"model", a.model}, {"chat", o.chat},
                     {"seed", o.seed},   {"samples_per_cell", o.samples},
                     {"mean", suite},    {"seconds", res.seconds},
                     {"cells", jc},      {"samples", js}};
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  // Tasks x contexts, mean score in percent; the last column and row are means.
  std::printf("| task \\ context |");
  for (int64_t c : o.contexts) std::printf(" %lld |", (long long)c);
  std::printf(" mean |\n|---|");
  for (size_t i = 0; i <= o.contexts.size(); ++i) std::printf("---|");
  std::printf("\n");
  const size_t nc = o.contexts.size();
  for (size_t t = 0; t < o.tasks.size(); ++t) {
    std::printf("| %s |", ruler_task_name(o.tasks[t]));
    double m = 0;
    for (size_t k = 0; k < nc; ++k) {
      std::printf(" %.1f |", 100 * cells[t * nc + k].mean);
      m += cells[t * nc + k].mean;
    }
    std::printf(" %.1f |\n", 100 * m / double(nc));
  }
  std::printf("| mean |");
  for (size_t k = 0; k < nc; ++k) {
    double m = 0;
    for (size_t t = 0; t < o.tasks.size(); ++t) m += cells[t * nc + k].mean;
    std::printf(" %.1f |", 100 * m / double(o.tasks.size()));
  }
  std::printf(" %.1f |\n", 100 * suite);
  std::printf("\nsuite mean %.1f%% (%zu cases, %d per cell), %s prompts, seed %llu, %.1f s\n",
              100 * suite, res.samples.size(), o.samples, o.chat ? "chat" : "completion",
              (unsigned long long)o.seed, res.seconds);
  return 0;
}

}  // namespace

}  // namespace g4::cli
