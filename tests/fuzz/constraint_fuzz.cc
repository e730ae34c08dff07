// libFuzzer target for the constraint path a request reaches: schema checks and rewrite
// (constrain/schema_check), XGrammar's JSON-schema / regex / GBNF compilers, then a few masked
// steps of the matcher. The first input byte picks the kind, the rest is the text. Any outcome
// is fine except a crash, a sanitizer report or a hang.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../unit/toy_vocab.h"
#include "constrain/grammar.h"
#include "tokenizer/tokenizer.h"

namespace {

const g4::Tokenizer& toy() {
  static const g4::Tokenizer t =
      g4::toy_vocab({"<eos>", "{", "}", "\"", ":", ",", "[", "]", " ", "a", "b", "1", "2", "true",
                     "null", "ab", "\"a\"", "\xE2\x96\x81"});
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > 4096) return 0;
  static g4::ConstraintCompiler cc(toy(), toy().size());
  g4::ConstraintSpec spec;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 4) {
    case 0:
      spec.kind = g4::ConstraintSpec::Kind::kJsonSchema;
      break;
    case 1:
      spec.kind = g4::ConstraintSpec::Kind::kRegex;
      break;
    case 2:
      spec.kind = g4::ConstraintSpec::Kind::kGrammar;
      break;
    default:
      spec.kind = g4::ConstraintSpec::Kind::kChoice;
      for (size_t a = 0, b; a <= text.size(); a = b + 1) {
        b = text.find('\n', a);
        if (b == std::string::npos) b = text.size();
        spec.choices.push_back(text.substr(a, b - a));
      }
      break;
  }
  spec.text = text;
  auto c = cc.compile(spec);
  if (!c.ok()) return 0;
  auto mask = g4::make_constraint_mask(c.value(), toy().size());
  std::vector<float> logits(size_t(toy().size()));
  for (int step = 0; step < 8; ++step) {
    std::fill(logits.begin(), logits.end(), 0.f);
    mask->apply(logits.data(), toy().size());
    int pick = -1;
    for (int i = 0; i < toy().size(); ++i)
      if (logits[size_t(i)] == 0.f && (pick < 0 || (i * 7 + step) % 5 == 0)) pick = i;
    if (pick < 0) break;
    mask->accept(pick);
  }
  return 0;
}
