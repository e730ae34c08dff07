// Prompt-injection screening of untrusted text (tool results, retrieved pages) before it
// enters a context. Heuristics only, no model:
//   override_phrase  "ignore (all) previous instructions", "new instructions:", ... (a fixed
//                    list) and rules: a verb of discarding (ignore, disregard, forget, override,
//                    bypass, stop following, do not follow) with a word for instructions (rules,
//                    directives, prompt, ...) and one pointing at those given (previous, above,
//                    your, system, ...) in one clause; "you are now X" unless X is a state
//                    ("viewing", "logged in"); revealing the system prompt; sending private data
//                    "to" an address. Matched on a copy that is lower-cased, whitespace-collapsed,
//                    with hidden characters removed and Cyrillic/Greek look-alikes and fullwidth
//                    letters folded; again with leetspeak digits as letters; and on words spelled
//                    out letter by letter ("i g n o r e   a l l ...").
//   special_token    chat-control strings of Gemma and other families: <start_of_turn>,
//                    <end_of_turn>, <bos>, <|turn>, <|tool_call>, <|im_start|>, [INST], ...
//   role_markup      a line (also after an escaped "\n") that opens with "system:",
//                    "assistant:", "### system", ... followed by a sentence of 3+ words on that
//                    line or the next ("system: ubuntu-22.04" in a config file is not a turn)
//   tag_character    Unicode tag characters U+E0000-U+E007F (invisible ASCII smuggling)
//   bidi_control     U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C
//   invisible        U+200B, U+2060, U+FEFF, U+180E, U+00AD, U+2061-U+2064 (U+200D is left
//                    alone: emoji use it)
//   mixed_script     a Cyrillic/Greek look-alike letter inside a Latin word ("іgnоrе")
//   invalid_utf8     bytes that are not UTF-8
//   exfiltration_link a remote markdown image "![..](URL)" or HTML <img src=URL> whose URL
//                    carries data: a query string, a placeholder ({ } $ < > %7B) or a path
//                    segment over 48 bytes (clients fetch images without a click; plain badges
//                    and local images pass)
// Actions: kFlag reports only; kStrip removes the hidden characters, the special-token strings
// and role markers (invalid bytes become U+FFFD); kDatamark strips and then replaces every
// whitespace run with U+02C6 "ˆ" (Microsoft's "spotlighting" datamarking), so a prompt can tell
// the model that ˆ-joined text is data. Override phrases are reported, never rewritten.
// Special-token strings must also be tokenized with special parsing off (Tokenizer::encode(...,
// parse_special = false)); stripping them is defence in depth for templates and other models.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace g4 {

enum class InjectionAction { kFlag, kStrip, kDatamark };

struct InjectionFinding {
  std::string kind;   // see above
  size_t offset = 0;  // byte offset in the input
  size_t length = 0;  // bytes
};

struct InjectionReport {
  bool suspicious = false;  // any finding
  std::vector<InjectionFinding> findings;
  std::string text;  // the input after the action (kFlag: unchanged)
};

InjectionReport screen_untrusted(std::string_view text, InjectionAction action);

}  // namespace g4
