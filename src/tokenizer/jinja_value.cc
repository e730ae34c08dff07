// Python-like values of the Jinja renderer (jinja_value.h).
#include "tokenizer/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace g4::jinja::detail {

void fail(const std::string& msg) {
  throw JinjaError{msg};
}

void Value::fail_nest() {
  fail("values nest too deeply");
}

// Whether v is or holds a namespace (storing one in a namespace could make a cycle).
bool holds_namespace(const Value& v) {
  if (v.is(T::kNs)) return true;
  if (v.is(T::kList))
    for (const Value& e : *v.l)
      if (holds_namespace(e)) return true;
  if (v.is(T::kDict))
    for (const auto& e : *v.d)
      if (holds_namespace(e.second)) return true;
  return false;
}

// Rough bytes a value holds (for the allocation budget).
uint64_t approx_bytes(const Value& v) {
  uint64_t n = 64 + v.s.size();
  if (v.is(T::kList))
    for (const Value& e : *v.l) n += approx_bytes(e);
  if (v.is(T::kDict) || v.is(T::kNs))
    for (const auto& e : *v.d) n += e.first.size() + approx_bytes(e.second);
  return n;
}

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

Value from_json(const Json& j, int depth) {
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

// Python str(value), which is what {{ }} prints.
std::string to_str(const Value& v, int depth) {
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

bool equal(const Value& a, const Value& b, int depth) {
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

}  // namespace g4::jinja::detail
