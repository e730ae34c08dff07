// Gemma 3 chat template (ref: gemma-architecture.md §5.1):
//   <bos><start_of_turn>user\n{system}\n\n{user}<end_of_turn>\n<start_of_turn>model\n...
// Template markers become their special ids; message text is tokenized with
// parse_special = false so user text can never forge a turn marker.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "tokenizer/tokenizer.h"

namespace g4 {

struct ChatMessage {
  std::string role;  // system | user | assistant (or model)
  std::string content;
};

// The rendered prompt as text (specials written literally), e.g. for --verbose and tests.
Result<std::string> render_gemma3(const std::vector<ChatMessage>& msgs, bool add_generation_prompt);
// The same prompt as ids, with <bos> first.
Result<std::vector<int32_t>> encode_gemma3_chat(const Tokenizer& tok,
                                                const std::vector<ChatMessage>& msgs,
                                                bool add_generation_prompt);

// Model family -> chat format. Gemma 4 (general.architecture "gemma4") uses the template of
// chat_gemma4.h; everything else the Gemma 3 one above. Implemented in chat_gemma4.cc.
enum class ChatFormat { kGemma3, kGemma4 };
ChatFormat chat_format_for_arch(std::string_view architecture);
// Plain system/user/assistant messages in the given format, as ids (<bos> first) or text.
// enable_thinking applies to Gemma 4 only (tools: use encode_gemma4_chat directly).
Result<std::vector<int32_t>> encode_chat(ChatFormat fmt, const Tokenizer& tok,
                                         const std::vector<ChatMessage>& msgs,
                                         bool add_generation_prompt, bool enable_thinking = false);
Result<std::string> render_chat(ChatFormat fmt, const std::vector<ChatMessage>& msgs,
                                bool add_generation_prompt, bool enable_thinking = false);

}  // namespace g4
