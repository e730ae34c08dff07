// g4 plan: the memory a run needs, before running it: weights, KV per layer type (paged
// global blocks, sliding rings, shared layers), activations and scratch, the process's fixed
// cost; whether that fits a budget, and the largest context and parallelism that do
// (src/model/memory_estimate.h, src/runtime/memory_plan.h). Reads a GGUF's header and tensor
// infos or a preset shape; loads no weights.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.h"
#include "model/memory_estimate.h"

namespace g4::cli {

namespace {

int fail(const std::string& msg) {
  std::fprintf(stderr, "g4 plan: %s\n", msg.c_str());
  return 2;
}

// "f16" (every layer type) or "global=q8_0,sliding=f16".
Status parse_kv_types(const std::string& s, KvPlanOptions& o) {
  if (s.find('=') == std::string::npos) {
    auto t = parse_kv_type(s);
    if (!t.ok()) return t.status();
    o.global_type = o.sliding_type = t.value();
    return Status();
  }
  size_t at = 0;
  while (at <= s.size()) {
    const size_t comma = std::min(s.find(',', at), s.size());
    const std::string item = s.substr(at, comma - at);
    const size_t eq = item.find('=');
    if (eq == std::string::npos)
      return Status::error("--kv-type: expected T or global=T,sliding=T, got '" + s + "'");
    auto t = parse_kv_type(item.substr(eq + 1));
    if (!t.ok()) return t.status();
    const std::string kind = item.substr(0, eq);
    if (kind == "global")
      o.global_type = t.value();
    else if (kind == "sliding")
      o.sliding_type = t.value();
    else
      return Status::error("--kv-type: layer type '" + kind + "' is not global or sliding");
    at = comma + 1;
  }
  return Status();
}

std::string mib(int64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", double(b) / 1048576.0);
  return buf;
}

}  // namespace

Runner add_plan(CLI::App& app) {
  struct A {
    std::string model, kv_type = "f16", budget, weights = "q4_k_m";
    int64_t ctx = 4096, parallel = 1, chunk = 512, slack = 0;
    int block_tokens = 256, threads = 0;
    bool json = false, sparse = false;
    int sparse_page = SparseAttentionOptions{}.page_tokens;
  };
  auto a = std::make_shared<A>();
  app.add_option(
      "model", a->model, "GGUF file or preset (default: the pulled model); presets: " + [] {
        std::string s;
        for (const auto& n : footprint_preset_names()) s += (s.empty() ? "" : ", ") + n;
        return s;
      }());
  app.add_option("--ctx", a->ctx, "Context per sequence in tokens")->capture_default_str();
  app.add_option("--parallel", a->parallel, "Sequences held at once (g4 serve --parallel)")
      ->capture_default_str();
  app.add_option("--kv-type", a->kv_type,
                 "KV element type: f32, f16, bf16, q8_0, q4_0, or global=T,sliding=T")
      ->capture_default_str();
  app.add_option("--budget", a->budget, "Memory budget: 16GiB, 512MiB, 2G, bytes");
  app.add_option("--weights", a->weights, "Presets: weight type q4_k_m, q8_0, bf16, f16")
      ->capture_default_str();
  app.add_option("--chunk", a->chunk, "Prefill chunk (tokens per step per sequence)")
      ->capture_default_str();
  app.add_option("--swa-slack", a->slack, "Extra sliding-ring slots (g4 serve --swa-slack)")
      ->capture_default_str();
  app.add_option("--block-tokens", a->block_tokens, "Positions per global-layer KV block")
      ->capture_default_str();
  app.add_option("-t,--threads", a->threads, "Compute threads (0 = all cores)")
      ->capture_default_str();
  app.add_flag("--sparse", a->sparse,
               "Sparse attention routing (g4 run/serve --sparse): per-page key summaries");
  app.add_option("--sparse-page", a->sparse_page, "Positions per routed page (as g4 run/serve)")
      ->check(CLI::IsMember({8, 16, 32, 64, 128, 256}))
      ->capture_default_str();
  app.add_flag("--json", a->json, "JSON output");
  return [a] {
    if (a->ctx <= 0) return fail("--ctx must be a positive number of tokens");
    if (a->parallel <= 0) return fail("--parallel must be at least 1");
    if (a->chunk <= 0) return fail("--chunk must be at least 1");
    if (a->slack < 0) return fail("--swa-slack must not be negative");
    if (a->block_tokens <= 0 || a->block_tokens > (1 << 20))
      return fail("--block-tokens must be 1..1048576");
    if (a->threads < 0) return fail("--threads must not be negative");
    MemoryPlanOptions o;
    if (Status s = parse_kv_types(a->kv_type, o.kv); !s.ok()) return fail(s.message());
    int64_t budget = 0;
    if (!a->budget.empty()) {
      auto b = parse_byte_size(a->budget);
      if (!b.ok()) return fail("--budget: " + b.error());
      budget = b.value();
    }
    Result<ModelFootprint> fp = Status::error("");
    if (!a->model.empty() && !std::filesystem::exists(a->model)) {
      if (!is_footprint_preset(a->model)) {
        std::string list;
        for (const auto& n : footprint_preset_names()) list += (list.empty() ? "" : ", ") + n;
        return fail("'" + a->model + "' is neither a file nor a preset (" + list + ")");
      }
      fp = footprint_from_preset(a->model, a->weights);
    } else {
      if (!resolve_model(a->model)) return 1;
      if (std::filesystem::is_directory(a->model))
        return fail(a->model + " is a directory: plan a GGUF (g4 convert it first) or a preset");
      fp = footprint_from_file(a->model);
    }
    if (!fp.ok()) return fail(fp.error());
    const ModelFootprint& m = fp.value();
    const int64_t train = m.config.n_ctx_train;
    // As Engine::load: the context is capped at the trained one, the chunk at the context.
    std::string note;
    int64_t ctx = a->ctx;
    if (ctx > train) {
      note = "--ctx " + std::to_string(ctx) + " is past the model's trained context; g4 uses " +
             std::to_string(train);
      ctx = train;
    }
    ctx = std::max<int64_t>(16, ctx);
    o.kv.n_ctx = ctx;
    o.kv.parallel = a->parallel;
    o.kv.max_chunk = std::clamp<int64_t>(a->chunk, 1, ctx);
    o.kv.ring_slack = a->slack;
    o.kv.block_tokens = a->block_tokens;
    o.kv.sparse = a->sparse;
    o.kv.page_tokens = a->sparse_page;
    o.threads =
        a->threads > 0 ? a->threads : int(std::max(1u, std::thread::hardware_concurrency()));
    const MemoryPlan p = plan_memory(m, o);

    // Largest context (at --parallel) and parallelism (at --ctx) within the budget.
    int64_t max_ctx = -1, max_par = -1;
    constexpr int64_t kMaxParallel = 4096;
    if (budget > 0) {
      auto total_at = [&](int64_t c, int64_t par) {
        MemoryPlanOptions q = o;
        q.kv.n_ctx = c;
        q.kv.parallel = par;
        q.kv.max_chunk = std::clamp<int64_t>(a->chunk, 1, c);
        return plan_memory(m, q).total;
      };
      max_ctx =
          largest_fitting(16, train, [&](int64_t c) { return total_at(c, a->parallel) <= budget; });
      max_par = largest_fitting(1, kMaxParallel,
                                [&](int64_t par) { return total_at(ctx, par) <= budget; });
    }

    if (a->json) {
      nlohmann::ordered_json j;
      j["model"] = m.config.name;
      j["source"] = m.source;
      j["arch"] = m.config.arch;
      j["preset"] = !m.from_file;
      j["ctx"] = ctx;
      j["parallel"] = a->parallel;
      j["chunk"] = o.kv.max_chunk;
      j["threads"] = o.threads;
      j["kv_type"] = {{"global", kv_type_name(o.kv.global_type)},
                      {"sliding", kv_type_name(o.kv.sliding_type)}};
      j["block_tokens"] = p.kv.block_tokens;
      j["sparse"] = a->sparse;
      nlohmann::ordered_json kv = nlohmann::ordered_json::array();
      for (const KvTypePlan& t : p.kv.types) {
        kv.push_back({{"kind", t.kind},
                      {"layers", t.layers},
                      {"type", kv_type_name(t.type)},
                      {"bytes_per_token", t.bytes_per_token},
                      {"slots_per_seq", t.slots_per_seq},
                      {"bytes_per_seq", t.bytes_per_seq},
                      {"bytes", t.bytes}});
      }
      j["kv"] = {{"layer_types", kv},
                 {"blocks_per_seq", p.kv.blocks_per_seq},
                 {"block_bytes", p.kv.block_bytes},
                 {"bytes", p.kv.bytes}};
      j["weights"] = {{"type", m.weight_type},
                      {"params", m.n_params},
                      {"stored_bytes", m.weight_bytes},
                      {"resident_bytes", m.resident_bytes},
                      {"mapped_bytes", m.mapped_bytes}};
      j["activations"] = {{"step_tokens", p.act.step_tokens},
                          {"logit_rows", p.act.logit_rows},
                          {"stream", p.act.stream},
                          {"attention", p.act.attention},
                          {"ffn", p.act.ffn},
                          {"scores", p.act.scores},
                          {"matmul", p.act.matmul},
                          {"logits", p.act.logits},
                          {"bytes", p.act.total}};
      j["overhead_bytes"] = p.overhead;
      j["total_bytes"] = p.total;
      if (budget > 0) {
        j["budget_bytes"] = budget;
        j["fits"] = p.total <= budget;
        j["max_ctx"] = max_ctx;
        j["max_parallel"] = max_par;
      }
      if (!note.empty()) j["note"] = note;
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }

    std::printf("%s (%s%s)\n", m.config.name.c_str(), m.from_file ? "" : "preset, ",
                m.from_file ? m.source.c_str() : (m.weight_type + " weights").c_str());
    std::printf("ctx %lld x %lld sequence(s), KV %s%s%s, blocks of %d, chunk %lld, %d threads\n",
                (long long)ctx, (long long)a->parallel, kv_type_name(o.kv.global_type),
                o.kv.global_type == o.kv.sliding_type ? "" : "/",
                o.kv.global_type == o.kv.sliding_type ? "" : kv_type_name(o.kv.sliding_type),
                p.kv.block_tokens, (long long)o.kv.max_chunk, o.threads);
    if (!note.empty()) std::printf("note: %s\n", note.c_str());
    std::printf("\n%-28s %6s %14s %14s %14s\n", "", "layers", "bytes/token", "per sequence",
                "total");
    for (const KvTypePlan& t : p.kv.types) {
      const std::string label = t.kind == "global"    ? "KV global (paged blocks)"
                                : t.kind == "sliding" ? "KV sliding (rings)"
                                                      : "KV shared (donor's)";
      if (t.kind == "shared" && t.layers == 0) continue;
      std::printf("%-28s %6d %14s %14s %14s\n", label.c_str(), t.layers,
                  std::to_string(t.bytes_per_token).c_str(), mib(t.bytes_per_seq).c_str(),
                  mib(t.bytes).c_str());
    }
    std::printf("%-28s %6s %14s %14s %14s\n", "KV", "", "", mib(p.kv.bytes_per_seq).c_str(),
                mib(p.kv.bytes).c_str());
    std::printf("%-28s %6s %14s %14s %14s\n",
                m.from_file ? "weights (resident)" : ("weights " + m.weight_type).c_str(), "", "",
                "", mib(p.weights).c_str());
    std::printf("%-28s %6s %14s %14s %14s\n",
                ("activations (" + std::to_string(p.act.step_tokens) + "-token step)").c_str(), "",
                "", "", mib(p.act.total).c_str());
    std::printf("%-28s %6s %14s %14s %14s\n", "runtime (code, tokenizer)", "", "", "",
                mib(p.overhead).c_str());
    std::printf("%-28s %6s %14s %14s %14s  (%s)\n", "total", "", "", "", mib(p.total).c_str(),
                format_bytes(p.total).c_str());
    std::printf("\nweights: %.3f B parameters, %s stored, %s resident", double(m.n_params) / 1e9,
                mib(m.weight_bytes).c_str(), mib(m.resident_bytes).c_str());
    if (m.mapped_bytes > 0)
      std::printf(", %s left mapped (read by row, not counted)", mib(m.mapped_bytes).c_str());
    std::printf("\n");
    std::printf("global KV: %lld blocks of %d positions per sequence, %s per block%s\n",
                (long long)p.kv.blocks_per_seq, p.kv.block_tokens, mib(p.kv.block_bytes).c_str(),
                a->sparse ? " (with sparse-routing key summaries)" : "");
    std::printf("activations: stream %s, attention %s, ffn %s, scores %s, matmul %s, logits %s\n",
                mib(p.act.stream).c_str(), mib(p.act.attention).c_str(), mib(p.act.ffn).c_str(),
                mib(p.act.scores).c_str(), mib(p.act.matmul).c_str(), mib(p.act.logits).c_str());
    if (budget > 0) {
      std::printf("\nbudget %s: %s\n", format_bytes(budget).c_str(),
                  p.total <= budget ? "fits" : "does not fit");
      if (max_ctx < 16)
        std::printf("largest context at parallel %lld: none fits\n", (long long)a->parallel);
      else
        std::printf("largest context at parallel %lld: %lld%s\n", (long long)a->parallel,
                    (long long)max_ctx, max_ctx == train ? " (the model's trained context)" : "");
      if (max_par < 1)
        std::printf("largest parallel at ctx %lld: none fits\n", (long long)ctx);
      else
        std::printf("largest parallel at ctx %lld: %lld%s\n", (long long)ctx, (long long)max_par,
                    max_par == kMaxParallel ? " (or more)" : "");
    }
    return 0;
  };
}

}  // namespace g4::cli
