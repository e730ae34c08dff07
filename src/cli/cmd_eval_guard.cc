// g4 eval guard: the safety guard on a labelled JSONL file (src/eval/guard_eval.h for the
// format and the metric definitions): per policy precision, recall and F1 at the profile's
// threshold, average precision, and the threshold that meets a target false-positive rate,
// optionally written as a profile file for `g4 serve --guard-profile`.
// g4 eval injection: the prompt-injection detector on the seeded corpus of
// src/eval/injection_corpus.h (precision, recall, per attack and carrier).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "eval/guard_eval.h"
#include "eval/injection_corpus.h"
#include "guard/guard.h"
#include "guard/injection.h"

namespace g4::cli {
namespace {

struct GuardArgs {
  std::string data, model, guard_model, guard_template, policies, profile = "balanced",
                                                                  write_profile;
  double target_fpr = 0.05;
  int threads = 0;
  bool exact = false, json = false;
};

struct InjArgs {
  uint64_t seed = 1;
  int benign = 300, hostile = 300;
  std::string split = "both";
  std::vector<std::string> files;  // real text: count flagged 2000-byte chunks instead
  bool json = false, verbose = false;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// "0.123", or "n/a" (no positive item: average precision is undefined).
std::string ap3(double x) {
  if (!std::isfinite(x)) return "n/a";
  char b[32];
  std::snprintf(b, sizeof b, "%.3f", x);
  return b;
}

nlohmann::json num(double x) {
  return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json();
}

int guard_command(const GuardArgs& a) {
  // Everything that can be wrong with the inputs is reported before the model loads.
  Result<std::vector<GuardEvalItem>> data = load_guard_eval_file(a.data);
  if (!data.ok()) {
    std::fprintf(stderr, "g4: %s\n", data.error().c_str());
    return 2;
  }
  Result<RiskProfile> prof = load_profile(a.profile);
  if (!prof.ok()) {
    std::fprintf(stderr, "g4: --profile: %s\n", prof.error().c_str());
    return 2;
  }
  if (!(a.target_fpr >= 0 && a.target_fpr <= 1)) {
    std::fprintf(stderr, "g4: --target-fpr must lie in [0, 1]\n");
    return 2;
  }
  const RiskProfile& base = prof.value();
  auto in_profile = [&](const std::string& n) {
    for (const GuardPolicy& p : base.policies)
      if (p.name == n) return true;
    return false;
  };
  // Labels must name the profile's policies (typos are errors, with the line).
  std::map<std::string, bool> labelled;
  for (const GuardEvalItem& it : data.value())
    for (const auto& [pol, v] : it.labels) {
      if (!in_profile(pol)) {
        std::fprintf(stderr,
                     "g4: %s:%d: labels: unknown policy '%s' (not among profile '%s''s "
                     "policies)\n",
                     a.data.c_str(), it.line, pol.c_str(), base.name.c_str());
        return 2;
      }
      labelled[pol] = true;
    }
  RiskProfile run = base;  // only the evaluated policies are scored
  run.policies.clear();
  std::vector<std::string> wanted;
  if (!a.policies.empty()) {
    std::stringstream ss(a.policies);
    std::string n;
    while (std::getline(ss, n, ',')) {
      if (!in_profile(n)) {
        std::fprintf(stderr, "g4: --policies: unknown policy '%s' (profile '%s')\n", n.c_str(),
                     base.name.c_str());
        return 2;
      }
      if (!labelled.count(n)) {
        std::fprintf(stderr, "g4: --policies: no item of %s labels '%s'\n", a.data.c_str(),
                     n.c_str());
        return 2;
      }
      wanted.push_back(n);
    }
  }
  for (const GuardPolicy& p : base.policies) {
    const bool take = wanted.empty()
                          ? labelled.count(p.name) > 0
                          : std::find(wanted.begin(), wanted.end(), p.name) != wanted.end();
    if (take) run.policies.push_back(p);
  }
  std::string model = a.guard_model.empty() ? a.model : a.guard_model;
  if (!resolve_model(model)) return 1;
  EngineOptions eo;
  eo.model_path = model;
  eo.n_threads = a.threads;
  eo.n_ctx = 2048;  // as g4 serve's guard: template + a 1024-token window + the longest policy
  eo.exact = a.exact;
  GuardOptions go;
  if (!a.guard_template.empty()) {
    Result<std::string> t = read_guard_template(a.guard_template);
    if (!t.ok()) {
      std::fprintf(stderr, "g4: --guard-template: %s\n", t.error().c_str());
      return 1;
    }
    go.chat_template = std::move(t.value());
  }
  auto g = Guard::load(eo, go);
  if (!g.ok()) {
    std::fprintf(stderr, "g4: %s\n", g.error().c_str());
    return 1;
  }
  std::fprintf(stderr, "guard: prompt template: %s\n", g.value()->template_source().c_str());

  // Score every item on the policies it labels (of those evaluated).
  const size_t n = data.value().size();
  std::map<std::string, std::vector<float>> scores;
  std::map<std::string, std::vector<int>> labels;
  nlohmann::json item_scores = nlohmann::json::array();  // --json: {line, scores} per item
  const bool tty = isatty(STDERR_FILENO);
  const double t0 = now_s();
  size_t next_note = 0;
  for (size_t i = 0; i < n; ++i) {
    const GuardEvalItem& it = data.value()[i];
    RiskProfile p = run;
    p.policies.clear();
    for (const GuardPolicy& pol : run.policies)
      if (it.labels.count(pol.name)) p.policies.push_back(pol);
    if (!p.policies.empty()) {
      Result<GuardResult> r = g.value()->check({it.text, it.response}, p);
      if (!r.ok()) {
        std::fprintf(stderr, "\ng4: %s:%d: %s\n", a.data.c_str(), it.line, r.error().c_str());
        return 1;
      }
      nlohmann::json js = nlohmann::json::object();
      for (const PolicyScore& s : r.value().scores) {
        scores[s.policy].push_back(s.score);
        labels[s.policy].push_back(it.labels.at(s.policy));
        js[s.policy] = s.score;
      }
      if (a.json) item_scores.push_back({{"line", it.line}, {"scores", js}});
    }
    if (tty) {
      progress("eval guard", double(i + 1) / double(n), i + 1 == n);
    } else if (i + 1 >= next_note || i + 1 == n) {
      const double dt = now_s() - t0;
      std::fprintf(stderr, "g4 eval guard: %zu/%zu items, %.1f s, %.2f items/s\n", i + 1, n, dt,
                   double(i + 1) / std::max(dt, 1e-9));
      next_note = i + 1 + std::max<size_t>(1, n / 10);
    }
  }

  struct Row {
    std::string policy;
    float threshold;
    BinaryMetrics at;
    double ap;
    FprThreshold fpr;
  };
  std::vector<Row> rows;
  for (const GuardPolicy& pol : run.policies) {
    const auto& s = scores[pol.name];
    const auto& l = labels[pol.name];
    Row r{pol.name,
          base.threshold(pol.name),
          metrics_at(s, l, base.threshold(pol.name)),
          average_precision(s, l),
          {}};
    r.fpr = threshold_for_fpr(s, l, a.target_fpr);
    rows.push_back(r);
  }

  // The calibrated profile: the input profile (a file's own JSON, else its built-in name as
  // base) with each evaluated policy's threshold set to the one meeting the target FPR.
  if (!a.write_profile.empty()) {
    nlohmann::json pj = nlohmann::json::object();
    if (a.profile != "strict" && a.profile != "balanced" && a.profile != "permissive") {
      std::ifstream in(a.profile, std::ios::binary);
      pj = nlohmann::json::parse(in, nullptr, false);  // parsed fine once already
    } else {
      pj["base"] = a.profile;
    }
    char nm[128];
    std::snprintf(nm, sizeof nm, "calibrated at FPR <= %g", a.target_fpr);
    pj["name"] = nm;
    for (const Row& r : rows) {
      pj["thresholds"][r.policy] = r.fpr.threshold;
      if (!r.fpr.reachable)
        std::fprintf(stderr,
                     "g4: warning: %s: no threshold below 1 meets FPR <= %g on this data "
                     "(wrote 1.0)\n",
                     r.policy.c_str(), a.target_fpr);
    }
    const std::string text = pj.dump(2) + "\n";
    Result<RiskProfile> check = parse_profile_json(text);  // what g4 serve will load
    if (!check.ok()) {
      std::fprintf(stderr, "g4: internal: written profile does not load: %s\n",
                   check.error().c_str());
      return 1;
    }
    std::ofstream out(a.write_profile, std::ios::binary);
    out << text;
    if (!out) {
      std::fprintf(stderr, "g4: cannot write '%s'\n", a.write_profile.c_str());
      return 1;
    }
  }

  const double secs = now_s() - t0;
  if (a.json) {
    nlohmann::json j{{"data", a.data},
                     {"items", n},
                     {"guard_model", model},
                     {"profile", base.name},
                     {"target_fpr", a.target_fpr},
                     {"seconds", secs},
                     {"policies", nlohmann::json::array()},
                     {"item_scores", item_scores}};
    for (const Row& r : rows)
      j["policies"].push_back({{"policy", r.policy},
                               {"n", r.at.positives + r.at.negatives},
                               {"positives", r.at.positives},
                               {"threshold", r.threshold},
                               {"precision", r.at.precision},
                               {"recall", r.at.recall},
                               {"f1", r.at.f1},
                               {"fpr", r.at.fpr},
                               {"average_precision", num(r.ap)},
                               {"fpr_threshold", r.fpr.threshold},
                               {"fpr_threshold_reachable", r.fpr.reachable},
                               {"recall_at_fpr_threshold", r.fpr.at.recall},
                               {"fpr_at_fpr_threshold", r.fpr.at.fpr},
                               {"precision_at_fpr_threshold", r.fpr.at.precision}});
    std::printf("%s\n", j.dump(1).c_str());
    return 0;
  }
  std::printf(
      "| policy | n | positives | threshold | precision | recall | F1 | AP | threshold at FPR "
      "<= %g | recall there | FPR there |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
      a.target_fpr);
  for (const Row& r : rows)
    std::printf("| %s | %zu | %zu | %.3f | %.3f | %.3f | %.3f | %s | %.4f%s | %.3f | %.3f |\n",
                r.policy.c_str(), r.at.positives + r.at.negatives, r.at.positives, r.threshold,
                r.at.precision, r.at.recall, r.at.f1, ap3(r.ap).c_str(), r.fpr.threshold,
                r.fpr.reachable ? "" : " (unreachable)", r.fpr.at.recall, r.fpr.at.fpr);
  std::printf("\n%zu items, guard %s, profile '%s', %.1f s%s%s\n", n, model.c_str(),
              base.name.c_str(), secs, a.write_profile.empty() ? "" : ", profile written to ",
              a.write_profile.c_str());
  return 0;
}

// Benign-looking real text (licences, READMEs): how many 2000-byte chunks the detector flags.
int injection_files(const InjArgs& a) {
  size_t chunks = 0, flagged = 0;
  std::map<std::string, int> kinds;
  for (const std::string& f : a.files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "g4: cannot read '%s'\n", f.c_str());
      return 2;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string t = ss.str();
    for (size_t b = 0; b < t.size(); b += 2000) {
      const std::string_view chunk = std::string_view(t).substr(b, 2000);
      const InjectionReport r = screen_untrusted(chunk, InjectionAction::kFlag);
      ++chunks;
      if (!r.suspicious) continue;
      ++flagged;
      for (const InjectionFinding& x : r.findings) {
        ++kinds[x.kind];
        if (a.verbose)
          std::printf("%s+%zu: %s: %s\n", f.c_str(), b + x.offset, x.kind.c_str(),
                      std::string(chunk.substr(x.offset, std::min<size_t>(x.length, 80))).c_str());
      }
    }
  }
  std::printf("%zu files, %zu chunks of 2000 bytes, %zu flagged\n", a.files.size(), chunks,
              flagged);
  for (const auto& [k, n] : kinds) std::printf("  %s: %d findings\n", k.c_str(), n);
  return 0;
}

int injection_command(const InjArgs& a) {
  if (!a.files.empty()) return injection_files(a);
  std::vector<std::pair<std::string, CorpusSplit>> splits;
  if (a.split == "dev" || a.split == "both") splits.push_back({"dev", CorpusSplit::kDev});
  if (a.split == "heldout" || a.split == "both")
    splits.push_back({"heldout", CorpusSplit::kHeldOut});
  if (splits.empty()) {
    std::fprintf(stderr, "g4: --split must be dev, heldout or both\n");
    return 2;
  }
  nlohmann::json jall = nlohmann::json::array();
  for (const auto& [name, split] : splits) {
    const auto corpus = generate_injection_corpus(a.seed, a.benign, a.hostile, split);
    DetectionCounts all;
    std::map<std::string, DetectionCounts> by_attack, by_carrier;
    for (const InjectionSample& s : corpus) {
      const bool flagged = screen_untrusted(s.text, InjectionAction::kFlag).suspicious;
      auto add = [&](DetectionCounts& c) {
        if (s.hostile)
          (flagged ? c.tp : c.fn) += 1;
        else
          (flagged ? c.fp : c.tn) += 1;
      };
      add(all);
      if (s.hostile) add(by_attack[s.attack]);
      add(by_carrier[s.carrier]);
      if (a.verbose && flagged != s.hostile)
        std::printf("%s %s/%s:\n%s\n---\n", flagged ? "FALSE POSITIVE" : "MISS", s.carrier.c_str(),
                    s.attack.c_str(), s.text.c_str());
    }
    if (a.json) {
      nlohmann::json j{{"split", name},         {"seed", a.seed}, {"benign", a.benign},
                       {"hostile", a.hostile},  {"tp", all.tp},   {"fp", all.fp},
                       {"fn", all.fn},          {"tn", all.tn},   {"precision", all.precision()},
                       {"recall", all.recall()}};
      for (const auto& [k, c] : by_attack) j["recall_by_attack"][k] = c.recall();
      for (const auto& [k, c] : by_carrier) j["false_positives_by_carrier"][k] = c.fp;
      jall.push_back(j);
      continue;
    }
    std::printf(
        "split %s, seed %llu: %d benign, %d hostile: precision %.3f, recall %.3f "
        "(TP %d, FP %d, FN %d, TN %d)\n",
        name.c_str(), (unsigned long long)a.seed, a.benign, a.hostile, all.precision(),
        all.recall(), all.tp, all.fp, all.fn, all.tn);
    std::printf("| attack | n | recall |\n|---|---|---|\n");
    for (const auto& [k, c] : by_attack)
      std::printf("| %s | %d | %.3f |\n", k.c_str(), c.tp + c.fn, c.recall());
    std::printf("| carrier | benign | false positives |\n|---|---|---|\n");
    for (const auto& [k, c] : by_carrier)
      std::printf("| %s | %d | %d |\n", k.c_str(), c.fp + c.tn, c.fp);
    std::printf("\n");
  }
  if (a.json) std::printf("%s\n", jall.dump(1).c_str());
  return 0;
}

}  // namespace

Runner add_eval_guard(CLI::App& eval) {
  auto g = std::make_shared<GuardArgs>();
  auto ia = std::make_shared<InjArgs>();
  CLI::App* guard = eval.add_subcommand(
      "guard",
      "Safety guard on a labelled JSONL file: per-policy precision, recall, F1, average "
      "precision, and the threshold meeting a target false-positive rate (--write-profile)");
  guard
      ->add_option("data", g->data,
                   "JSONL: {\"text\": ..., \"response\": optional, \"labels\": {\"harassment\": "
                   "1, ...}} per line")
      ->required();
  guard->add_option("model", g->model, "GGUF model (default: the pulled model)");
  guard->add_option("--guard-model", g->guard_model, "Classifier checkpoint (default: model)");
  guard->add_option("--guard-template", g->guard_template,
                    "Jinja file with the guard's prompt template, as g4 serve --guard-template");
  guard->add_option("--policies", g->policies,
                    "Comma-separated policies to evaluate (default: every labelled one)");
  guard
      ->add_option("--profile", g->profile,
                   "strict|balanced|permissive|PROFILE.json: policies and current thresholds")
      ->capture_default_str();
  guard->add_option("--target-fpr", g->target_fpr, "False-positive rate the threshold must meet")
      ->capture_default_str();
  guard->add_option("--write-profile", g->write_profile,
                    "Write the profile with the calibrated thresholds (for g4 serve "
                    "--guard-profile)");
  guard->add_option("-t,--threads", g->threads, "Threads (0 = all cores)")->capture_default_str();
  guard->add_flag("--exact", g->exact, "f32 activations in the guard");
  guard->add_flag("--json", g->json, "JSON output");
  CLI::App* inj = eval.add_subcommand(
      "injection",
      "Prompt-injection detector on a seeded corpus of benign and hostile tool outputs");
  inj->add_option("--seed", ia->seed, "Corpus seed")->capture_default_str();
  inj->add_option("--benign", ia->benign, "Benign samples")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  inj->add_option("--hostile", ia->hostile, "Hostile samples")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  inj->add_option("--split", ia->split,
                  "dev (wordings the detector was tuned on), heldout (the other half), both")
      ->capture_default_str();
  inj->add_option("--files", ia->files,
                  "Screen these files in 2000-byte chunks instead (false positives on real text)");
  inj->add_flag("--json", ia->json, "JSON output");
  inj->add_flag("-v,--verbose", ia->verbose, "Print every miss and false positive");
  return [g, ia, guard, inj]() -> int {
    if (guard->parsed()) return guard_command(*g);
    if (inj->parsed()) return injection_command(*ia);
    return -1;
  };
}

}  // namespace g4::cli
