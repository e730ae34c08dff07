// g4: command-line front end. `g4 --help` lists the subcommands.
#include <cstdio>
#include <map>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "g4: a Gemma inference engine (run, inspect, tokenize, logits, perplexity, bench, pull, "
      "serve, quantize, convert, eval, plan)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "g4 0.1.0");
  std::map<CLI::App*, g4::cli::Runner> runners;
  auto add = [&](CLI::App* sub, g4::cli::Runner r) { runners[sub] = std::move(r); };
  {
    auto* s =
        app.add_subcommand("run", "Chat in the terminal, or answer one prompt (streams tokens)");
    add(s, g4::cli::add_run(*s));
  }
  {
    auto* s = app.add_subcommand(
        "inspect",
        "Print a GGUF file's metadata and tensor table (or, --moe-stats, MoE router load)");
    add(s, g4::cli::add_inspect(*s));
  }
  {
    auto* s = app.add_subcommand("tokenize", "Turn text into token ids");
    add(s, g4::cli::add_tokenize(*s));
  }
  {
    auto* s =
        app.add_subcommand("logits", "Print top-K logits per position as JSON (parity checks)");
    add(s, g4::cli::add_logits(*s));
  }
  {
    auto* s = app.add_subcommand("perplexity", "Perplexity of a model on a text file");
    add(s, g4::cli::add_perplexity(*s));
  }
  {
    auto* s = app.add_subcommand("pull", "Fetch the default model into the local cache");
    add(s, g4::cli::add_pull(*s));
  }
  {
    auto* s = app.add_subcommand("bench", "Prefill and decode throughput (like llama-bench)");
    add(s, g4::cli::add_bench(*s));
  }
  {
    auto* s = app.add_subcommand("serve", "OpenAI- and Ollama-compatible HTTP server");
    add(s, g4::cli::add_serve(*s));
  }
  {
    auto* s = app.add_subcommand("quantize", "Re-encode a GGUF model's weights to another type");
    add(s, g4::cli::add_quantize(*s));
  }
  {
    auto* s = app.add_subcommand("convert", "Write a Hugging Face checkpoint directory as GGUF");
    add(s, g4::cli::add_convert(*s));
  }
  {
    auto* s = app.add_subcommand("eval",
                                 "Quality checks (niah, ruler; guard: guard metrics on labelled "
                                 "data; injection: detector on a generated corpus)");
    add(s, g4::cli::add_eval(*s));
  }
  {
    auto* s = app.add_subcommand(
        "plan", "Memory a run needs (weights, KV, activations) and whether it fits a budget");
    add(s, g4::cli::add_plan(*s));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (auto& [sub, run] : runners) {
    if (sub->parsed()) return run();
  }
  return 1;
}
