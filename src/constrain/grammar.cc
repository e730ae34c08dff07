#include "constrain/grammar.h"

#include <xgrammar/xgrammar.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "constrain/schema_check.h"
#include "tokenizer/tokenizer.h"

namespace g4 {

struct CompiledConstraint {
  xgrammar::CompiledGrammar grammar;
};

struct ConstraintCompiler::Impl {
  std::unique_ptr<xgrammar::TokenizerInfo> info;
  std::unique_ptr<xgrammar::GrammarCompiler> compiler;
};

const char* constraint_kind_name(ConstraintSpec::Kind k) {
  switch (k) {
    case ConstraintSpec::Kind::kJsonObject:
      return "json_object";
    case ConstraintSpec::Kind::kJsonSchema:
      return "json_schema";
    case ConstraintSpec::Kind::kRegex:
      return "regex";
    case ConstraintSpec::Kind::kChoice:
      return "choice";
    case ConstraintSpec::Kind::kGrammar:
      return "grammar";
    case ConstraintSpec::Kind::kStructuralTag:
      return "tool-call format";
  }
  return "?";
}

ConstraintCompiler::ConstraintCompiler(const Tokenizer& tok, int vocab)
    : tok_(tok), vocab_(vocab) {}

ConstraintCompiler::~ConstraintCompiler() = default;

void ConstraintCompiler::init() {
  // Each token as the bytes g4 streams for it (byte tokens their byte, "▁" a space); control
  // tokens stream nothing, which XGrammar treats as special: never allowed inside a grammar.
  // End-of-turn tokens are the stop tokens, allowed only where the grammar is complete.
  std::vector<std::string> vocab(size_t(tok_.size()));
  for (int i = 0; i < tok_.size(); ++i) vocab[size_t(i)] = tok_.piece(i);
  impl_ = std::make_unique<Impl>();
  impl_->info = std::make_unique<xgrammar::TokenizerInfo>(vocab, xgrammar::VocabType::RAW, vocab_,
                                                          tok_.end_of_generation(), false);
  // One compile thread: requests compile on their own HTTP thread already.
  impl_->compiler =
      std::make_unique<xgrammar::GrammarCompiler>(*impl_->info, 1, true, int64_t(256) << 20);
}

namespace {

// A GBNF string literal for `s` (quotes, backslashes and control bytes escaped).
std::string gbnf_literal(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += char(c);
    } else if (c == '\n') {
      o += "\\n";
    } else if (c == '\r') {
      o += "\\r";
    } else if (c == '\t') {
      o += "\\t";
    } else if (c < 0x20) {
      static const char* hex = "0123456789abcdef";
      o += "\\x";
      o += hex[c >> 4];
      o += hex[c & 15];
    } else {
      o += char(c);
    }
  }
  return o + "\"";
}

}  // namespace

Result<std::shared_ptr<const CompiledConstraint>> ConstraintCompiler::compile(
    const ConstraintSpec& spec) {
  // Checks first: they bound what XGrammar will expand.
  std::string text = spec.text;
  switch (spec.kind) {
    case ConstraintSpec::Kind::kJsonSchema: {
      auto prepared = prepare_json_schema(text);
      if (!prepared.ok()) return prepared.status();
      text = prepared.value();
      break;
    }
    case ConstraintSpec::Kind::kRegex:
      if (text.empty()) return Status::error("the regex is empty");
      if (Status s = check_regex(text); !s.ok()) return s;
      break;
    case ConstraintSpec::Kind::kGrammar:
      if (text.empty()) return Status::error("the grammar is empty");
      if (Status s = check_grammar_text(text); !s.ok()) return s;
      break;
    case ConstraintSpec::Kind::kChoice: {
      if (spec.choices.empty()) return Status::error("the choice list is empty");
      if (spec.choices.size() > 4096) return Status::error("more than 4096 choices");
      size_t bytes = 0;
      text = "root ::= ";
      for (size_t i = 0; i < spec.choices.size(); ++i) {
        if (spec.choices[i].empty())
          return Status::error("choice " + std::to_string(i) + " is empty");
        bytes += spec.choices[i].size();
        text += (i ? " | " : "") + gbnf_literal(spec.choices[i]);
      }
      if (bytes > 65536) return Status::error("the choices exceed 65536 bytes");
      break;
    }
    case ConstraintSpec::Kind::kJsonObject:
    case ConstraintSpec::Kind::kStructuralTag:
      break;
  }
  std::call_once(once_, [this] { init(); });
  try {
    auto& c = *impl_->compiler;
    std::optional<xgrammar::CompiledGrammar> g;
    switch (spec.kind) {
      case ConstraintSpec::Kind::kJsonObject:
        // Any object, compact separators: no free whitespace, so no endless blank runs.
        g = c.CompileJSONSchema(R"({"type": "object"})", false);
        break;
      case ConstraintSpec::Kind::kJsonSchema:
        // any_whitespace = false: JSON with fixed separators, nothing to loop on; strict: no
        // properties or items beyond what the schema lists.
        g = c.CompileJSONSchema(text, false, std::nullopt, std::nullopt, true);
        break;
      case ConstraintSpec::Kind::kRegex:
        g = c.CompileRegex(text);
        break;
      case ConstraintSpec::Kind::kChoice:
      case ConstraintSpec::Kind::kGrammar:
        g = c.CompileGrammar(text, "root");
        break;
      case ConstraintSpec::Kind::kStructuralTag:
        g = c.CompileStructuralTag(text);
        break;
    }
    return std::shared_ptr<const CompiledConstraint>(new CompiledConstraint{std::move(*g)});
  } catch (const std::exception& e) {
    // XGrammar's messages start with "[time] file.cc:line: "; keep what follows.
    std::string m = e.what();
    if (const size_t at = m.find(".cc:"); m.rfind("[", 0) == 0 && at != std::string::npos) {
      const size_t colon = m.find(": ", at);
      if (colon != std::string::npos) m = m.substr(colon + 2);
    }
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    if (m.size() > 400) m = m.substr(0, 400) + "...";
    return Status::error(std::string("invalid ") + constraint_kind_name(spec.kind) + ": " + m);
  }
}

namespace {

class ConstraintMask final : public LogitsProcessor {
 public:
  ConstraintMask(std::shared_ptr<const CompiledConstraint> c, int vocab)
      : c_(std::move(c)), m_(c_->grammar), vocab_(vocab) {
    bits_.resize(size_t(xgrammar::GetBitmaskSize(vocab)));
    shape_[0] = int64_t(bits_.size());
    dl_.data = bits_.data();
    dl_.device = DLDevice{kDLCPU, 0};
    dl_.ndim = 1;
    dl_.dtype = xgrammar::GetBitmaskDLType();
    dl_.shape = shape_;
    dl_.strides = nullptr;
    dl_.byte_offset = 0;
  }

  void apply(float* logits, int vocab) override {
    if (m_.IsTerminated()) return;
    m_.FillNextTokenBitmask(&dl_);
    const int n = std::min(vocab, vocab_);
    for (int w = 0; w * 32 < n; ++w) {
      const uint32_t bits = uint32_t(bits_[size_t(w)]);
      if (bits == 0xFFFFFFFFu) continue;
      const int end = std::min(n, w * 32 + 32);
      for (int i = w * 32; i < end; ++i)
        if (!((bits >> (i - w * 32)) & 1u)) logits[i] = -INFINITY;
    }
    for (int i = n; i < vocab; ++i) logits[i] = -INFINITY;
  }

  void accept(int32_t token) override {
    if (!m_.IsTerminated()) m_.AcceptToken(token);
  }

 private:
  std::shared_ptr<const CompiledConstraint> c_;
  xgrammar::GrammarMatcher m_;
  int vocab_;
  std::vector<int32_t> bits_;
  int64_t shape_[1] = {0};
  DLTensor dl_{};
};

}  // namespace

std::unique_ptr<LogitsProcessor> make_constraint_mask(std::shared_ptr<const CompiledConstraint> c,
                                                      int vocab) {
  return std::make_unique<ConstraintMask>(std::move(c), vocab);
}

}  // namespace g4
