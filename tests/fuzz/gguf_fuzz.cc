// libFuzzer target: arbitrary bytes through the GGUF parser, the Gemma 3/4 config readers, the
// tokenizer loader and weight binding. Any crash, leak or UB report is a bug.
#include <cstddef>
#include <cstdint>

#include "io/gguf.h"
#include "model/config.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = g4::GgufFile::parse(data, size);
  if (!f.ok()) return 0;
  for (const auto& [k, v] : f.value()->metadata()) (void)v.to_string();
  auto tok = g4::Tokenizer::from_gguf(*f.value());
  if (tok.ok()) {
    auto ids = tok.value().encode("a b <start_of_turn>\xE2\x96", true, true);
    (void)tok.value().decode(ids);
  }
  auto cfg = g4::config_from_gguf(*f.value());
  if (cfg.ok() && int64_t(cfg.value().n_layers) * cfg.value().model_dim < (1 << 20)) {
    if (cfg.value().arch == "gemma4")
      (void)g4::bind_gemma4(*f.value(), cfg.value());
    else
      (void)g4::bind_gemma3(*f.value(), cfg.value());
  }
  return 0;
}
