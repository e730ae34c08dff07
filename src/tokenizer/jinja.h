// A Jinja2 subset for model chat templates (tokenizer_config.json `chat_template`, GGUF
// `tokenizer.chat_template`), rendered the way transformers' apply_chat_template does:
// trim_blocks and lstrip_blocks on, loop controls (break/continue), default Undefined (prints
// nothing, falsy; attribute access on it is an error), raise_exception(msg), tojson.
//
//   auto t = jinja::Template::parse(src);            // syntax errors name line:column
//   Result<std::string> s = t.value().render(ctx);   // ctx: {"messages": [...], ...}
//
// Supported: text, {{ }}, {% %}, {# #} with `-` / `+` whitespace control; literals (strings
// with escapes, ints, floats, true/false/none, lists, tuples, dicts), attribute / subscript /
// slice access, arithmetic (+ - * / // % ** ~), comparisons, and/or/not, in / not in,
// `a if c else b`, tests (`is [not] defined/none/string/number/mapping/...`), filters (trim,
// length, upper, lower, default, join, replace, tojson, items, first, last, string, int, float,
// list, dictsort, map, select/reject(attr), unique, reverse, sort, abs, round, capitalize, title,
// indent, safe), string and dict methods (startswith, endswith, strip, split, replace, get,
// items, keys, values, ...), if/elif/else, for (tuple targets, `if` filter, loop.*, else,
// break/continue), set (names, tuples, `ns.attr`, block set), namespace(), range(), macro with
// defaults and keyword arguments.
//
// Values are Python-like: dicts keep insertion order, str() of True/None/floats/lists follows
// Python (True, None, 1.0, ['a']). Strings are UTF-8; length, slicing and indexing count code
// points; upper/lower/title change ASCII letters only.
//
// Every error (syntax, unknown filter or test, type error, raise_exception, a limit) is a
// returned Status; rendering never aborts, never throws out of this API, and is bounded by
// Limits (nesting depth, output size, steps). Templates are immutable after parse and may be
// rendered from several threads at once.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace g4::jinja {

using Json = nlohmann::ordered_json;

struct Limits {
  size_t max_source = 1 << 20;    // template bytes
  size_t max_output = 8 << 20;    // rendered bytes, and the size of any one string value
  int max_depth = 200;            // nesting of expressions, blocks and macro calls
  int64_t max_steps = 2'000'000;  // loop iterations + macro calls + output pieces
};

struct Program;  // parsed template (jinja.cc)

class Template {
 public:
  static Result<Template> parse(std::string_view source, const Limits& limits = {});
  // `context` must be an object; its keys are the template's variables.
  Result<std::string> render(const Json& context) const;
  // Whether the template mentions the variable `name` anywhere (e.g. "guideline").
  bool uses_variable(std::string_view name) const;

 private:
  std::shared_ptr<const Program> prog_;
  Limits limits_;
};

// parse + render in one call.
Result<std::string> render(std::string_view source, const Json& context, const Limits& limits = {});

}  // namespace g4::jinja
