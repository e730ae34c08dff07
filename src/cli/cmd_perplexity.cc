// g4 perplexity MODEL TEXTFILE (chunking: src/eval/perplexity.h).
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "eval/perplexity.h"

namespace g4::cli {

Runner add_perplexity(CLI::App& app) {
  struct A {
    std::string model, file;
    int64_t ctx = 512;
    int threads = 0;
    int max_chunks = 0;
    bool json = false;
    bool exact = false;
    std::string embed_scale = "bf16";
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
  app.add_flag("--exact", a->exact, "f32 activations in every matmul (slower, no rounding noise)");
  app.add_option("--embed-scale", a->embed_scale, "bf16 (HF, default) or exact (llama.cpp)")
      ->check(CLI::IsMember({"bf16", "exact"}));
  return [a] {
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
    eo.max_chunk = a->ctx;
    eo.exact = a->exact;
    eo.embed_scale = a->embed_scale == "exact" ? EmbedScale::kExact : EmbedScale::kBf16Rounded;
    auto eng = Engine::load(eo);
    if (!eng.ok()) {
      std::fprintf(stderr, "g4: %s\n", eng.error().c_str());
      return 1;
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
