// g4 perplexity MODEL TEXTFILE (chunking: src/eval/perplexity.h).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "eval/kld.h"
#include "eval/perplexity.h"

namespace g4::cli {

namespace {

int report_kld(Engine& base, Engine& model, const std::string& text, const KldOptions& o,
               bool json) {
  const int64_t ctx = model.options().n_ctx;
  auto r = kl_divergence(base, model, text, ctx, o, [](size_t done, size_t total) {
    progress("kld", double(done) / double(total), done == total);
  });
  if (!r.ok()) {
    std::fprintf(stderr, "g4: %s\n", r.error().c_str());
    return 1;
  }
  const auto& k = r.value();
  if (json) {
    nlohmann::json j{{"base", base.options().model_path},
                     {"model", model.options().model_path},
                     {"ctx", ctx},
                     {"n_chunks", k.n_chunks},
                     {"n_predicted", k.n_predicted},
                     {"last", o.last},
                     {"step", o.step},
                     {"ppl_base", k.ppl_base},
                     {"ppl_model", k.ppl_model},
                     {"ppl_ratio", k.ppl_model / k.ppl_base},
                     {"mean_kl", k.mean_kl},
                     {"p99_kl", k.p99_kl},
                     {"max_kl", k.max_kl},
                     {"top1_agreement", k.top1_agreement},
                     {"top1_agreement_clear", k.top1_agreement_clear},
                     {"clear_positions", k.clear_positions},
                     {"clear_lead_nats", KldResult::kClearLead},
                     {"miss_lead_median", k.miss_lead_median}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    if (o.last > 0)
      std::printf(
          "over the last %lld positions (steps of %lld) of %zu chunks of %lld: %zu tokens\n",
          (long long)o.last, (long long)o.step, k.n_chunks, (long long)ctx, k.n_predicted);
    else
      std::printf("over %zu tokens in %zu chunks of %lld:\n", k.n_predicted, k.n_chunks,
                  (long long)ctx);
    std::printf("  perplexity: base %.4f, model %.4f, ratio %.5f\n", k.ppl_base, k.ppl_model,
                k.ppl_model / k.ppl_base);
    std::printf("  KL(base || model): mean %.6f, 99th percentile %.6f, max %.6f\n", k.mean_kl,
                k.p99_kl, k.max_kl);
    std::printf("  top-1 agreement with the base: %.2f%%\n", 100 * k.top1_agreement);
    std::printf(
        "  where the base's best token leads its second by >= %.1f nat (%zu positions): "
        "%.2f%%; where they differ, the base's median lead: %.3f nat\n",
        KldResult::kClearLead, k.clear_positions, 100 * k.top1_agreement_clear, k.miss_lead_median);
  }
  return 0;
}

}  // namespace

Runner add_perplexity(CLI::App& app) {
  struct A {
    std::string model, file;
    int64_t ctx = 512;
    int threads = 0;
    int max_chunks = 0;
    bool json = false;
    bool exact = false;
    SparseAttentionOptions sparse;
    std::string kv_type = "f16";
    std::string embed_scale = "bf16";
    std::string kld_base;
    int64_t kld_last = 0;
    int64_t kld_step = 1;
  };
  auto a = std::make_shared<A>();
  app.add_option("model", a->model, "GGUF model")->required();
  app.add_option("textfile", a->file, "UTF-8 text file")->required();
  app.add_option("--ctx", a->ctx, "Tokens per chunk, including <bos>")
      ->capture_default_str()
      ->check(CLI::Range(8, 1 << 20));
  app.add_option("--chunks", a->max_chunks, "Stop after this many chunks (0 = all)");
  app.add_option("-t,--threads", a->threads, "Threads (0 = all cores)");
  app.add_flag("--json", a->json, "Print the result as JSON on stdout");
  add_kv_options(app, &a->kv_type, &a->sparse);
  app.add_flag("--exact", a->exact, "f32 activations in every matmul (slower, no rounding noise)");
  app.add_option("--embed-scale", a->embed_scale, "bf16 (HF, default) or exact (llama.cpp)")
      ->check(CLI::IsMember({"bf16", "exact"}));
  app.add_option(
      "--kld", a->kld_base,
      "Also run BASE.gguf on the same chunks (fp16 K/V, dense attention): KL(base || model), "
      "top-1 agreement");
  app.add_option("--kld-last", a->kld_last,
                 "With --kld: score only the last N positions of each chunk, both models side by "
                 "side (memory for one step's logits, not the chunk's; for long contexts)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  app.add_option(
         "--kld-step", a->kld_step,
         "With --kld-last: tokens per step over the scored positions (1 = each a decoding "
         "step, where --sparse routes; more: the prompt path, routed with --sparse-prefill)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(512)));
  return [a] {
    if (a->kld_last > 0 && a->kld_base.empty()) {
      std::fprintf(stderr, "g4: --kld-last needs --kld BASE\n");
      return 1;
    }
    std::ifstream in(a->file, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "g4: cannot read '%s'\n", a->file.c_str());
      return 1;
    }
    const std::string text((std::istreambuf_iterator<char>(in)), {});
    EngineOptions eo;
    eo.model_path = a->model;
    eo.n_threads = a->threads;
    eo.n_ctx = a->ctx;
    // --kld-last reads the unscored part in prompt steps of the usual size; otherwise a chunk
    // is one step.
    eo.max_chunk = a->kld_last > 0 ? std::min<int64_t>(a->ctx, 512) : a->ctx;
    eo.exact = a->exact;
    eo.sparse = a->sparse;
    eo.kv_type = a->kv_type;
    eo.embed_scale = a->embed_scale == "exact" ? EmbedScale::kExact : EmbedScale::kBf16Rounded;
    auto eng = Engine::load(eo);
    if (!eng.ok()) {
      std::fprintf(stderr, "g4: %s\n", eng.error().c_str());
      return 1;
    }
    if (!a->kld_base.empty()) {
      // The reference keeps fp16 K/V and dense attention, so --kv-type and --sparse measure
      // what they cost against the same model file.
      eo.model_path = a->kld_base;
      eo.kv_type = "f16";
      eo.sparse = SparseAttentionOptions{};
      auto base = Engine::load(eo);
      if (!base.ok()) {
        std::fprintf(stderr, "g4: %s\n", base.error().c_str());
        return 1;
      }
      KldOptions ko;
      ko.max_chunks = a->max_chunks;
      ko.last = a->kld_last;
      ko.step = a->kld_step;
      return report_kld(*base.value(), *eng.value(), text, ko, a->json);
    }
    auto r = perplexity(*eng.value(), text, eng.value()->options().n_ctx, a->max_chunks,
                        [](size_t done, size_t total, double running) {
                          progress("perplexity", double(done) / double(total), done == total);
                          std::fprintf(stderr, " chunk %zu/%zu running ppl %.4f%s", done, total,
                                       running, done == total ? "\n" : "");
                        });
    if (!r.ok()) {
      std::fprintf(stderr, "g4: %s\n", r.error().c_str());
      return 1;
    }
    const auto& p = r.value();
    if (a->json) {
      nlohmann::json j{{"model", a->model},
                       {"file", a->file},
                       {"ctx", a->ctx},
                       {"n_tokens_text", p.n_tokens_text},
                       {"n_chunks", p.chunk_perplexity.size()},
                       {"n_predicted", p.n_predicted},
                       {"nll_sum", p.nll_sum},
                       {"perplexity", p.perplexity},
                       {"chunk_perplexities", p.chunk_perplexity}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("perplexity: %.4f over %zu tokens in %zu chunks of %lld\n", p.perplexity,
                  p.n_predicted, p.chunk_perplexity.size(), (long long)a->ctx);
    }
    return 0;
  };
}

}  // namespace g4::cli
