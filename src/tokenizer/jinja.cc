// Jinja2 subset: lexer (whitespace control as Jinja's lexer does it), recursive-descent parser
// into a small AST, tree-walking evaluator over Python-like values. Internally errors are thrown
// as JinjaError and turned into Status at the API boundary (parse / render), so no exception
// leaves this file. ref: Jinja2 3.1 lexer.py / parser.py / filters.py / tests.py semantics.
#include "tokenizer/jinja.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <utility>
#include <vector>

namespace g4::jinja {
namespace {

struct JinjaError {
  std::string msg;
};

[[noreturn]] void fail(const std::string& msg) {
  throw JinjaError{msg};
}

// ---------------------------------------------------------------- values

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
  static Value list(List v = {}) {
    Value x = mk(T::kList);
    x.l = std::make_shared<List>(std::move(v));
    return x;
  }
  static Value dict(Dict v = {}) {
    Value x = mk(T::kDict);
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
    for (auto& [key, old] : *d)
      if (key == k) {
        old = std::move(v);
        return;
      }
    d->emplace_back(k, std::move(v));
  }
};
using T = Value::T;

const char* type_name(const Value& v) {
  switch (v.t) {
    case T::kUndef:
      return "undefined";
    case T::kNone:
      return "none";
    case T::kBool:
      return "bool";
    case T::kInt:
      return "int";
    case T::kFloat:
      return "float";
    case T::kStr:
      return "str";
    case T::kList:
      return "list";
    case T::kDict:
      return "dict";
    case T::kNs:
      return "namespace";
    case T::kMacro:
      return "macro";
    case T::kFn:
      return "function";
  }
  return "?";
}

Value from_json(const Json& j, int depth = 0) {
  if (depth > 512) fail("context nests too deeply");
  switch (j.type()) {
    case Json::value_t::null:
      return Value::none();
    case Json::value_t::boolean:
      return Value::boolean(j.get<bool>());
    case Json::value_t::number_integer:
      return Value::integer(j.get<int64_t>());
    case Json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      return u > uint64_t(INT64_MAX) ? Value::real(double(u)) : Value::integer(int64_t(u));
    }
    case Json::value_t::number_float:
      return Value::real(j.get<double>());
    case Json::value_t::string:
      return Value::str(j.get<std::string>());
    case Json::value_t::array: {
      List l;
      for (const Json& e : j) l.push_back(from_json(e, depth + 1));
      return Value::list(std::move(l));
    }
    case Json::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it)
        d.emplace_back(it.key(), from_json(it.value(), depth + 1));
      return Value::dict(std::move(d));
    }
    default:
      return Value::none();
  }
}

// ---- UTF-8 and Python string helpers

// Code point boundaries of s (byte offsets, plus s.size() at the end).
std::vector<size_t> cp_offsets(std::string_view s) {
  std::vector<size_t> o;
  for (size_t i = 0; i < s.size(); ++i)
    if ((uint8_t(s[i]) & 0xC0) != 0x80) o.push_back(i);
  o.push_back(s.size());
  return o;
}
size_t cp_count(std::string_view s) {
  return cp_offsets(s).size() - 1;
}

// Decodes the code point at s[i] (lenient: a bad byte is itself).
uint32_t decode_at(std::string_view s, size_t i, size_t* len) {
  const uint8_t c = uint8_t(s[i]);
  int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (i + size_t(n) > s.size()) n = 1;
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < n; ++k) {
    if ((uint8_t(s[i + size_t(k)]) & 0xC0) != 0x80) {
      n = 1;
      cp = c;
      break;
    }
    cp = (cp << 6) | (uint8_t(s[i + size_t(k)]) & 0x3F);
  }
  *len = size_t(n);
  return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// Python's str.isspace() code points.
bool py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// str.strip / lstrip / rstrip: whitespace, or the code points of `chars`.
std::string py_strip(std::string_view s, bool left, bool right, const std::string* chars) {
  std::vector<uint32_t> set;
  if (chars) {
    for (size_t i = 0, n = 0; i < chars->size(); i += n) set.push_back(decode_at(*chars, i, &n));
  }
  auto strip_cp = [&](uint32_t c) {
    return chars ? std::find(set.begin(), set.end(), c) != set.end() : py_space(c);
  };
  size_t b = 0, e = s.size();
  if (left) {
    while (b < e) {
      size_t n = 0;
      if (!strip_cp(decode_at(s, b, &n))) break;
      b += n;
    }
  }
  if (right) {
    while (e > b) {
      size_t st = e - 1;
      while (st > b && (uint8_t(s[st]) & 0xC0) == 0x80) --st;
      size_t n = 0;
      if (!strip_cp(decode_at(s, st, &n)) || st + n != e) break;
      e = st;
    }
  }
  return std::string(s.substr(b, e - b));
}

std::string ascii_upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = char(c - 32);
  return s;
}
std::string ascii_lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = char(c + 32);
  return s;
}

// Python repr(float).
std::string py_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, r.ptr);  // [-]d[.ddd]e(+|-)XX
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t epos = sci.find('e');
  const int exp = std::atoi(sci.c_str() + epos + 1);
  std::string digits = sci.substr(0, epos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  if (exp >= -5 && exp < 16) {  // Python repr: fixed notation for 1e-4 <= |v| < 1e16
    std::string out;
    if (exp < 0) {
      out = "0." + std::string(size_t(-exp - 1), '0') + digits;
    } else if (size_t(exp) + 1 >= digits.size()) {
      out = digits + std::string(size_t(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, size_t(exp) + 1) + "." + digits.substr(size_t(exp) + 1);
    }
    if (exp >= -4) return sign + out;
  }
  std::string m = digits.substr(0, 1);
  if (digits.size() > 1) m += "." + digits.substr(1);
  char e[16];
  std::snprintf(e, sizeof e, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  return sign + m + e;
}

std::string py_repr_str(const std::string& s) {
  const bool dq = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char q = dq ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    const uint8_t u = uint8_t(c);
    if (c == q || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7F) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", u);
      out += b;
    } else {
      out += c;
    }
  }
  return out + q;
}

std::string repr(const Value& v, int depth = 0);

// Python str(value), which is what {{ }} prints.
std::string to_str(const Value& v, int depth = 0) {
  switch (v.t) {
    case T::kUndef:
      return "";
    case T::kNone:
      return "None";
    case T::kBool:
      return v.b ? "True" : "False";
    case T::kInt:
      return std::to_string(v.i);
    case T::kFloat:
      return py_float(v.f);
    case T::kStr:
      return v.s;
    case T::kNs:
      return "<Namespace>";
    case T::kMacro:
      return "<Macro>";
    case T::kFn:
      return "<built-in function " + v.s + ">";
    default:
      return repr(v, depth);
  }
}

std::string repr(const Value& v, int depth) {
  if (depth > 256) fail("value nests too deeply to print");
  if (v.is(T::kStr)) return py_repr_str(v.s);
  if (v.is(T::kList)) {
    std::string o = v.tuple ? "(" : "[";
    for (size_t k = 0; k < v.l->size(); ++k) {
      if (k) o += ", ";
      o += repr((*v.l)[k], depth + 1);
    }
    if (v.tuple) return o + (v.l->size() == 1 ? ",)" : ")");
    return o + "]";
  }
  if (v.is(T::kDict)) {
    std::string o = "{";
    bool first = true;
    for (const auto& [k, x] : *v.d) {
      if (!first) o += ", ";
      first = false;
      o += py_repr_str(k) + ": " + repr(x, depth + 1);
    }
    return o + "}";
  }
  if (v.is(T::kUndef)) return "Undefined";
  return to_str(v, depth);
}

// json.dumps(x, ensure_ascii=False, indent=indent) (transformers' tojson).
void json_str(std::string& o, const std::string& s) {
  o += '"';
  for (char c : s) {
    const uint8_t u = uint8_t(c);
    switch (c) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      case '\r':
        o += "\\r";
        break;
      case '\t':
        o += "\\t";
        break;
      case '\b':
        o += "\\b";
        break;
      case '\f':
        o += "\\f";
        break;
      default:
        if (u < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", u);
          o += b;
        } else {
          o += c;
        }
    }
  }
  o += '"';
}

void to_json(std::string& o, const Value& v, int indent, int level, size_t limit) {
  if (level > 256) fail("value nests too deeply for tojson");
  if (o.size() > limit) fail("tojson output exceeds the output limit");
  auto nl = [&](int lv) {
    if (indent < 0) return;
    o += '\n';
    o.append(size_t(indent) * size_t(lv), ' ');
  };
  switch (v.t) {
    case T::kUndef:
    case T::kNone:
      o += "null";
      return;
    case T::kBool:
      o += v.b ? "true" : "false";
      return;
    case T::kInt:
      o += std::to_string(v.i);
      return;
    case T::kFloat:
      o += std::isnan(v.f)   ? "NaN"
           : std::isinf(v.f) ? (v.f > 0 ? "Infinity" : "-Infinity")
                             : py_float(v.f);
      return;
    case T::kStr:
      json_str(o, v.s);
      return;
    case T::kList: {
      if (v.l->empty()) {
        o += "[]";
        return;
      }
      o += '[';
      for (size_t k = 0; k < v.l->size(); ++k) {
        if (k) o += indent < 0 ? ", " : ",";
        nl(level + 1);
        to_json(o, (*v.l)[k], indent, level + 1, limit);
      }
      nl(level);
      o += ']';
      return;
    }
    case T::kDict:
    case T::kNs: {
      if (v.d->empty()) {
        o += "{}";
        return;
      }
      o += '{';
      bool first = true;
      for (const auto& [k, x] : *v.d) {
        if (!first) o += indent < 0 ? ", " : ",";
        first = false;
        nl(level + 1);
        json_str(o, k);
        o += ": ";
        to_json(o, x, indent, level + 1, limit);
      }
      nl(level);
      o += '}';
      return;
    }
    default:
      fail(std::string("tojson: cannot serialize a ") + type_name(v));
  }
}

bool truthy(const Value& v) {
  switch (v.t) {
    case T::kUndef:
    case T::kNone:
      return false;
    case T::kBool:
      return v.b;
    case T::kInt:
      return v.i != 0;
    case T::kFloat:
      return v.f != 0;
    case T::kStr:
      return !v.s.empty();
    case T::kList:
      return !v.l->empty();
    case T::kDict:
      return !v.d->empty();
    default:
      return true;
  }
}

bool equal(const Value& a, const Value& b, int depth = 0) {
  if (depth > 256) fail("values nest too deeply to compare");
  if (a.numeric() && b.numeric()) {
    if (a.is(T::kFloat) || b.is(T::kFloat)) return a.num() == b.num();
    const int64_t x = a.is(T::kBool) ? a.b : a.i, y = b.is(T::kBool) ? b.b : b.i;
    return x == y;
  }
  if (a.t != b.t) return false;
  switch (a.t) {
    case T::kUndef:
    case T::kNone:
      return true;
    case T::kStr:
      return a.s == b.s;
    case T::kList:
      if (a.l->size() != b.l->size()) return false;
      for (size_t k = 0; k < a.l->size(); ++k)
        if (!equal((*a.l)[k], (*b.l)[k], depth + 1)) return false;
      return true;
    case T::kDict:
      if (a.d->size() != b.d->size()) return false;
      for (const auto& [k, x] : *a.d) {
        const Value* y = b.get(k);
        if (!y || !equal(x, *y, depth + 1)) return false;
      }
      return true;
    case T::kNs:
      return a.d == b.d;
    case T::kMacro:
      return a.m == b.m;
    case T::kFn:
      return a.s == b.s;
    default:
      return false;
  }
}

// <0, 0, >0; numbers with numbers, strings with strings (code point order = UTF-8 byte order).
int compare(const Value& a, const Value& b) {
  if (a.numeric() && b.numeric()) {
    const double x = a.num(), y = b.num();
    if (!a.is(T::kFloat) && !b.is(T::kFloat)) {
      const int64_t p = a.is(T::kBool) ? a.b : a.i, q = b.is(T::kBool) ? b.b : b.i;
      return p < q ? -1 : p > q ? 1 : 0;
    }
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is(T::kStr) && b.is(T::kStr)) return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;
  fail(std::string("cannot order ") + type_name(a) + " and " + type_name(b));
}

// ---------------------------------------------------------------- lexer

enum class Tk : uint8_t {
  kText,
  kVarBegin,
  kVarEnd,
  kBlockBegin,
  kBlockEnd,
  kName,
  kString,
  kInt,
  kFloat,
  kOp,
  kEof
};

struct Token {
  Tk k;
  std::string s;  // text, name, string value, operator
  int64_t i = 0;
  double f = 0;
  int line = 1, col = 1;
};

class Lexer {
 public:
  explicit Lexer(std::string_view src) : src_(src) {}

  std::vector<Token> run() {
    // keep_trailing_newline=False: one trailing newline of the source is dropped.
    if (src_.size() >= 2 && src_.substr(src_.size() - 2) == "\r\n") {
      src_.remove_suffix(2);
    } else if (!src_.empty() && (src_.back() == '\n' || src_.back() == '\r')) {
      src_.remove_suffix(1);
    }
    bool strip_next = false;  // a `-}}` / `-%}` before this text
    while (pos_ < src_.size()) {
      size_t open = find_open(pos_);
      const size_t text_begin = pos_;
      std::string text(src_.substr(pos_, (open == std::string::npos ? src_.size() : open) - pos_));
      if (strip_next) {
        size_t k = 0;
        while (k < text.size() && is_space(text[k])) ++k;
        text.erase(0, k);
      }
      strip_next = false;
      if (open == std::string::npos) {
        emit_text(text, text_begin);
        pos_ = src_.size();
        break;
      }
      const char kind = src_[open + 1];  // '{', '%' or '#'
      const char mod = open + 2 < src_.size() ? src_[open + 2] : 0;
      if (mod == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (mod != '+' && kind != '{') {
        // lstrip_blocks: spaces/tabs between a line start and a block or comment tag.
        const size_t nlp = text.rfind('\n');
        const size_t lp = nlp == std::string::npos ? 0 : nlp + 1;
        const bool line_start = text_begin == 0 || src_[text_begin - 1] == '\n';
        if (nlp != std::string::npos || line_start) {
          bool ws = true;
          for (size_t k = lp; k < text.size(); ++k) ws = ws && (text[k] == ' ' || text[k] == '\t');
          if (ws) text.erase(lp);
        }
      }
      emit_text(text, text_begin);
      pos_ = open + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
      if (kind == '#') {
        const size_t end = src_.find("#}", pos_);
        if (end == std::string::npos) error_at(open, "unterminated comment");
        const bool dash = end > pos_ && src_[end - 1] == '-';
        pos_ = end + 2;
        if (dash) {
          strip_next = true;
        } else {
          trim_newline();
        }
        continue;
      }
      const bool block = kind == '%';
      push(block ? Tk::kBlockBegin : Tk::kVarBegin, "", open);
      keep_newline_ = false;
      strip_next = lex_tag(block, open);
      if (block && !strip_next && !keep_newline_) trim_newline();
      if (block && raw_pending_) lex_raw(&strip_next);
    }
    push(Tk::kEof, "", src_.size());
    return std::move(toks_);
  }

 private:
  static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  }
  size_t find_open(size_t from) const {
    for (size_t p = src_.find('{', from); p != std::string::npos; p = src_.find('{', p + 1))
      if (p + 1 < src_.size() && (src_[p + 1] == '{' || src_[p + 1] == '%' || src_[p + 1] == '#'))
        return p;
    return std::string::npos;
  }
  void trim_newline() {  // trim_blocks
    if (pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    } else if (pos_ + 1 < src_.size() && src_[pos_] == '\r' && src_[pos_ + 1] == '\n') {
      pos_ += 2;
    }
  }
  void emit_text(std::string text, size_t at) {
    if (text.empty()) return;
    // Jinja normalizes template newlines to "\n".
    std::string out;
    for (size_t k = 0; k < text.size(); ++k) {
      if (text[k] == '\r') {
        out += '\n';
        if (k + 1 < text.size() && text[k + 1] == '\n') ++k;
      } else {
        out += text[k];
      }
    }
    push(Tk::kText, std::move(out), at);
  }
  void line_col(size_t at, int* line, int* col) const {
    int l = 1, c = 1;
    for (size_t k = 0; k < at && k < src_.size(); ++k) {
      if (src_[k] == '\n') {
        ++l;
        c = 1;
      } else {
        ++c;
      }
    }
    *line = l;
    *col = c;
  }
  [[noreturn]] void error_at(size_t at, const std::string& msg) const {
    int l = 0, c = 0;
    line_col(at, &l, &c);
    fail("syntax error at line " + std::to_string(l) + ", column " + std::to_string(c) + ": " +
         msg);
  }
  Token& push(Tk k, std::string s, size_t at) {
    Token t{k, std::move(s)};
    // Line/column by counting from the previous token (linear overall).
    while (lc_pos_ < at && lc_pos_ < src_.size()) {
      if (src_[lc_pos_] == '\n') {
        ++lc_line_;
        lc_col_ = 1;
      } else {
        ++lc_col_;
      }
      ++lc_pos_;
    }
    t.line = lc_line_;
    t.col = lc_col_;
    toks_.push_back(std::move(t));
    return toks_.back();
  }

  // Tokens up to the tag's end; returns whether it ended with '-'.
  bool lex_tag(bool block, size_t open) {
    const size_t first = toks_.size();
    int depth = 0;
    while (true) {
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
      if (pos_ >= src_.size()) error_at(open, block ? "unterminated '{%'" : "unterminated '{{'");
      const std::string_view rest = src_.substr(pos_);
      const std::string_view end = block ? "%}" : "}}";
      if (block && rest.substr(0, 1) == "+" && rest.substr(1, 2) == end) {  // no trim_blocks
        push(Tk::kBlockEnd, "", pos_);
        pos_ += 3;
        check_raw(first);
        keep_newline_ = true;
        return false;
      }
      if (rest.substr(0, 1) == "-" && rest.substr(1, 2) == end) {
        push(block ? Tk::kBlockEnd : Tk::kVarEnd, "", pos_);
        pos_ += 3;
        check_raw(first);
        return true;
      }
      if (rest.substr(0, 2) == end && depth <= 0) {
        push(block ? Tk::kBlockEnd : Tk::kVarEnd, "", pos_);
        pos_ += 2;
        check_raw(first);
        return false;
      }
      const char c = src_[pos_];
      if (std::isalpha(uint8_t(c)) || c == '_') {
        size_t e = pos_;
        while (e < src_.size() && (std::isalnum(uint8_t(src_[e])) || src_[e] == '_')) ++e;
        push(Tk::kName, std::string(src_.substr(pos_, e - pos_)), pos_);
        pos_ = e;
      } else if (std::isdigit(uint8_t(c))) {
        lex_number();
      } else if (c == '\'' || c == '"') {
        lex_string(c);
      } else {
        static const char* kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*",
                                     "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                     "]",  "{",  "}",  ",",  ".",  ":",  "|"};
        bool found = false;
        for (const char* op : kOps) {
          const size_t n = std::strlen(op);
          if (rest.substr(0, n) == op) {
            push(Tk::kOp, op, pos_);
            if (op[0] == '(' || op[0] == '[' || op[0] == '{') ++depth;
            if (op[0] == ')' || op[0] == ']' || op[0] == '}') --depth;
            pos_ += n;
            found = true;
            break;
          }
        }
        if (!found) error_at(pos_, std::string("unexpected character '") + c + "'");
      }
    }
  }
  void check_raw(size_t first) {
    raw_pending_ =
        toks_.size() == first + 2 && toks_[first].k == Tk::kName && toks_[first].s == "raw";
  }
  // {% raw %} ... {% endraw %}: text verbatim.
  void lex_raw(bool* strip_next) {
    raw_pending_ = false;
    toks_.resize(toks_.size() - 3);  // drop {% raw %}
    size_t p = pos_;
    while (true) {
      p = src_.find("{%", p);
      if (p == std::string::npos) error_at(pos_, "unterminated raw block");
      size_t q = p + 2;
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) ++q;
      while (q < src_.size() && is_space(src_[q])) ++q;
      if (src_.substr(q, 6) == "endraw") {
        size_t r = q + 6;
        while (r < src_.size() && is_space(src_[r])) ++r;
        bool dash = false;
        if (r < src_.size() && src_[r] == '-') {
          dash = true;
          ++r;
        }
        if (src_.substr(r, 2) == "%}") {
          std::string text(src_.substr(pos_, p - pos_));
          if (*strip_next) {
            size_t k = 0;
            while (k < text.size() && is_space(text[k])) ++k;
            text.erase(0, k);
          }
          if (src_[p + 2] == '-')
            while (!text.empty() && is_space(text.back())) text.pop_back();
          emit_text(text, pos_);
          pos_ = r + 2;
          *strip_next = dash;
          if (!dash) trim_newline();
          return;
        }
      }
      p += 2;
    }
  }
  void lex_number() {
    size_t e = pos_;
    bool is_float = false;
    while (e < src_.size() && (std::isdigit(uint8_t(src_[e])) || src_[e] == '_')) ++e;
    if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(uint8_t(src_[e + 1]))) {
      is_float = true;
      ++e;
      while (e < src_.size() && (std::isdigit(uint8_t(src_[e])) || src_[e] == '_')) ++e;
    }
    if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
      size_t x = e + 1;
      if (x < src_.size() && (src_[x] == '+' || src_[x] == '-')) ++x;
      if (x < src_.size() && std::isdigit(uint8_t(src_[x]))) {
        is_float = true;
        e = x;
        while (e < src_.size() && std::isdigit(uint8_t(src_[e]))) ++e;
      }
    }
    std::string lit(src_.substr(pos_, e - pos_));
    lit.erase(std::remove(lit.begin(), lit.end(), '_'), lit.end());
    Token& t = push(is_float ? Tk::kFloat : Tk::kInt, lit, pos_);
    if (is_float) {
      t.f = std::strtod(lit.c_str(), nullptr);
    } else {
      auto r = std::from_chars(lit.data(), lit.data() + lit.size(), t.i);
      if (r.ec != std::errc()) error_at(pos_, "integer literal out of range");
    }
    pos_ = e;
  }
  void lex_string(char q) {
    const size_t start = pos_;
    std::string out;
    size_t p = pos_ + 1;
    while (true) {
      if (p >= src_.size()) error_at(start, "unterminated string");
      const char c = src_[p];
      if (c == q) break;
      if (c != '\\') {
        out += c;
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) error_at(start, "unterminated string");
      const char e = src_[p + 1];
      p += 2;
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case 'a':
          out += '\a';
          break;
        case '0':
          out += '\0';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case '\n':
          break;  // line continuation
        case 'x':
        case 'u':
        case 'U': {
          const size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          if (p + n > src_.size()) error_at(start, "truncated escape in string");
          uint32_t cp = 0;
          for (size_t k = 0; k < n; ++k) {
            const char h = src_[p + k];
            if (!std::isxdigit(uint8_t(h))) error_at(start, "bad escape in string");
            cp = cp * 16 + uint32_t(std::isdigit(uint8_t(h)) ? h - '0' : (h | 0x20) - 'a' + 10);
          }
          if (cp > 0x10FFFF) error_at(start, "escape out of range");
          append_utf8(out, cp);
          p += n;
          break;
        }
        default:  // Python keeps unknown escapes as written
          out += '\\';
          out += e;
      }
    }
    push(Tk::kString, std::move(out), start);
    pos_ = p + 1;
  }

  std::string_view src_;
  size_t pos_ = 0;
  std::vector<Token> toks_;
  bool raw_pending_ = false;
  bool keep_newline_ = false;  // the tag ended with "+%}"
  size_t lc_pos_ = 0;
  int lc_line_ = 1, lc_col_ = 1;
};

// ---------------------------------------------------------------- AST

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

std::unique_ptr<Stmt> make_stmt(Stmt::K k) {
  auto s = std::make_unique<Stmt>();
  s->k = k;
  return s;
}

struct MacroDef {
  std::string name;
  std::vector<std::pair<std::string, ExprP>> params;  // default nullptr: none
  Body body;
};

}  // namespace

struct Program {
  Body body;
  std::vector<std::unique_ptr<MacroDef>> macros;
  std::vector<std::string> names;  // every variable name read
};

namespace {

// ---------------------------------------------------------------- parser

class Parser {
 public:
  Parser(std::vector<Token> toks, Program& prog, int max_depth)
      : t_(std::move(toks)), prog_(prog), max_depth_(max_depth) {}

  void run() {
    std::string end;
    prog_.body = parse_body({}, &end);
  }

 private:
  struct Depth {
    explicit Depth(Parser& p) : p_(p) {
      if (++p_.depth_ > p_.max_depth_) p_.err("template nests too deeply");
    }
    ~Depth() { --p_.depth_; }
    Parser& p_;
  };

  const Token& cur() const { return t_[i_]; }
  const Token& next() { return t_[i_ < t_.size() - 1 ? i_++ : i_]; }
  [[noreturn]] void err(const std::string& msg) const {
    const Token& t = cur();
    fail("syntax error at line " + std::to_string(t.line) + ", column " + std::to_string(t.col) +
         ": " + msg);
  }
  bool is_op(const char* op) const { return cur().k == Tk::kOp && cur().s == op; }
  bool is_name(const char* n) const { return cur().k == Tk::kName && cur().s == n; }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool accept_name(const char* n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) err(std::string("expected '") + op + "'");
  }
  std::string expect_name() {
    if (cur().k != Tk::kName) err("expected a name");
    return next().s;
  }
  void expect_block_end() {
    if (cur().k != Tk::kBlockEnd) err("expected '%}'");
    next();
  }

  // Statements until one of `ends` (block keyword); *end gets the one found.
  Body parse_body(std::initializer_list<const char*> ends, std::string* end) {
    Depth d(*this);
    Body body;
    while (true) {
      const Token& tk = cur();
      if (tk.k == Tk::kEof) {
        if (ends.size() != 0) err(std::string("missing '{% ") + *(ends.end() - 1) + " %}'");
        return body;
      }
      if (tk.k == Tk::kText) {
        auto s = make_stmt(Stmt::K::kText);
        s->text = next().s;
        body.push_back(std::move(s));
        continue;
      }
      if (tk.k == Tk::kVarBegin) {
        next();
        auto s = make_stmt(Stmt::K::kOut);
        s->line = tk.line;
        s->e = expr();
        if (cur().k != Tk::kVarEnd) err("expected '}}'");
        next();
        body.push_back(std::move(s));
        continue;
      }
      if (tk.k != Tk::kBlockBegin) err("unexpected token");
      next();
      if (cur().k != Tk::kName) err("expected a statement name");
      const std::string kw = cur().s;
      for (const char* e : ends)
        if (kw == e) {
          *end = kw;
          next();
          return body;
        }
      const int line = cur().line, col = cur().col;
      next();
      std::unique_ptr<Stmt> s;
      if (kw == "if") {
        s = parse_if();
      } else if (kw == "for") {
        s = parse_for();
      } else if (kw == "set") {
        s = parse_set();
      } else if (kw == "macro") {
        s = parse_macro();
      } else if (kw == "break" || kw == "continue") {
        if (loops_ == 0) err("'" + kw + "' outside a loop");
        s = make_stmt(kw == "break" ? Stmt::K::kBreak : Stmt::K::kContinue);
        expect_block_end();
      } else {
        err("unknown or unexpected tag '" + kw + "'");
      }
      s->line = line;
      s->col = col;
      body.push_back(std::move(s));
    }
  }

  std::unique_ptr<Stmt> parse_if() {
    auto s = make_stmt(Stmt::K::kIf);
    ExprP c = expr();
    expect_block_end();
    while (true) {
      std::string end;
      Body b = parse_body({"elif", "else", "endif"}, &end);
      s->ifs.emplace_back(std::move(c), std::move(b));
      if (end == "endif") break;
      if (end == "else") {
        expect_block_end();
        Body eb = parse_body({"endif"}, &end);
        s->ifs.emplace_back(nullptr, std::move(eb));
        break;
      }
      c = expr();
      expect_block_end();
    }
    expect_block_end();
    return s;
  }

  std::unique_ptr<Stmt> parse_for() {
    auto s = make_stmt(Stmt::K::kFor);
    do {
      s->targets.push_back(expect_name());
    } while (accept_op(","));
    if (!accept_name("in")) err("expected 'in'");
    s->e = ternary(/*allow_cond=*/false);
    if (accept_name("if")) s->cond = ternary(false);
    if (accept_name("recursive")) err("recursive loops are not supported");
    expect_block_end();
    std::string end;
    ++loops_;
    s->body = parse_body({"else", "endfor"}, &end);
    --loops_;
    if (end == "else") {
      expect_block_end();
      s->else_body = parse_body({"endfor"}, &end);
    }
    expect_block_end();
    return s;
  }

  std::unique_ptr<Stmt> parse_set() {
    auto s = make_stmt(Stmt::K::kSet);
    s->targets.push_back(expect_name());
    if (accept_op(".")) {
      s->attr = expect_name();
    } else {
      while (accept_op(",")) s->targets.push_back(expect_name());
    }
    if (cur().k == Tk::kBlockEnd) {  // {% set x %}...{% endset %}
      if (!s->attr.empty() || s->targets.size() != 1) err("block set takes one name");
      next();
      s->k = Stmt::K::kSetBlock;
      std::string end;
      const int saved = loops_;
      loops_ = 0;
      s->body = parse_body({"endset"}, &end);
      loops_ = saved;
      expect_block_end();
      return s;
    }
    expect_op("=");
    s->e = expr();
    expect_block_end();
    return s;
  }

  std::unique_ptr<Stmt> parse_macro() {
    auto m = std::make_unique<MacroDef>();
    m->name = expect_name();
    expect_op("(");
    if (!is_op(")")) {
      do {
        std::string p = expect_name();
        ExprP def;
        if (accept_op("=")) def = expr();
        m->params.emplace_back(std::move(p), std::move(def));
      } while (accept_op(","));
    }
    expect_op(")");
    expect_block_end();
    std::string end;
    const int saved = loops_;
    loops_ = 0;
    m->body = parse_body({"endmacro"}, &end);
    loops_ = saved;
    expect_block_end();
    auto s = make_stmt(Stmt::K::kMacro);
    s->targets.push_back(m->name);
    s->macro = m.get();
    prog_.macros.push_back(std::move(m));
    return s;
  }

  ExprP node(Expr::K k) {
    auto e = std::make_unique<Expr>();
    e->k = k;
    e->line = cur().line;
    e->col = cur().col;
    return e;
  }

  ExprP expr() { return ternary(true); }

  ExprP ternary(bool allow_cond) {
    Depth d(*this);
    ExprP e = or_expr();
    while (allow_cond && is_name("if")) {
      next();
      ExprP c = node(Expr::K::kCond);
      c->a.push_back(or_expr());  // condition
      c->a.push_back(std::move(e));
      c->a.push_back(accept_name("else") ? ternary(true) : nullptr);
      e = std::move(c);
    }
    return e;
  }
  ExprP or_expr() {
    ExprP e = and_expr();
    while (is_name("or")) {
      ExprP o = node(Expr::K::kOr);
      next();
      o->a.push_back(std::move(e));
      o->a.push_back(and_expr());
      e = std::move(o);
    }
    return e;
  }
  ExprP and_expr() {
    ExprP e = not_expr();
    while (is_name("and")) {
      ExprP o = node(Expr::K::kAnd);
      next();
      o->a.push_back(std::move(e));
      o->a.push_back(not_expr());
      e = std::move(o);
    }
    return e;
  }
  ExprP not_expr() {
    Depth d(*this);
    if (is_name("not")) {
      ExprP n = node(Expr::K::kNot);
      next();
      n->a.push_back(not_expr());
      return n;
    }
    return compare();
  }
  ExprP compare() {
    ExprP e = concat();
    ExprP c;
    while (true) {
      std::string op;
      if (cur().k == Tk::kOp && (cur().s == "==" || cur().s == "!=" || cur().s == "<" ||
                                 cur().s == ">" || cur().s == "<=" || cur().s == ">=")) {
        op = next().s;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && i_ + 1 < t_.size() && t_[i_ + 1].k == Tk::kName &&
                 t_[i_ + 1].s == "in") {
        next();
        next();
        op = "notin";
      } else {
        break;
      }
      if (!c) {
        c = node(Expr::K::kCompare);
        c->a.push_back(std::move(e));
      }
      c->ops.push_back(op);
      c->a.push_back(concat());
    }
    return c ? std::move(c) : std::move(e);
  }
  ExprP concat() {
    ExprP e = math1();
    while (is_op("~")) {
      ExprP o = node(Expr::K::kConcat);
      next();
      o->a.push_back(std::move(e));
      o->a.push_back(math1());
      e = std::move(o);
    }
    return e;
  }
  ExprP binary(ExprP lhs, ExprP rhs, const std::string& op) {
    auto o = std::make_unique<Expr>();
    o->k = Expr::K::kBinary;
    o->name = op;
    o->line = lhs->line;
    o->col = lhs->col;
    o->a.push_back(std::move(lhs));
    o->a.push_back(std::move(rhs));
    return o;
  }
  ExprP math1() {
    ExprP e = math2();
    while (is_op("+") || is_op("-")) {
      const std::string op = next().s;
      e = binary(std::move(e), math2(), op);
    }
    return e;
  }
  ExprP math2() {
    ExprP e = power();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string op = next().s;
      e = binary(std::move(e), power(), op);
    }
    return e;
  }
  ExprP power() {
    ExprP e = unary();
    while (is_op("**")) {
      next();
      e = binary(std::move(e), unary(), "**");
    }
    return e;
  }
  // Jinja: `-x | f` is `(-x) | f`; the operand of unary minus takes no filters itself.
  ExprP unary(bool with_filters = true) {
    Depth d(*this);
    ExprP e;
    if (is_op("-") || is_op("+")) {
      e = node(Expr::K::kUnary);
      e->name = next().s;
      e->a.push_back(unary(false));
    } else {
      e = postfix(primary());
    }
    return with_filters ? filters(std::move(e)) : std::move(e);
  }

  void call_args(Expr& e) {
    // after '('
    if (!is_op(")")) {
      do {
        if (is_op(")")) break;
        if (cur().k == Tk::kName && i_ + 1 < t_.size() && t_[i_ + 1].k == Tk::kOp &&
            t_[i_ + 1].s == "=") {
          std::string k = next().s;
          next();
          e.kw.emplace_back(std::move(k), expr());
        } else {
          if (!e.kw.empty()) err("positional argument after a keyword argument");
          e.a.push_back(expr());
        }
      } while (accept_op(","));
    }
    expect_op(")");
  }

  ExprP postfix(ExprP e) {
    while (true) {
      if (is_op(".")) {
        next();
        ExprP a = node(Expr::K::kAttr);
        if (cur().k == Tk::kInt) {  // x.0
          ExprP idx = node(Expr::K::kLit);
          idx->lit = Value::integer(next().i);
          a->k = Expr::K::kIndex;
          a->a.push_back(std::move(e));
          a->a.push_back(std::move(idx));
        } else {
          a->name = expect_name();
          a->a.push_back(std::move(e));
        }
        e = std::move(a);
      } else if (is_op("[")) {
        next();
        ExprP lo, hi, st;
        bool slice = false;
        if (!is_op(":")) lo = expr();
        if (accept_op(":")) {
          slice = true;
          if (!is_op("]") && !is_op(":")) hi = expr();
          if (accept_op(":") && !is_op("]")) st = expr();
        }
        expect_op("]");
        ExprP s = node(slice ? Expr::K::kSlice : Expr::K::kIndex);
        if (!slice && !lo) err("empty subscript");
        s->a.push_back(std::move(e));
        s->a.push_back(std::move(lo));
        if (slice) {
          s->a.push_back(std::move(hi));
          s->a.push_back(std::move(st));
        }
        e = std::move(s);
      } else if (is_op("(")) {
        next();
        ExprP c = node(Expr::K::kCall);
        c->a.push_back(std::move(e));
        call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprP filters(ExprP e) {
    while (true) {
      if (is_op("|")) {
        next();
        ExprP f = node(Expr::K::kFilter);
        f->name = expect_name();
        while (accept_op(".")) f->name += "." + expect_name();
        f->a.push_back(std::move(e));
        if (accept_op("(")) call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        next();
        ExprP t = node(Expr::K::kTest);
        if (accept_name("not")) t->negate = true;
        t->name = expect_name();
        t->a.push_back(std::move(e));
        if (accept_op("(")) {
          call_args(*t);
        } else if (cur().k == Tk::kInt || cur().k == Tk::kFloat || cur().k == Tk::kString ||
                   (cur().k == Tk::kName && !is_name("and") && !is_name("or") && !is_name("if") &&
                    !is_name("else") && !is_name("is") && !is_name("in") && !is_name("not"))) {
          t->a.push_back(primary());
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  ExprP primary() {
    Depth d(*this);
    const Token& tk = cur();
    if (tk.k == Tk::kString) {
      ExprP e = node(Expr::K::kLit);
      std::string s = next().s;
      while (cur().k == Tk::kString) s += next().s;  // adjacent literals concatenate
      e->lit = Value::str(std::move(s));
      return e;
    }
    if (tk.k == Tk::kInt || tk.k == Tk::kFloat) {
      ExprP e = node(Expr::K::kLit);
      e->lit = tk.k == Tk::kInt ? Value::integer(tk.i) : Value::real(tk.f);
      next();
      return e;
    }
    if (tk.k == Tk::kName) {
      ExprP e = node(Expr::K::kLit);
      const std::string n = next().s;
      if (n == "true" || n == "True") {
        e->lit = Value::boolean(true);
      } else if (n == "false" || n == "False") {
        e->lit = Value::boolean(false);
      } else if (n == "none" || n == "None") {
        e->lit = Value::none();
      } else {
        e->k = Expr::K::kName;
        e->name = n;
        prog_.names.push_back(n);
      }
      return e;
    }
    if (accept_op("(")) {
      if (accept_op(")")) return lit_list();
      ExprP e = expr();
      if (is_op(",")) {  // tuple
        ExprP l = node(Expr::K::kList);
        l->negate = true;  // a tuple
        l->a.push_back(std::move(e));
        while (accept_op(",")) {
          if (is_op(")")) break;
          l->a.push_back(expr());
        }
        e = std::move(l);
      }
      expect_op(")");
      return e;
    }
    if (accept_op("[")) {
      ExprP l = node(Expr::K::kList);
      while (!is_op("]")) {
        l->a.push_back(expr());
        if (!accept_op(",")) break;
      }
      expect_op("]");
      return l;
    }
    if (accept_op("{")) {
      ExprP dct = node(Expr::K::kDict);
      while (!is_op("}")) {
        ExprP k = expr();
        expect_op(":");
        dct->a.push_back(std::move(k));
        dct->a.push_back(expr());
        if (!accept_op(",")) break;
      }
      expect_op("}");
      return dct;
    }
    err("unexpected " + std::string(tk.k == Tk::kEof        ? "end of template"
                                    : tk.k == Tk::kVarEnd   ? "'}}'"
                                    : tk.k == Tk::kBlockEnd ? "'%}'"
                                                            : "'" + tk.s + "'"));
  }
  ExprP lit_list() {
    ExprP l = node(Expr::K::kList);
    l->negate = true;  // ()
    return l;
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  Program& prog_;
  int max_depth_;
  int depth_ = 0;
  int loops_ = 0;
};

// ---------------------------------------------------------------- evaluator

struct BreakSignal {};
struct ContinueSignal {};

class Renderer {
 public:
  Renderer(const Limits& lim, std::string& out) : lim_(lim), out_(out) {}

  void run(const Program& p, const Json& ctx) {
    frames_.emplace_back();
    if (!ctx.is_object()) fail("the context must be an object");
    for (auto it = ctx.begin(); it != ctx.end(); ++it)
      frames_[0].emplace_back(it.key(), from_json(it.value()));
    exec(p.body);
  }

 private:
  using Frame = std::vector<std::pair<std::string, Value>>;

  struct Depth {
    explicit Depth(Renderer& r) : r_(r) {
      if (++r_.depth_ > r_.lim_.max_depth) r_.err("nesting deeper than the limit");
    }
    ~Depth() { --r_.depth_; }
    Renderer& r_;
  };

  [[noreturn]] void err(const std::string& msg) const {
    fail(line_ > 0 ? "line " + std::to_string(line_) + ": " + msg : msg);
  }
  void step() {
    if (++steps_ > lim_.max_steps) err("template exceeds the step limit");
  }
  void check_size(size_t n) const {
    if (n > lim_.max_output) err("a string or list exceeds the output limit");
  }
  void emit(std::string_view s) {
    step();
    if (out_.size() + s.size() > lim_.max_output) err("output exceeds the limit");
    out_.append(s);
  }

  Value* lookup(const std::string& n) {
    for (size_t k = frames_.size(); k-- > base_;)
      for (auto& [key, v] : frames_[k])
        if (key == n) return &v;
    if (base_ > 0)
      for (auto& [key, v] : frames_[0])
        if (key == n) return &v;
    return nullptr;
  }
  void assign(const std::string& n, Value v) {
    Frame& f = frames_.back();
    for (auto& [key, old] : f)
      if (key == n) {
        old = std::move(v);
        return;
      }
    f.emplace_back(n, std::move(v));
  }

  // ---- statements

  void exec(const Body& body) {
    Depth d(*this);
    for (const auto& s : body) exec_one(*s);
  }

  void exec_one(const Stmt& s) {
    if (s.line) line_ = s.line;
    switch (s.k) {
      case Stmt::K::kText:
        emit(s.text);
        return;
      case Stmt::K::kOut: {
        const Value v = eval(*s.e);
        emit(to_str(v));
        return;
      }
      case Stmt::K::kIf:
        for (const auto& [c, b] : s.ifs) {
          if (!c || truthy(eval(*c))) {
            exec(b);
            return;
          }
        }
        return;
      case Stmt::K::kFor:
        exec_for(s);
        return;
      case Stmt::K::kSet: {
        Value v = eval(*s.e);
        if (!s.attr.empty()) {
          Value* ns = lookup(s.targets[0]);
          if (!ns || !ns->is(T::kNs)) err("'" + s.targets[0] + "' is not a namespace");
          ns->put(s.attr, std::move(v));
        } else if (s.targets.size() == 1) {
          assign(s.targets[0], std::move(v));
        } else {
          unpack(s.targets, v);
        }
        return;
      }
      case Stmt::K::kSetBlock: {
        std::string saved;
        std::swap(saved, out_);
        exec(s.body);
        std::swap(saved, out_);
        assign(s.targets[0], Value::str(std::move(saved)));
        return;
      }
      case Stmt::K::kMacro: {
        Value m = Value::mk(T::kMacro);
        m.m = s.macro;
        assign(s.targets[0], std::move(m));
        return;
      }
      case Stmt::K::kBreak:
        throw BreakSignal{};
      case Stmt::K::kContinue:
        throw ContinueSignal{};
    }
  }

  void unpack(const std::vector<std::string>& names, const Value& v) {
    List items = iterate(v);
    if (items.size() != names.size())
      err("cannot unpack " + std::to_string(items.size()) + " values into " +
          std::to_string(names.size()) + " names");
    for (size_t k = 0; k < names.size(); ++k) assign(names[k], items[k]);
  }

  List iterate(const Value& v) {
    switch (v.t) {
      case T::kUndef:
        return {};
      case T::kList:
        return *v.l;
      case T::kDict: {
        List keys;
        for (const auto& [k, x] : *v.d) keys.push_back(Value::str(k));
        return keys;
      }
      case T::kStr: {
        List cps;
        const auto o = cp_offsets(v.s);
        for (size_t k = 0; k + 1 < o.size(); ++k)
          cps.push_back(Value::str(v.s.substr(o[k], o[k + 1] - o[k])));
        return cps;
      }
      default:
        err(std::string("'") + type_name(v) + "' object is not iterable");
    }
  }

  void exec_for(const Stmt& s) {
    const Value seq = eval(*s.e);
    List items = iterate(seq);
    frames_.emplace_back();
    struct Pop {
      ~Pop() { r.frames_.pop_back(); }
      Renderer& r;
    } pop{*this};
    auto bind = [&](const Value& item) {
      if (s.targets.size() == 1) {
        assign(s.targets[0], item);
      } else {
        unpack(s.targets, item);
      }
    };
    if (s.cond) {
      List kept;
      for (const Value& it : items) {
        step();
        bind(it);
        if (truthy(eval(*s.cond))) kept.push_back(it);
      }
      items = std::move(kept);
    }
    const int64_t n = int64_t(items.size());
    for (int64_t k = 0; k < n; ++k) {
      step();
      bind(items[size_t(k)]);
      Dict loop{{"index", Value::integer(k + 1)},
                {"index0", Value::integer(k)},
                {"revindex", Value::integer(n - k)},
                {"revindex0", Value::integer(n - k - 1)},
                {"first", Value::boolean(k == 0)},
                {"last", Value::boolean(k == n - 1)},
                {"length", Value::integer(n)},
                {"previtem", k > 0 ? items[size_t(k - 1)] : Value::undef("previtem")},
                {"nextitem", k + 1 < n ? items[size_t(k + 1)] : Value::undef("nextitem")},
                {"depth", Value::integer(1)},
                {"depth0", Value::integer(0)}};
      assign("loop", Value::dict(std::move(loop)));
      try {
        exec(s.body);
      } catch (const BreakSignal&) {
        break;
      } catch (const ContinueSignal&) {
      }
    }
    if (n == 0) exec(s.else_body);
  }

  // ---- expressions

  Value eval(const Expr& e) {
    Depth d(*this);
    switch (e.k) {
      case Expr::K::kLit:
        return e.lit;
      case Expr::K::kName: {
        if (const Value* v = lookup(e.name)) return *v;
        static const char* kBuiltins[] = {"range", "namespace", "raise_exception", "dict",
                                          "strftime_now"};
        for (const char* b : kBuiltins)
          if (e.name == b) {
            Value f = Value::mk(T::kFn);
            f.s = b;
            return f;
          }
        return Value::undef(e.name);
      }
      case Expr::K::kList: {
        List l;
        for (const auto& x : e.a) l.push_back(eval(*x));
        Value v = Value::list(std::move(l));
        v.tuple = e.negate;
        return v;
      }
      case Expr::K::kDict: {
        Value dct = Value::dict();
        for (size_t k = 0; k + 1 < e.a.size(); k += 2) {
          const Value key = eval(*e.a[k]);
          if (!key.is(T::kStr)) err("dict keys must be strings");
          dct.put(key.s, eval(*e.a[k + 1]));
        }
        return dct;
      }
      case Expr::K::kAttr:
        return attr(eval(*e.a[0]), e.name);
      case Expr::K::kIndex:
        return index(eval(*e.a[0]), eval(*e.a[1]));
      case Expr::K::kSlice:
        return slice(e);
      case Expr::K::kCall:
        return call(e);
      case Expr::K::kFilter:
        return filter(e);
      case Expr::K::kTest: {
        const bool r = test(e);
        return Value::boolean(e.negate ? !r : r);
      }
      case Expr::K::kUnary: {
        const Value v = eval(*e.a[0]);
        if (!v.numeric()) err(std::string("bad operand type for unary ") + e.name);
        if (e.name == "+") return v.is(T::kBool) ? Value::integer(v.b) : v;
        if (v.is(T::kFloat)) return Value::real(-v.f);
        const int64_t x = v.is(T::kBool) ? v.b : v.i;
        if (x == INT64_MIN) err("integer overflow");
        return Value::integer(-x);
      }
      case Expr::K::kBinary:
        return arith(e.name, eval(*e.a[0]), eval(*e.a[1]));
      case Expr::K::kConcat: {
        std::string s = to_str(eval(*e.a[0]));
        s += to_str(eval(*e.a[1]));
        check_size(s.size());
        return Value::str(std::move(s));
      }
      case Expr::K::kAnd: {
        Value l = eval(*e.a[0]);
        return truthy(l) ? eval(*e.a[1]) : l;
      }
      case Expr::K::kOr: {
        Value l = eval(*e.a[0]);
        return truthy(l) ? l : eval(*e.a[1]);
      }
      case Expr::K::kNot:
        return Value::boolean(!truthy(eval(*e.a[0])));
      case Expr::K::kCompare: {
        Value l = eval(*e.a[0]);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value r = eval(*e.a[k + 1]);
          if (!cmp(e.ops[k], l, r)) return Value::boolean(false);
          l = std::move(r);
        }
        return Value::boolean(true);
      }
      case Expr::K::kCond:
        if (truthy(eval(*e.a[0]))) return eval(*e.a[1]);
        return e.a[2] ? eval(*e.a[2]) : Value::undef("");
    }
    return Value();
  }

  bool contains(const Value& hay, const Value& needle) {
    switch (hay.t) {
      case T::kStr:
        if (!needle.is(T::kStr)) err("'in <string>' requires a string as left operand");
        return hay.s.find(needle.s) != std::string::npos;
      case T::kList:
        for (const Value& x : *hay.l)
          if (equal(x, needle)) return true;
        return false;
      case T::kDict:
        return needle.is(T::kStr) && hay.get(needle.s) != nullptr;
      default:
        err(std::string("argument of type '") + type_name(hay) + "' is not iterable");
    }
  }

  bool cmp(const std::string& op, const Value& l, const Value& r) {
    if (op == "==") return equal(l, r);
    if (op == "!=") return !equal(l, r);
    if (op == "in") return contains(r, l);
    if (op == "notin") return !contains(r, l);
    const int c = compare(l, r);
    if (op == "<") return c < 0;
    if (op == ">") return c > 0;
    if (op == "<=") return c <= 0;
    return c >= 0;
  }

  Value arith(const std::string& op, const Value& a, const Value& b) {
    if (op == "+") {
      if (a.is(T::kStr) && b.is(T::kStr)) {
        check_size(a.s.size() + b.s.size());
        return Value::str(a.s + b.s);
      }
      if (a.is(T::kList) && b.is(T::kList)) {
        check_size(a.l->size() + b.l->size());
        List l = *a.l;
        l.insert(l.end(), b.l->begin(), b.l->end());
        return Value::list(std::move(l));
      }
    }
    if (op == "*") {
      const Value* seq = a.is(T::kStr) || a.is(T::kList) ? &a : &b;
      const Value* cnt = seq == &a ? &b : &a;
      if ((seq->is(T::kStr) || seq->is(T::kList)) && (cnt->is(T::kInt) || cnt->is(T::kBool))) {
        const int64_t n = std::max<int64_t>(0, cnt->is(T::kBool) ? cnt->b : cnt->i);
        const size_t unit = seq->is(T::kStr) ? seq->s.size() : seq->l->size();
        if (unit && uint64_t(n) > lim_.max_output / unit) err("repetition exceeds the limit");
        if (seq->is(T::kStr)) {
          std::string s;
          for (int64_t k = 0; k < n; ++k) s += seq->s;
          return Value::str(std::move(s));
        }
        List l;
        for (int64_t k = 0; k < n; ++k) l.insert(l.end(), seq->l->begin(), seq->l->end());
        return Value::list(std::move(l));
      }
    }
    if (!a.numeric() || !b.numeric())
      err(std::string("unsupported operand types for ") + op + ": '" + type_name(a) + "' and '" +
          type_name(b) + "'");
    const bool fl = a.is(T::kFloat) || b.is(T::kFloat);
    const double x = a.num(), y = b.num();
    if (op == "/") {
      if (y == 0) err("division by zero");
      return Value::real(x / y);
    }
    if (fl) {
      if (op == "+") return Value::real(x + y);
      if (op == "-") return Value::real(x - y);
      if (op == "*") return Value::real(x * y);
      if (op == "**") return Value::real(std::pow(x, y));
      if (y == 0) err("division by zero");
      const double fq = std::floor(x / y);
      if (op == "//") return Value::real(fq);
      return Value::real(x - fq * y);
    }
    const int64_t p = a.is(T::kBool) ? a.b : a.i, q = b.is(T::kBool) ? b.b : b.i;
    int64_t r = 0;
    if (op == "+") {
      if (__builtin_add_overflow(p, q, &r)) err("integer overflow");
      return Value::integer(r);
    }
    if (op == "-") {
      if (__builtin_sub_overflow(p, q, &r)) err("integer overflow");
      return Value::integer(r);
    }
    if (op == "*") {
      if (__builtin_mul_overflow(p, q, &r)) err("integer overflow");
      return Value::integer(r);
    }
    if (op == "**") {
      if (q < 0) return Value::real(std::pow(double(p), double(q)));
      int64_t acc = 1;
      for (int64_t k = 0; k < q; ++k) {
        if (__builtin_mul_overflow(acc, p, &acc)) err("integer overflow");
        if (acc == 0 || acc == 1) break;
      }
      return Value::integer(acc);
    }
    if (q == 0) err("division by zero");
    if (p == INT64_MIN && q == -1) err("integer overflow");
    int64_t fq = p / q;
    if ((p % q != 0) && ((p < 0) != (q < 0))) --fq;
    if (op == "//") return Value::integer(fq);
    return Value::integer(p - fq * q);
  }

  Value attr(const Value& v, const std::string& name) {
    if (v.is(T::kUndef))
      err("'" + (v.s.empty() ? std::string("value") : v.s) + "' is undefined (attribute '" + name +
          "')");
    if (v.is(T::kDict) || v.is(T::kNs)) {
      if (const Value* x = v.get(name)) return *x;
    }
    return Value::undef(name);
  }

  static int64_t norm_index(int64_t k, size_t n) { return k < 0 ? k + int64_t(n) : k; }

  Value index(const Value& v, const Value& k) {
    if (v.is(T::kUndef))
      err("'" + (v.s.empty() ? std::string("value") : v.s) + "' is undefined (subscript)");
    if (v.is(T::kDict) || v.is(T::kNs)) {
      if (k.is(T::kStr))
        if (const Value* x = v.get(k.s)) return *x;
      return Value::undef(k.is(T::kStr) ? k.s : "");
    }
    if ((v.is(T::kList) || v.is(T::kStr)) && (k.is(T::kInt) || k.is(T::kBool))) {
      if (v.is(T::kList)) {
        const int64_t i = norm_index(k.is(T::kBool) ? k.b : k.i, v.l->size());
        if (i < 0 || i >= int64_t(v.l->size())) return Value::undef("");
        return (*v.l)[size_t(i)];
      }
      const auto o = cp_offsets(v.s);
      const int64_t i = norm_index(k.is(T::kBool) ? k.b : k.i, o.size() - 1);
      if (i < 0 || i >= int64_t(o.size() - 1)) return Value::undef("");
      return Value::str(v.s.substr(o[size_t(i)], o[size_t(i) + 1] - o[size_t(i)]));
    }
    if (k.is(T::kStr)) return attr(v, k.s);
    return Value::undef("");
  }

  Value slice(const Expr& e) {
    const Value v = eval(*e.a[0]);
    auto bound = [&](const ExprP& x, bool* given) -> int64_t {
      *given = false;
      if (!x) return 0;
      const Value b = eval(*x);
      if (b.is(T::kNone)) return 0;
      if (!b.is(T::kInt)) err("slice indices must be integers");
      *given = true;
      return b.i;
    };
    bool hl = false, hh = false, hs = false;
    const int64_t lo = bound(e.a[1], &hl), hi = bound(e.a[2], &hh);
    int64_t st = bound(e.a[3], &hs);
    if (!hs) st = 1;
    if (st == 0) err("slice step cannot be zero");
    std::vector<size_t> o;
    size_t n = 0;
    if (v.is(T::kList)) {
      n = v.l->size();
    } else if (v.is(T::kStr)) {
      o = cp_offsets(v.s);
      n = o.size() - 1;
    } else {
      err(std::string("'") + type_name(v) + "' object is not subscriptable");
    }
    // Python's slice.indices()
    const int64_t len = int64_t(n);
    auto adj = [&](int64_t x, bool given, int64_t dflt) {
      if (!given) return dflt;
      if (x < 0) x += len;
      if (st > 0) return std::clamp<int64_t>(x, 0, len);
      return std::clamp<int64_t>(x, -1, len - 1);
    };
    const int64_t b = adj(lo, hl, st > 0 ? 0 : len - 1);
    const int64_t en = adj(hi, hh, st > 0 ? len : -1);
    std::vector<size_t> pick;
    for (int64_t k = b; st > 0 ? k < en : k > en; k += st) pick.push_back(size_t(k));
    if (v.is(T::kList)) {
      List l;
      for (size_t k : pick) l.push_back((*v.l)[k]);
      return Value::list(std::move(l));
    }
    std::string s;
    for (size_t k : pick) s.append(v.s, o[k], o[k + 1] - o[k]);
    return Value::str(std::move(s));
  }

  // Positional + keyword arguments evaluated.
  struct Args {
    List pos;
    std::vector<std::pair<std::string, Value>> kw;
    const Value* get(size_t i, const char* name) const {
      if (i < pos.size()) return &pos[i];
      for (const auto& [k, v] : kw)
        if (k == name) return &v;
      return nullptr;
    }
  };
  Args eval_args(const Expr& e, size_t first) {
    Args a;
    for (size_t k = first; k < e.a.size(); ++k) a.pos.push_back(eval(*e.a[k]));
    for (const auto& [k, x] : e.kw) a.kw.emplace_back(k, eval(*x));
    return a;
  }
  const std::string& need_str(const Value* v, const char* what) {
    if (!v || !v->is(T::kStr)) err(std::string(what) + " must be a string");
    return v->s;
  }
  int64_t need_int(const Value* v, const char* what) {
    if (!v || !(v->is(T::kInt) || v->is(T::kBool))) err(std::string(what) + " must be an integer");
    return v->is(T::kBool) ? v->b : v->i;
  }

  Value call(const Expr& e) {
    const Expr& callee = *e.a[0];
    if (callee.k == Expr::K::kAttr) {  // method call
      const Value obj = eval(*callee.a[0]);
      if (obj.is(T::kStr) || obj.is(T::kDict) || obj.is(T::kList))
        return method(obj, callee.name, eval_args(e, 1));
      const Value f = attr(obj, callee.name);
      return call_value(f, eval_args(e, 1));
    }
    const Value f = eval(callee);
    return call_value(f, eval_args(e, 1));
  }

  Value call_value(const Value& f, const Args& a) {
    if (f.is(T::kMacro)) return call_macro(*f.m, a);
    if (!f.is(T::kFn)) err(std::string("'") + type_name(f) + "' object is not callable");
    if (f.s == "raise_exception") {
      const Value* m = a.get(0, "message");
      err("raise_exception: " + (m ? to_str(*m) : std::string()));
    }
    if (f.s == "namespace" || f.s == "dict") {
      Value ns = Value::dict();
      if (f.s == "namespace") ns.t = T::kNs;
      for (const Value& p : a.pos) {
        if (!p.is(T::kDict)) err(f.s + "() takes keyword arguments or a dict");
        for (const auto& [k, v] : *p.d) ns.put(k, v);
      }
      for (const auto& [k, v] : a.kw) ns.put(k, v);
      return ns;
    }
    if (f.s == "range") {
      int64_t lo = 0, hi = 0, st = 1;
      if (a.pos.size() == 1) {
        hi = need_int(&a.pos[0], "range() argument");
      } else if (a.pos.size() == 2 || a.pos.size() == 3) {
        lo = need_int(&a.pos[0], "range() argument");
        hi = need_int(&a.pos[1], "range() argument");
        if (a.pos.size() == 3) st = need_int(&a.pos[2], "range() argument");
      } else {
        err("range() takes 1 to 3 arguments");
      }
      if (st == 0) err("range() step must not be zero");
      List l;
      for (int64_t k = lo; st > 0 ? k < hi : k > hi; k += st) {
        step();
        l.push_back(Value::integer(k));
      }
      return Value::list(std::move(l));
    }
    err("'" + f.s + "' is not supported");
  }

  Value call_macro(const MacroDef& m, const Args& a) {
    step();
    if (a.pos.size() > m.params.size())
      err("macro '" + m.name + "' takes " + std::to_string(m.params.size()) + " arguments");
    for (const auto& [k, v] : a.kw) {
      bool ok = false;
      for (const auto& p : m.params) ok = ok || p.first == k;
      if (!ok) err("macro '" + m.name + "' has no parameter '" + k + "'");
    }
    Frame f;
    for (size_t k = 0; k < m.params.size(); ++k) {
      const Value* v = a.get(k, m.params[k].first.c_str());
      if (v) {
        f.emplace_back(m.params[k].first, *v);
      } else if (m.params[k].second) {
        f.emplace_back(m.params[k].first, eval(*m.params[k].second));
      } else {
        f.emplace_back(m.params[k].first, Value::undef(m.params[k].first));
      }
    }
    const size_t saved_base = base_;
    const int saved_line = line_;
    frames_.push_back(std::move(f));
    base_ = frames_.size() - 1;
    std::string saved;
    std::swap(saved, out_);
    struct Restore {
      ~Restore() {
        r.frames_.pop_back();
        r.base_ = base;
        r.line_ = line;
        std::swap(saved, r.out_);
      }
      Renderer& r;
      size_t base;
      int line;
      std::string& saved;
    } restore{*this, saved_base, saved_line, saved};
    exec(m.body);
    return Value::str(out_);  // out_ holds the macro's output until Restore swaps back
  }

  static Value pair(const std::string& k, const Value& v) {
    Value p = Value::list({Value::str(k), v});
    p.tuple = true;
    return p;
  }

  Value method(const Value& o, const std::string& n, const Args& a) {
    if (o.is(T::kDict)) {
      if (n == "get") {
        const Value* k = a.get(0, "key");
        if (!k) err("get() needs a key");
        if (k->is(T::kStr))
          if (const Value* v = o.get(k->s)) return *v;
        const Value* d = a.get(1, "default");
        return d ? *d : Value::none();
      }
      if (n == "items" || n == "keys" || n == "values") {
        List l;
        for (const auto& [k, v] : *o.d) {
          if (n == "items") {
            l.push_back(pair(k, v));
          } else {
            l.push_back(n == "keys" ? Value::str(k) : v);
          }
        }
        return Value::list(std::move(l));
      }
      return call_value(attr(o, n), a);
    }
    if (o.is(T::kList)) err("list has no method '" + n + "'");
    const std::string& s = o.s;
    if (n == "startswith" || n == "endswith") {
      const Value* p = a.get(0, "prefix");
      if (!p) err(n + "() needs an argument");
      List cands = p->is(T::kList) ? *p->l : List{*p};
      for (const Value& c : cands) {
        const std::string& x = need_str(&c, n.c_str());
        if (n == "startswith"
                ? s.compare(0, x.size(), x) == 0 && s.size() >= x.size()
                : s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0)
          return Value::boolean(true);
      }
      return Value::boolean(false);
    }
    if (n == "strip" || n == "lstrip" || n == "rstrip") {
      const Value* c = a.get(0, "chars");
      const std::string* chars = c && c->is(T::kStr) ? &c->s : nullptr;
      return Value::str(py_strip(s, n != "rstrip", n != "lstrip", chars));
    }
    if (n == "upper") return Value::str(ascii_upper(s));
    if (n == "lower") return Value::str(ascii_lower(s));
    if (n == "title" || n == "capitalize") return str_filter(n, o);
    if (n == "replace") {
      const Value* c = a.get(2, "count");
      return Value::str(replace(s, need_str(a.get(0, "old"), "replace() old"),
                                need_str(a.get(1, "new"), "replace() new"),
                                c ? need_int(c, "count") : -1));
    }
    if (n == "split" || n == "rsplit") {
      const Value* sep = a.get(0, "sep");
      const Value* mx = a.get(1, "maxsplit");
      int64_t maxsplit = mx ? need_int(mx, "maxsplit") : -1;
      List parts;
      if (!sep || sep->is(T::kNone)) {  // runs of whitespace, no empty strings
        std::vector<std::pair<size_t, size_t>> w;
        size_t i = 0;
        while (i < s.size()) {
          size_t len = 0;
          while (i < s.size() && py_space(decode_at(s, i, &len))) i += len;
          if (i >= s.size()) break;
          size_t b = i;
          while (i < s.size() && !py_space(decode_at(s, i, &len))) i += len;
          w.emplace_back(b, i);
        }
        for (size_t k = 0; k < w.size(); ++k) {
          if (maxsplit >= 0 && int64_t(k) == maxsplit && n == "split") {
            parts.push_back(Value::str(py_strip(s.substr(w[k].first), false, true, nullptr)));
            break;
          }
          parts.push_back(Value::str(s.substr(w[k].first, w[k].second - w[k].first)));
        }
        return Value::list(std::move(parts));
      }
      const std::string& d = need_str(sep, "split() separator");
      if (d.empty()) err("empty separator");
      size_t b = 0;
      int64_t cnt = 0;
      if (n == "rsplit" && maxsplit >= 0) {
        std::vector<std::string> rev;
        size_t e = s.size();
        while (cnt < maxsplit) {
          if (e < d.size()) break;
          const size_t p = s.rfind(d, e - d.size());
          if (p == std::string::npos) break;
          rev.push_back(s.substr(p + d.size(), e - p - d.size()));
          e = p;
          ++cnt;
        }
        parts.push_back(Value::str(s.substr(0, e)));
        for (size_t k = rev.size(); k-- > 0;) parts.push_back(Value::str(rev[k]));
        return Value::list(std::move(parts));
      }
      while (true) {
        step();
        const size_t p = s.find(d, b);
        if (p == std::string::npos || (maxsplit >= 0 && cnt == maxsplit)) break;
        parts.push_back(Value::str(s.substr(b, p - b)));
        b = p + d.size();
        ++cnt;
      }
      parts.push_back(Value::str(s.substr(b)));
      return Value::list(std::move(parts));
    }
    if (n == "join") {
      const Value* it = a.get(0, "iterable");
      if (!it) err("join() needs an argument");
      std::string out;
      bool first = true;
      for (const Value& x : iterate(*it)) {
        if (!x.is(T::kStr)) err("join() expects strings");
        if (!first) out += s;
        first = false;
        out += x.s;
        check_size(out.size());
      }
      return Value::str(std::move(out));
    }
    if (n == "find" || n == "count") {
      const std::string& x = need_str(a.get(0, "sub"), (n + "() argument").c_str());
      if (n == "find") {
        const size_t p = s.find(x);
        return Value::integer(p == std::string::npos ? -1 : int64_t(cp_count(s.substr(0, p))));
      }
      if (x.empty()) return Value::integer(int64_t(cp_count(s)) + 1);
      int64_t c = 0;
      for (size_t p = s.find(x); p != std::string::npos; p = s.find(x, p + x.size())) ++c;
      return Value::integer(c);
    }
    if (n == "isdigit" || n == "isspace" || n == "isalpha") {
      if (s.empty()) return Value::boolean(false);
      for (char c : s) {
        const bool ok = n == "isdigit"   ? std::isdigit(uint8_t(c)) != 0
                        : n == "isspace" ? std::isspace(uint8_t(c)) != 0
                                         : std::isalpha(uint8_t(c)) != 0;
        if (!ok) return Value::boolean(false);
      }
      return Value::boolean(true);
    }
    err("str has no method '" + n + "'");
  }

  std::string replace(const std::string& s, const std::string& from, const std::string& to,
                      int64_t count) {
    std::string out;
    if (from.empty()) {  // Python inserts `to` around every code point
      const auto o = cp_offsets(s);
      int64_t done = 0;
      for (size_t k = 0; k + 1 < o.size() + 1; ++k) {
        if (count < 0 || done < count) {
          out += to;
          ++done;
        }
        if (k + 1 < o.size()) out.append(s, o[k], o[k + 1] - o[k]);
        check_size(out.size());
      }
      return out;
    }
    size_t b = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
      const size_t p = s.find(from, b);
      if (p == std::string::npos) break;
      out.append(s, b, p - b);
      out += to;
      check_size(out.size());
      b = p + from.size();
      ++done;
    }
    out.append(s, b);
    check_size(out.size());
    return out;
  }

  Value str_filter(const std::string& n, const Value& v) {
    std::string s = to_str(v);
    if (n == "upper") return Value::str(ascii_upper(s));
    if (n == "lower") return Value::str(ascii_lower(s));
    if (n == "capitalize") {
      s = ascii_lower(s);
      if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = char(s[0] - 32);
      return Value::str(s);
    }
    // title: upper after a non-letter, lower otherwise
    bool prev_alpha = false;
    for (char& c : s) {
      const bool alpha = std::isalpha(uint8_t(c)) != 0;
      if (alpha) c = prev_alpha ? char(std::tolower(uint8_t(c))) : char(std::toupper(uint8_t(c)));
      prev_alpha = alpha;
    }
    return Value::str(s);
  }

  // Applies the named filter to v (map()).
  Value apply_filter(const std::string& n, const Value& v, const Args& a) {
    if (n == "trim" || n == "strip") {
      const Value* c = a.get(0, "chars");
      return Value::str(py_strip(to_str(v), true, true, c && c->is(T::kStr) ? &c->s : nullptr));
    }
    if (n == "length" || n == "count") {
      switch (v.t) {
        case T::kStr:
          return Value::integer(int64_t(cp_count(v.s)));
        case T::kList:
          return Value::integer(int64_t(v.l->size()));
        case T::kDict:
        case T::kNs:
          return Value::integer(int64_t(v.d->size()));
        case T::kUndef:
          return Value::integer(0);
        default:
          err(std::string("object of type '") + type_name(v) + "' has no len()");
      }
    }
    if (n == "upper" || n == "lower" || n == "capitalize" || n == "title") return str_filter(n, v);
    if (n == "default" || n == "d") {
      const Value* d = a.get(0, "default_value");
      const Value* b = a.get(1, "boolean");
      const bool use = v.is(T::kUndef) || (b && truthy(*b) && !truthy(v));
      if (use) return d ? *d : Value::str("");
      return v;
    }
    if (n == "join") {
      const Value* sep = a.get(0, "d");
      const Value* at = a.get(1, "attribute");
      std::string out;
      bool first = true;
      for (const Value& x : iterate(v)) {
        if (!first && sep) out += to_str(*sep);
        first = false;
        out += to_str(at ? attr_path(x, *at) : x);
        check_size(out.size());
      }
      return Value::str(std::move(out));
    }
    if (n == "replace") {
      const Value* c = a.get(2, "count");
      return Value::str(replace(to_str(v), to_str(*need(a.get(0, "old"), "replace")),
                                to_str(*need(a.get(1, "new"), "replace")),
                                c && !c->is(T::kNone) ? need_int(c, "count") : -1));
    }
    if (n == "tojson") {
      const Value* ind = a.get(0, "indent");
      std::string o;
      to_json(
          o, v,
          ind && !ind->is(T::kNone) ? int(std::clamp<int64_t>(need_int(ind, "indent"), 0, 64)) : -1,
          0, lim_.max_output);
      check_size(o.size());
      return Value::str(std::move(o));
    }
    if (n == "items") {
      if (v.is(T::kUndef)) return Value::list();
      if (!v.is(T::kDict)) err("items: expected a mapping");
      return method(v, "items", {});
    }
    if (n == "dictsort") {
      if (!v.is(T::kDict)) err("dictsort: expected a mapping");
      const Value* cs = a.get(0, "case_sensitive");
      const Value* by = a.get(1, "by");
      const Value* rev = a.get(2, "reverse");
      const bool sens = cs && truthy(*cs);
      const bool by_value = by && by->is(T::kStr) && by->s == "value";
      List items;
      for (const auto& [k, x] : *v.d) items.push_back(pair(k, x));
      auto key = [&](const Value& it) {
        Value kv = (*it.l)[by_value ? 1 : 0];
        if (!sens && kv.is(T::kStr)) kv.s = ascii_lower(kv.s);
        return kv;
      };
      std::stable_sort(items.begin(), items.end(),
                       [&](const Value& x, const Value& y) { return compare(key(x), key(y)) < 0; });
      if (rev && truthy(*rev)) std::reverse(items.begin(), items.end());
      return Value::list(std::move(items));
    }
    if (n == "first" || n == "last") {
      List l = iterate(v);
      if (l.empty()) return Value::undef(n);
      return n == "first" ? l.front() : l.back();
    }
    if (n == "string") return Value::str(to_str(v));
    if (n == "int") {
      const Value* d = a.get(0, "default");
      const Value dflt = d ? *d : Value::integer(0);
      if (v.is(T::kInt)) return v;
      if (v.is(T::kBool)) return Value::integer(v.b);
      if (v.is(T::kFloat)) {
        if (!std::isfinite(v.f) || std::fabs(v.f) >= 9.2e18) return dflt;
        return Value::integer(int64_t(v.f));
      }
      if (v.is(T::kStr)) {
        const std::string t = py_strip(v.s, true, true, nullptr);
        int64_t x = 0;
        auto r = std::from_chars(t.data(), t.data() + t.size(), x);
        if (r.ec == std::errc() && r.ptr == t.data() + t.size()) return Value::integer(x);
        char* end = nullptr;
        const double f = std::strtod(t.c_str(), &end);
        if (!t.empty() && end == t.c_str() + t.size() && std::isfinite(f) && std::fabs(f) < 9.2e18)
          return Value::integer(int64_t(f));
      }
      return dflt;
    }
    if (n == "float") {
      if (v.numeric()) return Value::real(v.num());
      if (v.is(T::kStr)) {
        const std::string t = py_strip(v.s, true, true, nullptr);
        char* end = nullptr;
        const double f = std::strtod(t.c_str(), &end);
        if (!t.empty() && end == t.c_str() + t.size()) return Value::real(f);
      }
      const Value* d = a.get(0, "default");
      return d ? *d : Value::real(0);
    }
    if (n == "list") return Value::list(iterate(v));
    if (n == "reverse") {
      if (v.is(T::kStr)) {
        const auto o = cp_offsets(v.s);
        std::string s;
        for (size_t k = o.size() - 1; k-- > 0;) s.append(v.s, o[k], o[k + 1] - o[k]);
        return Value::str(s);
      }
      List l = iterate(v);
      std::reverse(l.begin(), l.end());
      return Value::list(std::move(l));
    }
    if (n == "sort") {
      List l = iterate(v);
      const Value* rev = a.get(0, "reverse");
      const Value* at = a.get(2, "attribute");
      std::stable_sort(l.begin(), l.end(), [&](const Value& x, const Value& y) {
        Value p = at ? attr_path(x, *at) : x, q = at ? attr_path(y, *at) : y;
        if (p.is(T::kStr) && q.is(T::kStr)) {
          p.s = ascii_lower(p.s);
          q.s = ascii_lower(q.s);
        }
        return compare(p, q) < 0;
      });
      if (rev && truthy(*rev)) std::reverse(l.begin(), l.end());
      return Value::list(std::move(l));
    }
    if (n == "unique") {
      List out;
      for (const Value& x : iterate(v)) {
        bool seen = false;
        for (const Value& y : out) seen = seen || equal(x, y);
        if (!seen) out.push_back(x);
      }
      return Value::list(std::move(out));
    }
    if (n == "abs") {
      if (v.is(T::kFloat)) return Value::real(std::fabs(v.f));
      if (v.is(T::kInt) && v.i != INT64_MIN) return Value::integer(v.i < 0 ? -v.i : v.i);
      err("abs: expected a number");
    }
    if (n == "round") {
      const Value* p = a.get(0, "precision");
      const int64_t prec = p ? std::clamp<int64_t>(need_int(p, "precision"), 0, 15) : 0;
      if (!v.numeric()) err("round: expected a number");
      const double m = std::pow(10.0, double(prec));
      return Value::real(std::nearbyint(v.num() * m) / m);
    }
    if (n == "safe" || n == "e" || n == "escape") {
      if (n == "safe") return v;
      std::string o;
      for (char c : to_str(v)) {
        switch (c) {
          case '&':
            o += "&amp;";
            break;
          case '<':
            o += "&lt;";
            break;
          case '>':
            o += "&gt;";
            break;
          case '"':
            o += "&#34;";
            break;
          case '\'':
            o += "&#39;";
            break;
          default:
            o += c;
        }
      }
      return Value::str(o);
    }
    if (n == "indent") {
      const Value* w = a.get(0, "width");
      const Value* f = a.get(1, "first");
      const Value* bl = a.get(2, "blank");
      const std::string pad =
          w && w->is(T::kStr)
              ? w->s
              : std::string(size_t(std::clamp<int64_t>(w ? need_int(w, "width") : 4, 0, 256)), ' ');
      const std::string s = to_str(v);
      std::string o;
      size_t b = 0;
      bool first = true;
      while (b <= s.size()) {
        size_t e = s.find('\n', b);
        const std::string line = s.substr(b, e == std::string::npos ? std::string::npos : e - b);
        const bool blank = py_strip(line, true, true, nullptr).empty();
        if ((!first || (f && truthy(*f))) && (!blank || (bl && truthy(*bl)))) o += pad;
        o += line;
        check_size(o.size());
        if (e == std::string::npos) break;
        o += '\n';
        b = e + 1;
        first = false;
      }
      return Value::str(o);
    }
    if (n == "wordcount") {
      return Value::integer(int64_t(method(Value::str(to_str(v)), "split", {}).l->size()));
    }
    err("unknown filter '" + n + "'");
  }
  const Value* need(const Value* v, const char* what) {
    if (!v) err(std::string(what) + ": missing argument");
    return v;
  }
  // attribute="a.b" or an integer index.
  Value attr_path(const Value& v, const Value& path) {
    if (path.is(T::kInt)) return index(v, path);
    Value cur = v;
    const std::string p = to_str(path);
    size_t b = 0;
    while (true) {
      const size_t e = p.find('.', b);
      const std::string part = p.substr(b, e == std::string::npos ? std::string::npos : e - b);
      if (cur.is(T::kUndef)) return cur;
      cur = index(cur, Value::str(part));
      if (e == std::string::npos) return cur;
      b = e + 1;
    }
  }

  Value filter(const Expr& e) {
    const Value v = eval(*e.a[0]);
    Args a = eval_args(e, 1);
    const std::string& n = e.name;
    if (n == "map") {
      List out;
      const Value* at = a.get(999, "attribute");
      if (at) {
        const Value* d = a.get(999, "default");
        for (const Value& x : iterate(v)) {
          Value r = attr_path(x, *at);
          out.push_back(r.is(T::kUndef) && d ? *d : r);
        }
        return Value::list(std::move(out));
      }
      if (a.pos.empty() || !a.pos[0].is(T::kStr)) err("map: expected a filter name");
      Args rest;
      rest.pos.assign(a.pos.begin() + 1, a.pos.end());
      rest.kw = a.kw;
      for (const Value& x : iterate(v)) out.push_back(apply_filter(a.pos[0].s, x, rest));
      return Value::list(std::move(out));
    }
    if (n == "select" || n == "reject" || n == "selectattr" || n == "rejectattr") {
      const bool by_attr = n == "selectattr" || n == "rejectattr";
      const bool keep_true = n == "select" || n == "selectattr";
      const size_t t0 = by_attr ? 1 : 0;
      if (by_attr && a.pos.empty()) err(n + ": expected an attribute");
      List out;
      for (const Value& x : iterate(v)) {
        const Value subject = by_attr ? attr_path(x, a.pos[0]) : x;
        bool r = truthy(subject);
        if (a.pos.size() > t0) {
          if (!a.pos[t0].is(T::kStr)) err(n + ": expected a test name");
          List targs(a.pos.begin() + long(t0) + 1, a.pos.end());
          r = run_test(a.pos[t0].s, subject, targs);
        }
        if (r == keep_true) out.push_back(x);
      }
      return Value::list(std::move(out));
    }
    return apply_filter(n, v, a);
  }

  bool test(const Expr& e) {
    const std::string& n = e.name;
    if (n == "defined" || n == "undefined") {
      const Value v = eval(*e.a[0]);
      return (n == "defined") != v.is(T::kUndef);
    }
    const Value v = eval(*e.a[0]);
    Args a = eval_args(e, 1);
    return run_test(n, v, a.pos);
  }

  bool run_test(const std::string& n, const Value& v, const List& args) {
    auto arg = [&]() -> const Value& {
      if (args.empty()) err("test '" + n + "' needs an argument");
      return args[0];
    };
    if (n == "defined") return !v.is(T::kUndef);
    if (n == "undefined") return v.is(T::kUndef);
    if (n == "none") return v.is(T::kNone);
    if (n == "string") return v.is(T::kStr);
    if (n == "number") return v.numeric();
    if (n == "integer") return v.is(T::kInt);
    if (n == "float") return v.is(T::kFloat);
    if (n == "boolean") return v.is(T::kBool);
    if (n == "true") return v.is(T::kBool) && v.b;
    if (n == "false") return v.is(T::kBool) && !v.b;
    if (n == "mapping") return v.is(T::kDict);
    if (n == "iterable") return v.is(T::kStr) || v.is(T::kList) || v.is(T::kDict);
    if (n == "sequence") return v.is(T::kStr) || v.is(T::kList) || v.is(T::kDict);
    if (n == "callable") return v.is(T::kMacro) || v.is(T::kFn);
    if (n == "even" || n == "odd") {
      if (!v.is(T::kInt)) err("test '" + n + "' expects an integer");
      return (v.i % 2 == 0) == (n == "even");
    }
    if (n == "divisibleby") {
      const int64_t d = need_int(&arg(), "divisibleby");
      if (d == 0) err("division by zero");
      return need_int(&v, "divisibleby operand") % d == 0;
    }
    if (n == "eq" || n == "equalto" || n == "==") return equal(v, arg());
    if (n == "ne" || n == "!=") return !equal(v, arg());
    if (n == "lt" || n == "lessthan" || n == "<") return compare(v, arg()) < 0;
    if (n == "gt" || n == "greaterthan" || n == ">") return compare(v, arg()) > 0;
    if (n == "le" || n == "<=") return compare(v, arg()) <= 0;
    if (n == "ge" || n == ">=") return compare(v, arg()) >= 0;
    if (n == "in") return contains(arg(), v);
    if (n == "sameas") return equal(v, arg()) && v.t == arg().t;
    if (n == "lower" || n == "upper") {
      const std::string s = to_str(v);
      return s == (n == "lower" ? ascii_lower(s) : ascii_upper(s));
    }
    err("unknown test '" + n + "'");
  }

  const Limits& lim_;
  std::string& out_;
  std::vector<Frame> frames_;
  size_t base_ = 0;  // first frame of the running macro (0: top level)
  int depth_ = 0;
  int64_t steps_ = 0;
  int line_ = 0;
};

}  // namespace

Result<Template> Template::parse(std::string_view source, const Limits& limits) {
  if (source.size() > limits.max_source)
    return Status::error("chat template: " + std::to_string(source.size()) +
                         " bytes exceeds the limit of " + std::to_string(limits.max_source));
  try {
    auto prog = std::make_shared<Program>();
    Lexer lx(source);
    Parser p(lx.run(), *prog, limits.max_depth);
    p.run();
    Template t;
    t.prog_ = std::move(prog);
    t.limits_ = limits;
    return t;
  } catch (const JinjaError& e) {
    return Status::error("chat template: " + e.msg);
  } catch (const std::exception& e) {
    return Status::error(std::string("chat template: ") + e.what());
  }
}

Result<std::string> Template::render(const Json& context) const {
  if (!prog_) return Status::error("chat template: not parsed");
  std::string out;
  try {
    Renderer r(limits_, out);
    r.run(*prog_, context);
  } catch (const JinjaError& e) {
    return Status::error("chat template: " + e.msg);
  } catch (const BreakSignal&) {
    return Status::error("chat template: 'break' outside a loop");
  } catch (const ContinueSignal&) {
    return Status::error("chat template: 'continue' outside a loop");
  } catch (const std::exception& e) {
    return Status::error(std::string("chat template: ") + e.what());
  }
  return out;
}

bool Template::uses_variable(std::string_view name) const {
  if (!prog_) return false;
  for (const std::string& n : prog_->names)
    if (n == name) return true;
  return false;
}

Result<std::string> render(std::string_view source, const Json& context, const Limits& limits) {
  Result<Template> t = Template::parse(source, limits);
  if (!t.ok()) return t.status();
  return t.value().render(context);
}

}  // namespace g4::jinja
