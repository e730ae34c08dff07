// Subcommands of the `g4` binary. Each registers its options on a CLI11 app and returns the
// function that runs it (exit code).
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/sparse_attention.h"

namespace g4::cli {

using Runner = std::function<int()>;

Runner add_run(CLI::App& app);
Runner add_inspect(CLI::App& app);
Runner add_tokenize(CLI::App& app);
Runner add_logits(CLI::App& app);
Runner add_perplexity(CLI::App& app);
Runner add_pull(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_serve(CLI::App& app);
Runner add_quantize(CLI::App& app);
Runner add_convert(CLI::App& app);
Runner add_eval(CLI::App& app);
Runner add_plan(CLI::App& app);
// `g4 eval guard` and `g4 eval injection` on the eval app (cmd_eval_guard.cc).
Runner add_eval_guard(CLI::App& eval);

// g4 inspect MODEL --moe-stats (cmd_moe_stats.cc).
struct MoeStatsArgs {
  std::string model, prompt, file, ids;
  bool json = false, exact = false;
  int threads = 0;
};
int run_moe_stats(const MoeStatsArgs& a);
// "2,105,2364" -> ids (for --ids options).
Result<std::vector<int32_t>> parse_token_ids(const std::string& s);

// ~/.cache/g4 (or $G4_HOME).
std::string cache_dir();
// Path of the default model in the cache (may not exist yet).
std::string default_model_path();
// The model to use: explicit path, else the cached default; prints a hint when missing.
bool resolve_model(std::string& path);
// Progress bar on stderr (only when stderr is a terminal, else sparse lines).
void progress(const char* label, double frac, bool done = false);
// --kv-type, --sparse, --sparse-budget, --sparse-min-ctx (KV storage and sparse attention
// routing, engine options).
void add_kv_options(CLI::App& app, std::string* kv_type, SparseAttentionOptions* o);

}  // namespace g4::cli
