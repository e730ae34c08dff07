// libFuzzer target: arbitrary bytes as a Hugging Face tokenizer.json (Gemma 4 BPE loader and
// encoder/decoder) and as Gemma 4 chat messages (renderer). Any crash, leak or UB report is a
// bug; errors must come back as Status. Seeds: tests/fuzz/corpus_tokenizer_json.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tokenizer/chat_gemma4.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto tok = g4::Tokenizer::from_hf_json(text);
  if (tok.ok()) {
    const g4::Tokenizer& t = tok.value();
    for (std::string_view s :
         {std::string_view("a b\n\n<|turn>x\xE2\x96 \xFF"), text.substr(0, 256)}) {
      auto ids = t.encode(s, true, true);
      (void)t.decode(ids, true);
      ids = t.encode(s, false, false);
      for (int32_t id : ids) (void)t.piece(id);
    }
  }
  const auto j = nlohmann::ordered_json::parse(text, nullptr, false);
  if (!j.is_discarded()) {
    (void)g4::render_gemma4(j, nullptr, {});
    if (j.is_object() && j.contains("messages"))
      (void)g4::render_gemma4(j["messages"], j.value("tools", nlohmann::ordered_json()),
                              {.add_generation_prompt = true, .enable_thinking = true});
  }
  return 0;
}
