// Needle in a haystack (issue 14's retrieval check): a filler text generated locally from a
// seed (no downloads), one "special magic number" sentence hidden at a chosen depth, and a
// question whose greedy answer must contain the number. Contexts are measured in the model's
// own tokens; one haystack per (context, trial) is shared by every depth, so a session reuses
// the prefix before the needle from one depth to the next.
//
// make_niah_case is pure (a tokenizer, no model) and unit-tested; run_niah drives the engine.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/sparse_attention.h"

namespace g4 {

class Engine;
class Tokenizer;

struct NiahOptions {
  std::vector<int64_t> contexts = {1024, 2048,
                                   4096};  // prompt tokens, needle and question included
  std::vector<double> depths = {0.0, 0.25, 0.5, 0.75, 1.0};  // where the needle sits, 0..1
  int trials = 1;
  uint64_t seed = 1;
  bool chat = false;  // the chat template (instruction-tuned models) or a plain completion
  int answer_tokens = 12;
};

struct NiahCase {
  std::vector<int32_t> ids;  // the whole prompt, <bos> first
  std::string key;           // the needle's key word
  std::string answer;        // the number the answer must contain
  int64_t needle_token = 0;  // where the needle starts, in tokens
};

// One case: the haystack for (ctx, trial) with the needle at `depth`; at most ctx tokens.
Result<NiahCase> make_niah_case(const Tokenizer& tok, bool gemma4_chat, const NiahOptions& o,
                                int64_t ctx, double depth, int trial);

struct NiahCell {
  int64_t ctx = 0;
  double depth = 0;
  int correct = 0;
  int total = 0;
};

struct NiahSample {
  int64_t ctx = 0;
  double depth = 0;
  int trial = 0;
  int64_t prompt_tokens = 0;
  std::string expected;
  std::string output;
  bool correct = false;
};

struct NiahResult {
  std::vector<NiahCell> cells;  // contexts x depths, in the options' order
  std::vector<NiahSample> samples;
  double seconds = 0;
};

Result<NiahResult> run_niah(Engine& e, const NiahOptions& o,
                            const std::function<void(size_t done, size_t total)>& progress = {});
// Every case answered once per sparse routing (Session::set_routing), one result each in that
// order: the answers share each prompt's prefill, which routing never changes unless it routes
// prompts (so dense vs sparse costs one prefill, not two). The engine must keep summaries
// when a routing is on. progress counts answers.
Result<std::vector<NiahResult>> run_niah_routed(
    Engine& e, const NiahOptions& o, const std::vector<SparseAttentionOptions>& routings,
    const std::function<void(size_t done, size_t total)>& progress = {});

// The generated text, shared with the RULER-style suite (eval/ruler.h). All draw from a
// splitmix64 state, so a seed fixes every word.
uint64_t eval_random(uint64_t& state);
std::string filler_sentence(uint64_t& state);  // one plain sentence, never about numbers
std::string filler_key(uint64_t& state);       // "adjective-noun", a needle's key

}  // namespace g4
