// Internal to src/tokenizer/jinja*.cc: the template's syntax tree and the parser that builds it
// (lexer with transformers' whitespace settings: trim_blocks, lstrip_blocks, `-` / `+`
// control, keep_trailing_newline off; recursive descent with Jinja's operator precedence).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/jinja_value.h"

namespace g4::jinja {
namespace detail {

struct Expr;
using ExprP = std::unique_ptr<Expr>;
struct Expr {
  enum class K : uint8_t {
    kLit,
    kName,
    kList,
    kDict,
    kAttr,
    kIndex,
    kSlice,
    kCall,
    kFilter,
    kTest,
    kUnary,
    kBinary,
    kAnd,
    kOr,
    kNot,
    kCompare,
    kCond,
    kConcat
  };
  K k = K::kLit;
  Value lit;
  std::string name;      // name, attribute, filter, test, operator
  std::vector<ExprP> a;  // operands / arguments (nullptr: omitted slice bound)
  std::vector<std::pair<std::string, ExprP>> kw;
  std::vector<std::string> ops;  // comparison chain operators
  bool negate = false;           // is not
  int line = 0, col = 0;
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;
struct Stmt {
  enum class K : uint8_t { kText, kOut, kIf, kFor, kSet, kSetBlock, kMacro, kBreak, kContinue };
  K k = K::kText;
  std::string text;
  ExprP e;                                  // output / set value / for iterable
  std::vector<std::pair<ExprP, Body>> ifs;  // if/elif branches (cond nullptr: else)
  std::vector<std::string> targets;         // for / set names
  std::string attr;                         // set ns.attr
  ExprP cond;                               // for ... if cond
  Body body, else_body;
  const MacroDef* macro = nullptr;
  int line = 0, col = 0;
};

struct MacroDef {
  std::string name;
  std::vector<std::pair<std::string, ExprP>> params;  // default nullptr: none
  Body body;
};

}  // namespace detail

struct Program {
  detail::Body body;
  std::vector<std::unique_ptr<detail::MacroDef>> macros;
  std::vector<std::string> names;  // every variable name read
};

namespace detail {
// Parses `source` into `prog` (throws JinjaError with line and column).
void parse_program(std::string_view source, Program& prog, int max_depth);
}  // namespace detail

}  // namespace g4::jinja
