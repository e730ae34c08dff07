// Constrained decoding: outputs that match a JSON schema, a regular expression, a list of
// choices or a grammar by construction. The engine is XGrammar (its C++ core, built from the
// pinned sdist by CMake): a grammar is compiled once per request against the tokenizer's
// vocabulary, and a per-sequence matcher masks, before each sample, every token the grammar
// cannot take next. With the mask applied only end-of-turn tokens remain once the grammar is
// complete, so generation stops exactly there.
//
// Thread-safety: ConstraintCompiler::compile may be called from any thread (the server's HTTP
// threads); a CompiledConstraint is immutable and shared; a mask (LogitsProcessor) belongs to
// one sequence.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/sequence.h"

namespace g4 {

class Tokenizer;

struct ConstraintSpec {
  enum class Kind {
    kJsonObject,  // any JSON object (OpenAI json_object, Ollama "json")
    kJsonSchema,  // `text`: a JSON Schema (checked first: schema_check.h)
    kRegex,       // `text`: a regular expression the whole output matches
    kChoice,      // `choices`: the output is exactly one of them
    kGrammar,     // `text`: a GBNF grammar (llama.cpp's dialect, root rule `root`)
    // `text`: an XGrammar structural tag (JSON), built by g4 itself for tool calls
    // (agent/chat_format.cc) with every embedded schema already checked; not for clients.
    kStructuralTag,
  };
  Kind kind = Kind::kJsonObject;
  std::string text;
  std::vector<std::string> choices;
};

const char* constraint_kind_name(ConstraintSpec::Kind k);

struct CompiledConstraint;  // opaque: the compiled grammar

class ConstraintCompiler {
 public:
  // vocab: the model's logit count (>= the tokenizer's size; rows beyond it are never allowed).
  ConstraintCompiler(const Tokenizer& tok, int vocab);
  ~ConstraintCompiler();
  // Checks and compiles; the error names what is wrong (an unsupported schema keyword, a bad
  // regex, a grammar syntax error, a limit exceeded).
  Result<std::shared_ptr<const CompiledConstraint>> compile(const ConstraintSpec& spec);

 private:
  struct Impl;
  void init();  // the vocabulary's tokenizer info (~0.2 s for 262k tokens), on first use
  const Tokenizer& tok_;
  int vocab_;
  std::once_flag once_;
  std::unique_ptr<Impl> impl_;
};

// A fresh per-sequence mask for a compiled constraint.
std::unique_ptr<LogitsProcessor> make_constraint_mask(std::shared_ptr<const CompiledConstraint> c,
                                                      int vocab);

}  // namespace g4
