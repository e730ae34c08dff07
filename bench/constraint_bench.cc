// Constrained-decoding costs on a real vocabulary, without the model: schema compile time
// (a realistic nested schema and a 100-property one) and the per-token mask time (matcher
// fill + applying the mask to a [vocab] logits row), p50 / p99 / max, while replaying a valid
// output token by token. Usage:
//   build/release/g4_constraint_bench [MODEL.gguf]      (default: the pulled model)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "constrain/grammar.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

const char* kNested = R"({"type":"object","properties":{
  "order_id":{"type":"string","pattern":"^[A-Z]{3}-[0-9]{6}$"},
  "customer":{"type":"object","properties":{"name":{"type":"string","maxLength":40},
    "email":{"type":"string","format":"email"},
    "address":{"type":"object","properties":{"street":{"type":"string"},"city":{"type":"string"},
      "zip":{"type":"string","pattern":"^[0-9]{5}$"}},"required":["street","city","zip"]}},
    "required":["name","email","address"]},
  "items":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string"},
    "qty":{"type":"integer","minimum":1,"maximum":99},"price":{"type":"number"}},
    "required":["sku","qty","price"]},"minItems":1,"maxItems":20},
  "status":{"enum":["pending","paid","shipped"]},"placed":{"type":"string","format":"date-time"}},
  "required":["order_id","customer","items","status","placed"]})";

const char* kOutput =
    R"({"order_id": "ABC-123456", "customer": {"name": "Ada Lovelace", "email": "ada@example.com", )"
    R"("address": {"street": "12 Analytical Way", "city": "London", "zip": "10001"}}, "items": )"
    R"([{"sku": "engine-1", "qty": 2, "price": 19.5}, {"sku": "card-7", "qty": 10, "price": 0.25}], )"
    R"("status": "paid", "placed": "2026-12-06T10:00:00Z"})";

double pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "";
  if (path.empty()) {
    const char* home = std::getenv("G4_HOME");
    path = std::string(home ? home : std::string(std::getenv("HOME")) + "/.cache/g4") +
           "/models/gemma-3-270m-q4_k_m.gguf";
  }
  auto f = g4::GgufFile::open(path);
  if (!f.ok()) return std::fprintf(stderr, "%s\n", f.error().c_str()), 1;
  auto tk = g4::Tokenizer::from_gguf(*f.value());
  if (!tk.ok()) return std::fprintf(stderr, "%s\n", tk.error().c_str()), 1;
  const g4::Tokenizer& tok = tk.value();
  const int vocab = tok.size();
  g4::ConstraintCompiler cc(tok, vocab);
  double t0 = now();
  auto warm = cc.compile({g4::ConstraintSpec::Kind::kRegex, "[0-9]+", {}});
  const double t_vocab = now() - t0;
  if (!warm.ok()) return std::fprintf(stderr, "%s\n", warm.error().c_str()), 1;
  std::string big = R"({"type":"object","properties":{)";
  for (int i = 0; i < 100; ++i) {
    static const char* types[] = {"string", "integer", "boolean", "number"};
    big += (i ? "," : "") + std::string("\"field_") + std::to_string(i) + "\":{\"type\":\"" +
           types[i % 4] + "\"}";
  }
  big += R"(},"required":["field_0","field_1","field_2"]})";
  std::vector<double> c_nested, c_big;
  for (int r = 0; r < 5; ++r) {
    // A distinct schema each round (its title), so XGrammar's cache does not answer.
    const std::string title = "{\"title\":\"round " + std::to_string(r) + "\",";
    t0 = now();
    auto a = cc.compile(
        {g4::ConstraintSpec::Kind::kJsonSchema, title + std::string(kNested).substr(1), {}});
    c_nested.push_back(now() - t0);
    t0 = now();
    auto b = cc.compile({g4::ConstraintSpec::Kind::kJsonSchema, title + big.substr(1), {}});
    c_big.push_back(now() - t0);
    if (!a.ok() || !b.ok())
      return std::fprintf(stderr, "%s\n", (a.ok() ? b.error() : a.error()).c_str()), 1;
  }
  auto nested = cc.compile({g4::ConstraintSpec::Kind::kJsonSchema, kNested, {}});
  const auto ids = tok.encode(kOutput, false, false);
  std::vector<double> mask;
  std::vector<float> logits(size_t(vocab), 0.f);
  for (int rep = 0; rep < 20; ++rep) {
    auto m = g4::make_constraint_mask(nested.value(), vocab);
    for (int32_t id : ids) {
      std::fill(logits.begin(), logits.end(), 0.f);
      t0 = now();
      m->apply(logits.data(), vocab);
      mask.push_back(now() - t0);
      if (!std::isfinite(logits[size_t(id)]) && rep == 0)
        return std::fprintf(stderr, "the replayed output was masked at '%s'\n",
                            tok.piece(id).c_str()),
               1;
      m->accept(id);
    }
  }
  std::printf("vocabulary: %d tokens, tables built in %.0f ms (once per engine)\n", vocab,
              t_vocab * 1e3);
  std::printf("compile, nested order schema: median %.1f ms\n", pct(c_nested, 0.5) * 1e3);
  std::printf("compile, 100-property schema: median %.1f ms (target < 50 ms)\n",
              pct(c_big, 0.5) * 1e3);
  std::printf(
      "mask per token (fill + apply to %d logits), %zu tokens: p50 %.3f ms, p99 %.3f ms, "
      "max %.3f ms\n",
      vocab, mask.size(), pct(mask, 0.5) * 1e3, pct(mask, 0.99) * 1e3, pct(mask, 1.0) * 1e3);
  return 0;
}
