// Internal to src/tokenizer/jinja*.cc: the renderer's values (Python-like: ordered dicts,
// Python str()/repr() and json.dumps formatting, comparisons) and the UTF-8 / Python string
// helpers the filters share. Errors are thrown as JinjaError, which jinja.cc turns into Status
// at the API boundary.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/jinja.h"

namespace g4::jinja::detail {

struct JinjaError {
  std::string msg;
};
[[noreturn]] void fail(const std::string& msg);

struct Value;
struct MacroDef;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion-ordered

struct Value {
  enum class T : uint8_t {
    kUndef,
    kNone,
    kBool,
    kInt,
    kFloat,
    kStr,
    kList,
    kDict,
    kNs,
    kMacro,
    kFn
  };
  T t = T::kUndef;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // kStr; kFn: builtin name; kUndef: the missing name (messages)
  std::shared_ptr<List> l;
  std::shared_ptr<Dict> d;  // kDict, kNs
  const MacroDef* m = nullptr;
  bool tuple = false;  // kList printed as a Python tuple
  uint16_t depth = 0;  // container nesting (bounded: destruction and printing recurse)

  static Value none() { return mk(T::kNone); }
  static Value boolean(bool v) {
    Value x = mk(T::kBool);
    x.b = v;
    return x;
  }
  static Value integer(int64_t v) {
    Value x = mk(T::kInt);
    x.i = v;
    return x;
  }
  static Value real(double v) {
    Value x = mk(T::kFloat);
    x.f = v;
    return x;
  }
  static Value str(std::string v) {
    Value x = mk(T::kStr);
    x.s = std::move(v);
    return x;
  }
  static constexpr int kMaxNest = 300;
  static uint16_t nest(int child) {
    if (child + 1 > kMaxNest) fail_nest();
    return uint16_t(child + 1);
  }
  [[noreturn]] static void fail_nest();
  static Value list(List v = {}) {
    Value x = mk(T::kList);
    int dmax = 0;
    for (const Value& e : v) dmax = std::max<int>(dmax, e.depth);
    x.depth = nest(dmax);
    x.l = std::make_shared<List>(std::move(v));
    return x;
  }
  static Value dict(Dict v = {}) {
    Value x = mk(T::kDict);
    int dmax = 0;
    for (const auto& e : v) dmax = std::max<int>(dmax, e.second.depth);
    x.depth = nest(dmax);
    x.d = std::make_shared<Dict>(std::move(v));
    return x;
  }
  static Value undef(std::string name) {
    Value x;
    x.s = std::move(name);
    return x;
  }
  static Value mk(T t) {
    Value x;
    x.t = t;
    return x;
  }
  bool is(T k) const { return t == k; }
  bool numeric() const { return t == T::kInt || t == T::kFloat || t == T::kBool; }
  double num() const { return t == T::kFloat ? f : t == T::kBool ? double(b) : double(i); }
  const Value* get(std::string_view k) const {
    if (!d) return nullptr;
    for (const auto& [key, v] : *d)
      if (key == k) return &v;
    return nullptr;
  }
  void put(const std::string& k, Value v) {
    depth = std::max(depth, nest(v.depth));
    for (auto& [key, old] : *d)
      if (key == k) {
        old = std::move(v);
        return;
      }
    d->emplace_back(k, std::move(v));
  }
};
using T = Value::T;

const char* type_name(const Value& v);
Value from_json(const Json& j, int depth = 0);
bool holds_namespace(const Value& v);   // storing one in a namespace could make a cycle
uint64_t approx_bytes(const Value& v);  // rough bytes held, for the allocation budget

// UTF-8 and Python string semantics (code points; Python's whitespace set).
std::vector<size_t> cp_offsets(std::string_view s);  // code point starts + s.size()
size_t cp_count(std::string_view s);
uint32_t decode_at(std::string_view s, size_t i, size_t* len);  // lenient
void append_utf8(std::string& out, uint32_t cp);
bool py_space(uint32_t c);
std::string py_strip(std::string_view s, bool left, bool right, const std::string* chars);
std::string ascii_upper(std::string s);
std::string ascii_lower(std::string s);

// Python formatting: repr(float), repr(str), str(value), repr(value), json.dumps.
std::string py_float(double v);
std::string py_repr_str(const std::string& s);
std::string to_str(const Value& v, int depth = 0);
std::string repr(const Value& v, int depth = 0);
void json_str(std::string& o, const std::string& s);
void to_json(std::string& o, const Value& v, int indent, int level, size_t limit);

bool truthy(const Value& v);
bool equal(const Value& a, const Value& b, int depth = 0);
int compare(const Value& a, const Value& b);  // numbers with numbers, strings with strings

}  // namespace g4::jinja::detail
