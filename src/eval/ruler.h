// RULER-style long-context suite (issue 14; after Hsieh et al., "RULER: What's the Real Context
// Size of Your Long-Context Language Models?", 2024): synthetic tasks generated locally from a
// seed (RULER's ideas, our own text, no downloads), each prompt filled to a target length in the
// model's own tokens, a greedy answer, and a score = the fraction of expected items found in
// the answer (RULER's string-match-all; every task here has a list of expected items).
//
//   niah_single      one "special magic number" needle in filler text; return it
//   niah_multikey    4 needles with different keys, one asked for (3 distractors)
//   niah_multivalue  4 needles with the same key; all 4 numbers must be returned
//   niah_multiquery  4 needles with different keys; all 4 keys asked at once
//   vt               variable tracking: VAR A = 12345 ... VAR B = VAR A ... (2 chains of 4
//                    hops); name the 5 variables that hold the asked value
//   cwe              common words: a numbered list of made-up words, 10 planted with a higher
//                    frequency than the rest; name the 10 most common
//   fwe              frequent words: made-up words with Zipf (alpha 2) counts; name the 3 most
//                    frequent
//   kv_json          a JSON object of UUID keys to UUID values; return one key's value
//
// Cases are pure functions of (tokenizer, options, task, context, sample) and unit-tested
// without a model (tests/unit/ruler_test.cc); run_ruler drives the engine.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "kernels/sparse_attention.h"

namespace g4 {

class Engine;
class Tokenizer;

enum class RulerTask {
  kNiahSingle,
  kNiahMultiKey,
  kNiahMultiValue,
  kNiahMultiQuery,
  kVariableTracking,
  kCommonWords,
  kFrequentWords,
  kKvJson,
};

const std::vector<RulerTask>& all_ruler_tasks();
const char* ruler_task_name(RulerTask t);
// "all" or a comma-separated list of task names; unknown names are an error that lists them.
Result<std::vector<RulerTask>> parse_ruler_tasks(std::string_view list);

struct RulerOptions {
  std::vector<int64_t> contexts = {1024, 2048, 4096};  // prompt tokens, question included
  std::vector<RulerTask> tasks = all_ruler_tasks();
  int samples = 4;  // cases per task and context
  uint64_t seed = 1;
  bool chat = false;  // the chat template (instruction-tuned models) or a plain completion
};

struct RulerCase {
  RulerTask task = RulerTask::kNiahSingle;
  std::vector<int32_t> ids;           // the whole prompt, <bos> first
  std::vector<std::string> expected;  // every item the answer must contain
  int max_tokens = 32;                // answer budget
  std::vector<std::string> stop;      // stop strings, from the answer's first non-blank character
};

// One case: at most ctx tokens and close to it. Cases of the needle tasks with the same
// (ctx, sample) share their filler text, so a session reuses the prefix before the first needle.
Result<RulerCase> make_ruler_case(const Tokenizer& tok, bool gemma4_chat, const RulerOptions& o,
                                  RulerTask task, int64_t ctx, int sample);

// Fraction of `expected` found in `output`, case-insensitive, each match bounded by a
// non-alphanumeric character (or the end) on both sides, so 1234567 is not found in 12345678.
double ruler_score(const std::vector<std::string>& expected, std::string_view output);

struct RulerSample {
  RulerTask task = RulerTask::kNiahSingle;
  int64_t ctx = 0;
  int sample = 0;
  int64_t prompt_tokens = 0;
  std::vector<std::string> expected;
  std::string output;
  double score = 0;
};

struct RulerResult {
  std::vector<RulerSample> samples;  // contexts x samples x tasks, in the options' order
  double seconds = 0;
};

// Greedy answers; decoding stops early once every expected item has appeared (later text
// cannot change the score).
Result<RulerResult> run_ruler(Engine& e, const RulerOptions& o,
                              const std::function<void(size_t done, size_t total)>& progress = {});
// Every case answered once per sparse routing, sharing its prefill (as run_niah_routed).
Result<std::vector<RulerResult>> run_ruler_routed(
    Engine& e, const RulerOptions& o, const std::vector<SparseAttentionOptions>& routings,
    const std::function<void(size_t done, size_t total)>& progress = {});

struct RulerCell {
  RulerTask task = RulerTask::kNiahSingle;
  int64_t ctx = 0;
  double mean = 0;
  int n = 0;
};
// Mean score per task x context, in the options' order of tasks then contexts.
std::vector<RulerCell> ruler_cells(const RulerOptions& o, const std::vector<RulerSample>& s);

}  // namespace g4
