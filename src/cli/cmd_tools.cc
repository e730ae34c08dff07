// g4 inspect / tokenize / logits.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "g4/engine.h"
#include "io/gguf.h"
#include "io/hf_checkpoint.h"
#include "model/memory_estimate.h"
#include "runtime/memory_plan.h"

namespace g4::cli {

namespace {

int fail(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "g4: %s\n", msg.c_str());
  return code;
}

// A NumPy .npy (format 1.0): float32 little-endian, C order, shape [rows, cols]; written to
// PATH.tmp and renamed, so a failed write leaves no partial file.
Status write_npy_f32(const std::string& path, const float* data, size_t rows, size_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    const uint16_t hl = uint16_t(header.size());
    out.write("\x93NUMPY\x01\x00", 8);
    out.write(reinterpret_cast<const char*>(&hl), 2);
    out.write(header.data(), std::streamsize(header.size()));
    out.write(reinterpret_cast<const char*>(data), std::streamsize(rows * cols * sizeof(float)));
    if (!out.good()) {
      std::remove(tmp.c_str());
      return Status::error("cannot write " + path);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Status::error("cannot write " + path);
  }
  return Status();
}

}  // namespace

Result<std::vector<int32_t>> parse_token_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      const long v = std::stol(item, &used);
      if (used != item.size() || v < 0 || v > INT32_MAX) throw std::invalid_argument(item);
      ids.push_back(int32_t(v));
    } catch (const std::exception&) {
      return Status::error("bad token id '" + item + "' in --ids");
    }
  }
  if (ids.empty()) return Status::error("--ids is empty");
  return ids;
}

// How the KV cache holds this model at its trained context, f16, the runtime's default blocks
// (the paged global layers' block accounting; `g4 plan` for other sizes and types).
static void print_kv_blocks(const ModelConfig& c) {
  KvPlanOptions o;
  o.n_ctx = c.n_ctx_train > 0 ? c.n_ctx_train : 4096;
  const KvPlan p = plan_kv(kv_geometry_for(c), o);
  const auto mib = [](int64_t b) { return double(b) / 1048576.0; };
  std::printf("\nKV cache, one sequence of %lld positions at f16 (g4 plan for other sizes):\n",
              (long long)o.n_ctx);
  for (const KvTypePlan& t : p.types) {
    if (t.layers == 0) continue;
    if (t.kind == "global") {
      std::printf(
          "  global  %3d layers  paged: blocks of %d positions, %.2f MiB each (K+V, all global "
          "layers); %lld blocks = %.1f MiB; %.1f KiB per position\n",
          t.layers, p.block_tokens, mib(p.block_bytes), (long long)p.blocks_per_seq,
          mib(t.bytes_per_seq), double(t.bytes_per_token) / 1024.0);
    } else if (t.kind == "sliding") {
      std::printf("  sliding %3d layers  rings of %lld slots: %.1f MiB\n", t.layers,
                  (long long)t.slots_per_seq, mib(t.bytes_per_seq));
    } else {
      std::printf("  shared  %3d layers  read their donor's K/V: 0 bytes\n", t.layers);
    }
  }
  std::printf("  total %.1f MiB\n", mib(p.bytes_per_seq));
}

Runner add_inspect(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto all = std::make_shared<bool>(false);
  auto moe = std::make_shared<MoeStatsArgs>();
  auto moe_stats = std::make_shared<bool>(false);
  app.add_option("file", *path, "GGUF file or HF checkpoint directory (shown as converted)")
      ->required();
  app.add_flag("--all", *all, "Print whole arrays' first items and every tensor");
  app.add_flag("--moe-stats", *moe_stats,
               "MoE models: prefill a prompt and print per-layer, per-expert routed-token counts");
  app.add_option("--prompt", moe->prompt, "--moe-stats: prompt text (tokenized with <bos>)");
  app.add_option("--file", moe->file, "--moe-stats: read the prompt text from a file");
  app.add_option("--ids", moe->ids, "--moe-stats: comma-separated token ids instead of text");
  app.add_flag("--json", moe->json, "--moe-stats: JSON output");
  app.add_flag("--exact", moe->exact, "--moe-stats: f32 activations and f32 KV cache");
  app.add_option("-t,--threads", moe->threads, "--moe-stats: threads (0 = all cores)");
  return [path, all, moe, moe_stats] {
    if (*moe_stats) {
      moe->model = *path;
      return run_moe_stats(*moe);
    }
    if (!moe->prompt.empty() || !moe->file.empty() || !moe->ids.empty() || moe->json || moe->exact)
      return fail("--prompt, --file, --ids, --json and --exact go with --moe-stats", 2);
    auto f = is_hf_checkpoint_dir(*path) ? load_hf_checkpoint(*path, {}) : GgufFile::open(*path);
    if (!f.ok()) return fail(f.error());
    const GgufFile& g = *f.value();
    std::printf(
        "file: %s\nGGUF version %u, %zu metadata keys, %zu tensors, alignment %u, data at %llu, "
        "size %zu bytes\n\n",
        path->c_str(), g.version(), g.metadata().size(), g.tensors().size(), g.alignment(),
        (unsigned long long)g.data_offset(), g.file_size());
    std::printf("metadata:\n");
    for (const auto& [k, v] : g.metadata()) {
      std::printf("  %-45s %s\n", k.c_str(), v.to_string(*all ? 32 : 6).c_str());
    }
    std::map<std::string, std::pair<int, uint64_t>> by_type;
    uint64_t total = 0;
    std::printf("\ntensors:\n  %-40s %-6s %-20s %12s\n", "name", "type", "shape", "bytes");
    size_t shown = 0;
    for (const auto& t : g.tensors()) {
      const char* tn = info(t.type).name;
      by_type[tn].first++;
      by_type[tn].second += t.nbytes;
      total += t.nbytes;
      if (*all || shown < 40) {
        std::printf("  %-40s %-6s %-20s %12llu\n", t.name.c_str(), tn, t.shape_string().c_str(),
                    (unsigned long long)t.nbytes);
        ++shown;
      }
    }
    if (shown < g.tensors().size())
      std::printf("  ... %zu more (use --all)\n", g.tensors().size() - shown);
    std::printf("\nby type:");
    for (const auto& [tn, cb] : by_type) {
      std::printf(" %s x%d (%.1f MiB)", tn.c_str(), cb.first, double(cb.second) / 1048576.0);
    }
    std::printf("\ntotal tensor data: %.1f MiB\n", double(total) / 1048576.0);
    auto cfg = config_from_gguf(g);
    if (!cfg.ok()) {
      std::printf("model: not loadable by g4: %s\n", cfg.error().c_str());
      return 0;
    }
    std::printf("model: %s\n", cfg.value().summary().c_str());
    print_kv_blocks(cfg.value());
    return 0;
  };
}

Runner add_tokenize(CLI::App& app) {
  struct A {
    std::string model, text, file, tokenizer_json;
    bool json = false, no_bos = false, special = false, pieces = false;
  };
  auto a = std::make_shared<A>();
  app.add_option("text", a->text, "Text to tokenize (or --file, or stdin)");
  app.add_option("-m,--model", a->model, "GGUF model (default: the pulled model)");
  app.add_option("-f,--file", a->file, "Read the text from a file");
  app.add_flag("--json", a->json, "Print ids as a JSON array");
  app.add_flag("--no-bos", a->no_bos, "Do not prepend <bos>");
  app.add_flag("--special", a->special, "Parse special-token texts such as <start_of_turn>");
  app.add_flag("--pieces", a->pieces, "Print each id with its text");
  app.add_option("--tokenizer-json", a->tokenizer_json,
                 "Use a Hugging Face tokenizer.json (Gemma 4 BPE) instead of a GGUF");
  return [a] {
    std::unique_ptr<GgufFile> file;  // GGUF tokenizers keep no views into it, but keep it open
    Result<Tokenizer> tk = Status::error("no tokenizer");
    if (!a->tokenizer_json.empty()) {
      tk = Tokenizer::from_hf_json_file(a->tokenizer_json);
    } else {
      if (!resolve_model(a->model)) return 1;
      auto f = GgufFile::open(a->model);
      if (!f.ok()) return fail(f.error());
      file = std::move(f).value();
      tk = Tokenizer::from_gguf(*file);
    }
    if (!tk.ok()) return fail(tk.error());
    std::string text = a->text;
    if (!a->file.empty()) {
      std::ifstream in(a->file, std::ios::binary);
      if (!in) return fail("cannot read '" + a->file + "'");
      text.assign(std::istreambuf_iterator<char>(in), {});
    } else if (text.empty()) {
      text.assign(std::istreambuf_iterator<char>(std::cin), {});
    }
    const auto ids = tk.value().encode(text, !a->no_bos, a->special);
    if (a->json) {
      std::printf("%s\n", nlohmann::json(ids).dump().c_str());
    } else if (a->pieces) {
      for (int32_t id : ids) {
        std::printf("%6d %s\n", id,
                    nlohmann::json(tk.value().text(id))
                        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                        .c_str());
      }
    } else {
      for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
      std::printf("\n");
    }
    std::fprintf(stderr, "%zu tokens\n", ids.size());
    return 0;
  };
}

Runner add_logits(CLI::App& app) {
  struct A {
    std::string model, prompt, ids, embed_scale = "bf16", dtype = "auto", npy;
    bool exact = false;
    int top = 10;
    bool all = false;
    int threads = 0;
  };
  auto a = std::make_shared<A>();
  app.add_option("model", a->model, "GGUF model or HF checkpoint directory")->required();
  app.add_option("--dtype", a->dtype, "HF checkpoint directory: matrix type on load")
      ->check(
          CLI::IsMember({"auto", "f32", "f16", "bf16", "q8_0", "q4_0", "q5_0", "q4_k", "q6_k"}));
  auto* p = app.add_option("--prompt", a->prompt, "Prompt text (tokenized with <bos>)");
  auto* i = app.add_option("--ids", a->ids, "Comma-separated token ids, e.g. 2,105,2364");
  p->excludes(i);
  app.add_option("--top", a->top, "Top-K per position (capped at the vocabulary)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 24));
  app.add_option("--all-logits", a->npy,
                 "Also write every position's full logits to this NumPy .npy file "
                 "(float32, [positions, vocab])");
  app.add_flag("--all-positions", a->all, "Every position, not only the last");
  app.add_option("-t,--threads", a->threads, "Threads (0 = all cores)");
  app.add_option("--embed-scale", a->embed_scale, "bf16 (HF, default) or exact (llama.cpp)")
      ->check(CLI::IsMember({"bf16", "exact"}));
  app.add_flag("--exact", a->exact,
               "f32 activations in every matmul and f32 K/V (slower, no rounding noise)");
  return [a] {
    if (a->prompt.empty() && a->ids.empty())
      return fail("give --prompt TEXT or --ids 2,105,...", 2);
    EngineOptions eo;
    eo.model_path = a->model;
    eo.n_threads = a->threads;
    eo.n_ctx = 1 << 20;
    eo.embed_scale = a->embed_scale == "exact" ? EmbedScale::kExact : EmbedScale::kBf16Rounded;
    eo.exact = a->exact;
    eo.kv_f32 = a->exact;  // the exact path keeps K/V in float32 too, as references do
    eo.hf_dtype = a->dtype;
    auto eng = Engine::load(eo);
    if (!eng.ok()) return fail(eng.error());
    Engine& e = *eng.value();
    std::vector<int32_t> ids;
    if (!a->ids.empty()) {
      auto r = parse_token_ids(a->ids);
      if (!r.ok()) return fail(r.error(), 2);
      ids = r.value();
    } else {
      ids = e.tokenizer().encode(a->prompt, true, false);
    }
    Session s(e);
    auto lg = s.logits_all(ids);
    if (!lg.ok()) return fail(lg.error());
    const int vocab = e.model().config().vocab_size;
    if (!a->npy.empty()) {
      Status st = write_npy_f32(a->npy, lg.value().data(), ids.size(), size_t(vocab));
      if (!st.ok()) return fail(st.message());
    }
    nlohmann::json out;
    out["model"] = a->model;
    out["ids"] = ids;
    out["positions"] = nlohmann::json::array();
    std::vector<int32_t> order(static_cast<size_t>(vocab));
    for (size_t pos = a->all ? 0 : ids.size() - 1; pos < ids.size(); ++pos) {
      const float* row = lg.value().data() + pos * size_t(vocab);
      for (int k = 0; k < vocab; ++k) order[size_t(k)] = k;
      const int K = std::min(a->top, vocab);
      std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int32_t x, int32_t y) {
        return row[x] > row[y] || (row[x] == row[y] && x < y);
      });
      nlohmann::json top = nlohmann::json::array();
      for (int k = 0; k < K; ++k)
        top.push_back({{"id", order[size_t(k)]}, {"logit", row[order[size_t(k)]]}});
      out["positions"].push_back({{"pos", pos}, {"token", ids[pos]}, {"top", top}});
    }
    std::printf("%s\n", out.dump().c_str());
    return 0;
  };
}

}  // namespace g4::cli
