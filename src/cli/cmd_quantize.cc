// g4 quantize IN.gguf OUT.gguf --type T (rules: src/model/quantize.h).
#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "model/quantize.h"

namespace g4::cli {

Runner add_quantize(CLI::App& app) {
  struct A {
    std::string in, out, type;
    int threads = 0;
    bool verbose = false;
  };
  auto a = std::make_shared<A>();
  app.add_option("input", a->in, "GGUF model to read")->required();
  app.add_option("output", a->out, "GGUF file to write")->required();
  app.add_option("--type", a->type, "f16, bf16, q8_0, q4_0, q5_0, q4_k or q6_k")->required();
  app.add_option("-t,--threads", a->threads, "Threads (0 = all cores)");
  app.add_flag("-v,--verbose", a->verbose, "List every tensor's conversion");
  return [a] {
    auto t = parse_quant_type(a->type);
    if (!t.ok()) {
      std::fprintf(stderr, "g4: %s\n", t.error().c_str());
      return 1;
    }
    QuantizeOptions o;
    o.target = t.value();
    o.n_threads = a->threads;
    o.progress = [](uint64_t done, uint64_t total) {
      progress("quantize", total ? double(done) / double(total) : 1.0, done == total);
    };
    const auto t0 = std::chrono::steady_clock::now();
    auto r = quantize_model(a->in, a->out, o);
    if (!r.ok()) {
      std::fprintf(stderr, "g4: %s\n", r.error().c_str());
      return 1;
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto& rep = r.value();
    if (a->verbose) {
      for (const auto& p : rep.plan) {
        std::fprintf(stderr, "  %-32s %-5s -> %-5s%s\n", p.name.c_str(), info(p.from).name,
                     info(p.to).name, p.fallback ? "  (row width fallback)" : "");
      }
    }
    std::printf("wrote %s: %zu tensors (", a->out.c_str(), rep.plan.size());
    bool first = true;
    for (const auto& [name, n] : rep.tensors_by_type) {
      std::printf("%s%d %s", first ? "" : ", ", n, name.c_str());
      first = false;
    }
    std::printf("), %d fell back for their row width, %.1f MB -> %.1f MB in %.1f s\n",
                rep.n_fallback, double(rep.in_bytes) / 1e6, double(rep.out_bytes) / 1e6, secs);
    return 0;
  };
}

}  // namespace g4::cli
