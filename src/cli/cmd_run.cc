// g4 run: one-shot answer (prompt given) or an interactive chat; streams to stdout,
// statistics to stderr.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>

#include "agent/chat_format.h"
#include "cli/commands.h"
#include "constrain/grammar.h"
#include "g4/engine.h"
#include "io/gguf.h"

namespace g4::cli {

namespace {

std::atomic<bool> g_interrupted{false};
void on_sigint(int) {
  g_interrupted.store(true);
}

struct RunArgs {
  std::string model;
  std::string prompt;
  std::string system;
  bool raw = false;
  bool chat = false;
  bool think = false;  // Gemma 4: enable_thinking in the chat template
  int thinking_budget = -1;
  bool verbose = false;
  bool exact = false;
  SparseAttentionOptions sparse;
  std::string kv_type = "f16";
  std::string dtype = "auto";  // HF checkpoint directories only
  float temp = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int64_t seed = -1;
  int max_tokens = 256;
  int64_t ctx = 4096;
  int threads = 0;
  std::vector<std::string> stop;
  // Constrained output (constrain/grammar.h): at most one of these.
  std::string json_schema_file, grammar_file, regex;
  std::vector<std::string> choices;
  bool json = false;
};

// The constraint the flags ask for, compiled for this engine; nullptr when none.
Result<std::shared_ptr<const CompiledConstraint>> constraint_from_flags(Engine& e,
                                                                        const RunArgs& a) {
  const int n = int(!a.json_schema_file.empty()) + int(!a.grammar_file.empty()) +
                int(!a.regex.empty()) + int(!a.choices.empty()) + int(a.json);
  if (n == 0) return std::shared_ptr<const CompiledConstraint>();
  if (n > 1)
    return Status::error("give one of --json, --json-schema, --grammar, --regex, --choice");
  ConstraintSpec spec;
  auto slurp = [](const std::string& path, std::string* out) -> Status {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status::error("cannot read " + path);
    out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return Status();
  };
  if (a.json) {
    spec.kind = ConstraintSpec::Kind::kJsonObject;
  } else if (!a.json_schema_file.empty()) {
    spec.kind = ConstraintSpec::Kind::kJsonSchema;
    if (Status s = slurp(a.json_schema_file, &spec.text); !s.ok()) return s;
  } else if (!a.grammar_file.empty()) {
    spec.kind = ConstraintSpec::Kind::kGrammar;
    if (Status s = slurp(a.grammar_file, &spec.text); !s.ok()) return s;
  } else if (!a.regex.empty()) {
    spec.kind = ConstraintSpec::Kind::kRegex;
    spec.text = a.regex;
  } else {
    spec.kind = ConstraintSpec::Kind::kChoice;
    spec.choices = a.choices;
  }
  return e.constraints().compile(spec);
}

void print_stats(const GenerateResult& r, uint64_t seed) {
  const double pp = r.prefill_seconds > 0 ? r.n_prompt_tokens / r.prefill_seconds : 0;
  const double n_dec = r.tokens.size() > 1 ? double(r.tokens.size() - 1) : 0;
  const double tg = r.decode_seconds > 0 && n_dec > 0 ? n_dec / r.decode_seconds : 0;
  std::fprintf(stderr,
               "\n[prompt: %d tokens (%d cached) at %.1f tok/s | time to first token: %.0f ms | "
               "generated: %zu tokens at %.1f tok/s | finish: %s | seed: %llu]\n",
               r.n_prompt_tokens, r.n_cached_tokens, pp, r.ttft_seconds * 1000, r.tokens.size(), tg,
               r.finish_reason.c_str(), (unsigned long long)seed);
}

int run(RunArgs& a) {
  if (!resolve_model(a.model)) return 1;
  EngineOptions eo;
  eo.model_path = a.model;
  eo.n_threads = a.threads;
  eo.n_ctx = a.ctx;
  eo.exact = a.exact;
  eo.sparse = a.sparse;
  eo.kv_type = a.kv_type;
  eo.hf_dtype = a.dtype;
  auto eng = Engine::load(eo);
  if (!eng.ok()) {
    std::fprintf(stderr, "g4: %s\n", eng.error().c_str());
    return 1;
  }
  Engine& e = *eng.value();
  if (a.verbose) std::fprintf(stderr, "%s\n", e.model().config().summary().c_str());

  GenerateOptions go;
  go.sampling.temperature = a.temp;
  go.sampling.top_k = a.top_k;
  go.sampling.top_p = a.top_p;
  go.sampling.min_p = a.min_p;
  go.sampling.repetition_penalty = a.repeat_penalty;
  go.sampling.presence_penalty = a.presence_penalty;
  go.sampling.frequency_penalty = a.frequency_penalty;
  go.sampling.seed = a.seed >= 0 ? uint64_t(a.seed) : std::random_device{}();
  go.max_tokens = a.max_tokens;
  go.stop = a.stop;
  auto constraint = constraint_from_flags(e, a);
  if (!constraint.ok()) {
    std::fprintf(stderr, "g4: %s\n", constraint.error().c_str());
    return 2;
  }
  go.constraint = constraint.value();
  if (Status s = go.sampling.validate(); !s.ok()) {
    std::fprintf(stderr, "g4: %s\n", s.message().c_str());
    return 2;
  }

  const bool chat_mode = !a.raw && (e.instruction_tuned() || a.chat);
  auto arch = e.file().get_string("general.architecture");
  const ChatFormat chat_format =
      chat_format_for_arch(arch.ok() && arch.value() ? *arch.value() : std::string());
  if (!a.raw && !chat_mode) {
    std::fprintf(stderr,
                 "note: '%s' is a base model (no chat template): completing your text as plain "
                 "text. Use --chat to force the chat template.\n",
                 e.model().config().name.c_str());
  }
  if (a.think && chat_format != ChatFormat::kGemma4) {
    std::fprintf(stderr, "g4: --think: this model (Gemma 3) has no thinking mode\n");
    return 2;
  }
  // Gemma 4 chat: the thought channel is read apart from the answer (to stderr, dimmed on a
  // terminal), a constraint applies after it, and --thinking-budget caps it; the same rules
  // as the server's, so both give the same answer for the same seed.
  const bool gemma4_chat = chat_mode && chat_format == ChatFormat::kGemma4;
  if (gemma4_chat) {
    go.show_control = true;
    if (a.think) {
      go.thought_open = e.tokenizer().find("<|channel>");
      go.thought_close = e.tokenizer().find("<channel|>");
      go.thinking_budget = a.thinking_budget;
    }
  }
  std::signal(SIGINT, on_sigint);
  Session session(e);
  std::unique_ptr<OutputParser> parser;
  std::string answer;  // this turn's answer without its thoughts
  const bool dim = isatty(STDERR_FILENO);
  auto show = [&](const OutputDelta& d) {
    if (!d.reasoning.empty()) {
      std::fprintf(stderr, "%s%s%s", dim ? "\x1b[2m" : "", d.reasoning.c_str(),
                   dim ? "\x1b[0m" : "");
      std::fflush(stderr);
    }
    answer += d.content;
    std::fwrite(d.content.data(), 1, d.content.size(), stdout);
    std::fflush(stdout);
  };
  auto stream = [&](std::string_view piece) {
    if (parser) {
      show(parser->push(piece));
    } else {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    return !g_interrupted.load();
  };
  std::vector<ChatMessage> msgs;
  if (!a.system.empty()) msgs.push_back({"system", a.system});

  auto turn = [&](const std::string& text) -> int {
    std::vector<int32_t> ids;
    if (chat_mode) {
      msgs.push_back({"user", text});
      auto r = encode_chat(chat_format, e.tokenizer(), msgs, true, a.think);
      if (!r.ok()) {
        std::fprintf(stderr, "g4: %s\n", r.error().c_str());
        msgs.pop_back();
        return 2;
      }
      ids = std::move(r).value();
    } else {
      ids = e.tokenizer().encode(text, true, false);
      if (!a.prompt.empty()) std::fwrite(text.data(), 1, text.size(), stdout);
    }
    g_interrupted.store(false);
    answer.clear();
    parser = gemma4_chat ? make_output_parser(chat_format, AgentOptions{}, "call_") : nullptr;
    auto r = session.generate(ids, go, stream);
    if (parser) show(parser->finish());
    if (!r.ok()) {
      std::fprintf(stderr, "\ng4: %s\n", r.error().c_str());
      if (chat_mode) msgs.pop_back();
      return 1;
    }
    if (chat_mode) msgs.push_back({"assistant", parser ? answer : r.value().text});
    std::fputc('\n', stdout);
    print_stats(r.value(), go.sampling.seed);
    return 0;
  };

  if (!a.prompt.empty()) return turn(a.prompt);

  const bool tty = isatty(STDIN_FILENO);
  if (tty) {
    std::fprintf(stderr, "g4 %s with %s. Type a message; empty line or Ctrl-D quits.\n",
                 chat_mode ? "chat" : "completion", e.model().config().name.c_str());
  }
  std::string line;
  for (;;) {
    if (tty) std::fprintf(stderr, "> ");
    if (!std::getline(std::cin, line) || (tty && line.empty())) break;
    if (line.empty()) continue;
    if (!chat_mode) session.reset();
    if (int rc = turn(line); rc != 0 && !tty) return rc;
  }
  return 0;
}

}  // namespace

Runner add_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  app.add_option("prompt", a->prompt, "Prompt (omit for an interactive chat)");
  app.add_option("-m,--model", a->model, "GGUF model (default: the model fetched by `g4 pull`)");
  app.add_option("--system", a->system, "System prompt (chat mode)");
  app.add_flag("--raw", a->raw, "Complete the prompt as plain text (no chat template)");
  app.add_flag("--chat", a->chat, "Use the chat template even for a base model");
  app.add_flag("--think", a->think,
               "Gemma 4: let the model think first (enable_thinking; thoughts go to stderr)");
  app.add_option("--thinking-budget", a->thinking_budget,
                 "Gemma 4 with --think: most tokens of thought before the answer")
      ->check(CLI::Range(0, 1 << 24));
  app.add_option("--temp", a->temp, "Temperature (0 = greedy)")->capture_default_str();
  app.add_option("--top-k", a->top_k, "Top-k (0 = off)")->capture_default_str();
  app.add_option("--top-p", a->top_p, "Top-p (1 = off)")->capture_default_str();
  app.add_option("--min-p", a->min_p, "Min-p (0 = off)")->capture_default_str();
  app.add_option("--repeat-penalty", a->repeat_penalty, "Repetition penalty (1 = off)")
      ->capture_default_str();
  app.add_option("--presence-penalty", a->presence_penalty, "Presence penalty")
      ->capture_default_str();
  app.add_option("--frequency-penalty", a->frequency_penalty, "Frequency penalty")
      ->capture_default_str();
  app.add_option("--seed", a->seed, "Random seed (default: random, printed at the end)");
  app.add_option("-n,--max-tokens", a->max_tokens, "Maximum tokens to generate")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--ctx", a->ctx, "Context size in tokens")
      ->capture_default_str()
      ->check(CLI::Range(16, 1 << 24));
  app.add_option("-t,--threads", a->threads, "Threads (0 = all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  app.add_flag("--json", a->json, "Constrain the answer to a JSON object");
  app.add_option("--json-schema", a->json_schema_file,
                 "Constrain the answer to JSON valid against the JSON Schema in this file");
  app.add_option("--grammar", a->grammar_file,
                 "Constrain the answer to the GBNF grammar in this file (root rule: root)");
  app.add_option("--regex", a->regex, "Constrain the answer to match this regular expression");
  app.add_option("--choice", a->choices, "Constrain the answer to one of these (repeatable)")
      ->allow_extra_args(false);
  app.add_option("--stop", a->stop, "Stop string (repeatable: one value per --stop)")
      ->allow_extra_args(false);
  app.add_flag("-v,--verbose", a->verbose, "Print model details");
  add_kv_options(app, &a->kv_type, &a->sparse);
  app.add_flag("--exact", a->exact, "f32 activations in every matmul (slower, no rounding noise)");
  app.add_option("--dtype", a->dtype, "HF checkpoint directory: matrix type on load")
      ->check(
          CLI::IsMember({"auto", "f32", "f16", "bf16", "q8_0", "q4_0", "q5_0", "q4_k", "q6_k"}));
  return [a] { return run(*a); };
}

}  // namespace g4::cli
