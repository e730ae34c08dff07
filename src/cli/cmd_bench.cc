// g4 bench: prefill (pp) and decode (tg) throughput like llama-bench: pp runs N prompt tokens
// through fresh sequences in chunks; tg decodes M tokens one step at a time after a
// one-token prompt. With -d D (llama-bench's depth) both start after D tokens of context,
// prefilled once (untimed) and copied into each run's sequences. Tokens are fixed
// pseudo-random ids; sampling is not timed. --kv-fill random skips the depth's prefill and
// writes random K/V rows (and sparse routing's page summaries) straight into the cache: a
// timing tool for depths whose prefill would take hours here (a 256K-token context of a
// 31B-shaped stack); the model never computed those rows, so only speed and memory mean
// anything.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "cli/commands.h"
#include "g4/engine.h"
#include "runtime/memory_plan.h"

namespace g4::cli {

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Stat {
  double mean = 0, sd = 0;
};
Stat stat(const std::vector<double>& v) {
  Stat s;
  for (double x : v) s.mean += x;
  s.mean /= double(v.size());
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / double(v.size() - 1)) : 0;
  return s;
}

// Peak resident set of this process (VmHWM), bytes; 0 if unknown.
size_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return size_t(std::stoull(line.substr(6))) * 1024;
  }
  return 0;
}

// A forward step that fails (a bad file or option the loader let through) ends the bench
// with the engine's message instead of an abort.
void step_or_exit(const Status& st) {
  if (st.ok()) return;
  std::fprintf(stderr, "g4 bench: %s\n", st.message().c_str());
  std::exit(1);
}

// --kv-fill random: positions [0, n) of seq get random K/V rows in every layer that owns
// storage (sliding rings only the positions they keep), then the page summaries (sparse
// routing) and the length, as if a prefill had written them. 61 rows per layer, reused
// (distinct enough for timing; the row pool keeps the fill fast).
void fill_random(KvCache& kv, int seq, int64_t n) {
  G4_CHECK(kv.reserve(seq, n).ok());
  std::mt19937 rng(1234);
  std::normal_distribution<float> nd;
  constexpr int kRows = 61;
  for (int l = 0; l < kv.n_layers(); ++l) {
    if (kv.owner(l) != l) continue;
    const KvLayerGeometry& g = kv.geometry(l);
    const size_t w = size_t(g.n_kv_heads) * size_t(g.head_dim);
    std::vector<float> pool(2 * kRows * w);
    for (float& x : pool) x = nd(rng);
    const int64_t from = kv.paged(l) ? 0 : std::max<int64_t>(0, n - kv.capacity(l));
    for (int64_t p = from; p < n; ++p) {
      const size_t r = size_t((p * 7 + l) % kRows);
      kv.store(seq, l, p, pool.data() + r * w, pool.data() + (kRows + r) * w);
    }
    if (kv.paged(l)) kv.summarize(seq, l, 0, n);
  }
  kv.set_length(seq, n);
}

}  // namespace

Runner add_bench(CLI::App& app) {
  struct A {
    std::string model;
    int pp = 512, tg = 128, reps = 3, threads = 0, batch = 1, depth = 0;
    bool json = false;
    bool exact = false;
    SparseAttentionOptions sparse;
    std::string kv_type = "f16";
    std::string kv_fill = "prefill";
    bool profile = false;
  };
  auto a = std::make_shared<A>();
  app.add_option("model", a->model, "GGUF model (default: the pulled model)");
  app.add_option("-p,--n-prompt", a->pp, "Prompt tokens for the prefill test (0 = skip)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("-n,--n-gen", a->tg, "Tokens for the decode test (0 = skip)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("-b,--batch", a->batch,
                 "Sequences decoded together in the decode test (a server's batched step); "
                 "t/s counts all of them")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("-d,--depth", a->depth,
                 "Tokens of context already in the cache before each test (llama-bench -d)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 22));
  app.add_option("-r,--repetitions", a->reps, "Repetitions")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("-t,--threads", a->threads, "Threads (0 = all cores)")->capture_default_str();
  app.add_flag("--json", a->json, "JSON output");
  app.add_flag("--profile", a->profile,
               "Time per phase of the decode steps (Gemma 3 models; each phase includes its "
               "thread barrier)");
  add_kv_options(app, &a->kv_type, &a->sparse);
  app.add_option("--kv-fill", a->kv_fill,
                 "How the -d context is made: prefill (the model runs over DEPTH tokens) or "
                 "random (random K/V rows and sparse summaries written straight into the cache; "
                 "a timing and memory tool only, for depths too slow to prefill)")
      ->check(CLI::IsMember({"prefill", "random"}))
      ->capture_default_str();
  app.add_flag("--exact", a->exact, "f32 activations in every matmul");
  return [a] {
    if (!resolve_model(a->model)) return 1;
    EngineOptions eo;
    eo.model_path = a->model;
    eo.n_threads = a->threads;
    const int d = a->depth;
    // Exactly the positions a run writes (a prompt of pp, or tg + 1 decoding steps), so
    // -p 32768 fits a 32K model.
    eo.n_ctx = d + std::max(a->pp, a->tg + 1);
    eo.max_chunk = 512;
    eo.exact = a->exact;
    eo.sparse = a->sparse;
    eo.kv_type = a->kv_type;
    auto eng = Engine::load(eo);
    if (!eng.ok()) {
      std::fprintf(stderr, "g4: %s\n", eng.error().c_str());
      return 1;
    }
    Engine& e = *eng.value();
    if (e.options().n_ctx < eo.n_ctx) {
      std::fprintf(
          stderr, "g4: -d %d plus the test's tokens needs a context of %lld; the model's is %lld\n",
          d, (long long)eo.n_ctx, (long long)e.options().n_ctx);
      return 1;
    }
    const Model& m = e.model();
    const int vocab = m.config().vocab_size;
    std::vector<int32_t> ids(size_t(d + std::max(a->pp, a->tg + 1)));
    uint64_t x = 88172645463325252ull;
    for (auto& id : ids) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      // Ordinary pieces: above the special tokens of a real vocabulary, anywhere in a tiny one.
      const int lo = vocab > 4000 ? 1000 : 0, hi = std::min(vocab, 200000);
      id = int32_t(lo + int(x % uint64_t(hi - lo)));
    }
    ids[0] = e.tokenizer().bos();
    StepOutput out;
    // Prefills ids[from, to) into seq in chunks.
    auto prefill = [&](KvCache& kv, int seq, int from, int to) {
      for (int b = from; b < to; b += int(eo.max_chunk)) {
        const int n = std::min(to - b, int(eo.max_chunk));
        StepBatch sb;
        sb.seqs.push_back(
            {seq, std::span<const int32_t>(ids.data() + b, size_t(n)), b, false, true});
        step_or_exit(m.forward(sb, kv, e.exec(), out));
      }
    };
    // Room for the base context and every sequence of a run.
    KvCacheOptions kv_opts = e.kv_options();
    // (Whole blocks per sequence: a context shorter than a block still takes one.)
    const int64_t bt = kv_block_size(kv_opts.block_tokens, kv_opts.n_ctx);
    kv_opts.pool_tokens = (eo.n_ctx + bt - 1) / bt * bt * int64_t(a->batch + 2);
    // The depth's context, prefilled once into sequence `base` of one cache; each run's
    // sequences start as copies of it.
    const int base = a->batch;
    std::unique_ptr<KvCache> ctx_kv;
    if (d > 0) {
      const bool random = a->kv_fill == "random";
      std::fprintf(stderr, "g4 bench: %s %d tokens of context...\n",
                   random ? "filling (random K/V rows)" : "prefilling", d);
      ctx_kv = std::make_unique<KvCache>(m.kv_geometry(), kv_opts);
      G4_CHECK(ctx_kv->add_sequence(base).ok());
      if (random) {
        fill_random(*ctx_kv, base, d);
      } else {
        prefill(*ctx_kv, base, 0, d);
      }
    }
    auto run_pp = [&]() -> double {
      std::unique_ptr<KvCache> fresh;
      KvCache* kv = ctx_kv.get();
      if (kv) {
        kv->remove_sequence(0);
        G4_CHECK(kv->add_sequence(0).ok());
        kv->copy_prefix(base, 0, d);
      } else {
        fresh = std::make_unique<KvCache>(m.kv_geometry(), kv_opts);
        kv = fresh.get();
        G4_CHECK(kv->add_sequence(0).ok());
      }
      const double t0 = now();
      prefill(*kv, 0, d, d + a->pp);
      return a->pp / (now() - t0);
    };
    // batch sequences, each fed its own token stream (ids read from a different offset).
    StepProfile prof;
    auto run_tg = [&]() -> double {
      std::unique_ptr<KvCache> fresh;
      KvCache* kvp = ctx_kv.get();
      if (!kvp) {
        fresh = std::make_unique<KvCache>(m.kv_geometry(), kv_opts);
        kvp = fresh.get();
      }
      KvCache& kv = *kvp;
      StepBatch sb;
      for (int s = 0; s < a->batch; ++s) {
        if (d > 0) kv.remove_sequence(s);
        G4_CHECK(kv.add_sequence(s).ok());
        if (d > 0) kv.copy_prefix(base, s, d);
        sb.seqs.push_back(
            {s, std::span<const int32_t>(&ids[(size_t(d) + size_t(s)) % ids.size()], 1), d, false});
      }
      step_or_exit(m.forward(sb, kv, e.exec(), out));
      if (a->profile) e.exec().profile = &prof;
      const double t0 = now();
      for (int i = 1; i <= a->tg; ++i) {
        for (int s = 0; s < a->batch; ++s) {
          const size_t at = (size_t(d + i) + size_t(s)) % ids.size();
          sb.seqs[size_t(s)] = {s, std::span<const int32_t>(&ids[at], 1), d + i, false};
        }
        step_or_exit(m.forward(sb, kv, e.exec(), out));
      }
      const double dt = now() - t0;
      e.exec().profile = nullptr;
      return double(a->tg) * a->batch / dt;
    };
    if (a->pp > 0) run_pp();  // warm-up (page in the weights, size the scratch buffers)
    std::vector<double> pp, tg;
    for (int r = 0; r < a->reps; ++r) {
      if (a->pp > 0) pp.push_back(run_pp());
      if (a->tg > 0) tg.push_back(run_tg());
    }
    const int threads = e.exec().pool.size();
    nlohmann::json j{{"model", a->model},
                     {"threads", threads},
                     {"isa", isa_name(e.exec().isa)},
                     {"reps", a->reps},
                     {"depth", d},
                     {"kv_type", a->kv_type},
                     {"kv_fill", a->kv_fill},
                     {"sparse", a->sparse.enabled},
                     {"kv_bytes", ctx_kv ? ctx_kv->bytes() : size_t(0)},
                     {"peak_rss_bytes", peak_rss_bytes()}};
    if (!pp.empty()) {
      const Stat s = stat(pp);
      j["pp"] = {{"n", a->pp}, {"tokens_per_s", s.mean}, {"sd", s.sd}, {"runs", pp}};
    }
    if (!tg.empty()) {
      const Stat s = stat(tg);
      j["tg"] = {
          {"n", a->tg}, {"batch", a->batch}, {"tokens_per_s", s.mean}, {"sd", s.sd}, {"runs", tg}};
    }
    if (prof.steps > 0) {
      nlohmann::json pj;
      for (int p = 0; p < int(StepPhase::kCount); ++p)
        pj[step_phase_name(StepPhase(p))] = prof.seconds[p] / double(prof.steps) * 1e3;
      j["tg"]["profile_ms_per_step"] = pj;
    }
    if (a->json) {
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("| model | threads | isa | test | t/s |\n|---|---|---|---|---|\n");
      const std::string name = e.model().config().name;
      const std::string at = d > 0 ? " @ d" + std::to_string(d) : "";
      if (!pp.empty())
        std::printf("| %s | %d | %s | pp%d%s | %.2f ± %.2f |\n", name.c_str(), threads,
                    isa_name(e.exec().isa), a->pp, at.c_str(), stat(pp).mean, stat(pp).sd);
      const std::string tg_name =
          "tg" + std::to_string(a->tg) + (a->batch > 1 ? " x" + std::to_string(a->batch) : "") + at;
      if (!tg.empty())
        std::printf("| %s | %d | %s | %s | %.2f ± %.2f |\n", name.c_str(), threads,
                    isa_name(e.exec().isa), tg_name.c_str(), stat(tg).mean, stat(tg).sd);
      if (d > 0)
        std::printf("\nKV held: %.1f MiB (%s, context %s); peak RSS %.1f MiB\n",
                    double(ctx_kv->bytes()) / 1048576.0, a->kv_type.c_str(),
                    a->kv_fill == "random" ? "random rows" : "prefilled",
                    double(peak_rss_bytes()) / 1048576.0);
      if (prof.steps > 0) {
        double total = 0;
        for (double v : prof.seconds) total += v;
        std::printf("\n| decode phase | ms per step | share |\n|---|---|---|\n");
        for (int p = 0; p < int(StepPhase::kCount); ++p)
          std::printf("| %s | %.3f | %.1f%% |\n", step_phase_name(StepPhase(p)),
                      prof.seconds[p] / double(prof.steps) * 1e3, 100 * prof.seconds[p] / total);
      } else if (a->profile) {
        std::printf("\n(--profile: this architecture's forward records no phases)\n");
      }
    }
    return 0;
  };
}

}  // namespace g4::cli
