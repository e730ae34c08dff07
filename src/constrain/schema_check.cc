#include "constrain/schema_check.h"

#include <algorithm>
#include <set>

namespace g4 {

namespace {

using json = nlohmann::ordered_json;

// Keywords XGrammar 0.2.9 enforces (json_schema_converter.cc) and annotations it may skip.
const std::set<std::string>& enforced() {
  static const std::set<std::string> k = {"type",
                                          "properties",
                                          "required",
                                          "additionalProperties",
                                          "items",
                                          "prefixItems",
                                          "minItems",
                                          "maxItems",
                                          "enum",
                                          "const",
                                          "anyOf",
                                          "oneOf",
                                          "allOf",
                                          "$ref",
                                          "$defs",
                                          "definitions",
                                          "minimum",
                                          "maximum",
                                          "exclusiveMinimum",
                                          "exclusiveMaximum",
                                          "minLength",
                                          "maxLength",
                                          "pattern",
                                          "format",
                                          "minProperties",
                                          "maxProperties",
                                          "patternProperties",
                                          "propertyNames",
                                          "multipleOf",
                                          "unevaluatedProperties",
                                          "unevaluatedItems"};
  return k;
}
const std::set<std::string>& annotations() {
  static const std::set<std::string> k = {"title",      "description", "default",   "examples",
                                          "deprecated", "readOnly",    "writeOnly", "$comment",
                                          "$schema",    "$id",         "$anchor",   "strict"};
  return k;
}
const std::set<std::string>& formats() {  // XGrammar's built-in string formats
  static const std::set<std::string> k = {"email",         "date",
                                          "time",          "date-time",
                                          "duration",      "ipv4",
                                          "ipv6",          "hostname",
                                          "uuid",          "uri",
                                          "uri-reference", "uri-template",
                                          "json-pointer",  "relative-json-pointer"};
  return k;
}

// Keys whose value is a map of names to schemas, a list of schemas, or one schema.
bool is_schema_map(const std::string& k) {
  return k == "properties" || k == "$defs" || k == "definitions" || k == "patternProperties";
}
bool is_schema_list(const std::string& k) {
  return k == "anyOf" || k == "oneOf" || k == "allOf" || k == "prefixItems";
}
bool is_schema_value(const std::string& k) {
  return k == "items" || k == "additionalProperties" || k == "propertyNames" ||
         k == "unevaluatedProperties" || k == "unevaluatedItems";
}

struct Walker {
  const SchemaLimits& lim;
  size_t nodes = 0, literal = 0;

  Status fail(const std::string& what, const std::string& path) {
    return Status::error(what + " at " + path);
  }

  size_t count(const json& v) {  // nodes and bytes of a literal value (enum/const)
    if (v.is_string()) return v.get_ref<const std::string&>().size() + 1;
    size_t n = 1;
    if (v.is_structured())
      for (const auto& x : v) n += count(x);
    return n;
  }

  Status walk(const json& s, const std::string& path, int depth) {
    if (++nodes > lim.max_nodes)
      return fail("schema has more than " + std::to_string(lim.max_nodes) + " nodes", path);
    if (depth > lim.max_depth)
      return fail("schema nests deeper than " + std::to_string(lim.max_depth) + " levels", path);
    if (s.is_boolean()) return Status();
    if (!s.is_object()) return fail("a schema must be an object or a boolean", path);
    const bool has_len = s.contains("minLength") || s.contains("maxLength");
    for (const auto& [k, v] : s.items()) {
      const std::string at = path + "." + k;
      if (annotations().count(k)) continue;
      if (!enforced().count(k))
        return fail("unsupported JSON Schema keyword '" + k + "' (g4 cannot enforce it)", path);
      if (k == "format") {
        if (!v.is_string()) return fail("'format' must be a string", path);
        if (!formats().count(v.get<std::string>()))
          return fail("unsupported string format '" + v.get<std::string>() + "'", path);
        if (has_len)
          return fail("minLength/maxLength beside 'format' cannot be enforced together", path);
      } else if (k == "pattern") {
        if (!v.is_string()) return fail("'pattern' must be a string", path);
        if (has_len)
          return fail("minLength/maxLength beside 'pattern' cannot be enforced together", path);
        if (Status st = check_regex(v.get<std::string>()); !st.ok()) return fail(st.message(), at);
      } else if (k == "multipleOf") {
        const bool integer = s.contains("type") && s["type"] == "integer";
        if (!integer || !v.is_number_integer())
          return fail("'multipleOf' is enforced for integers only", path);
      } else if (k == "minItems" || k == "maxItems" || k == "minLength" || k == "maxLength" ||
                 k == "minProperties" || k == "maxProperties") {
        if (!v.is_number_integer() || v.get<int64_t>() < 0)
          return fail("'" + k + "' must be a non-negative integer", path);
        const bool expands = k != "minProperties" && k != "maxProperties";
        if (expands && v.get<int64_t>() > lim.max_count)
          return fail("'" + k + "' above " + std::to_string(lim.max_count) + " is not supported",
                      path);
      } else if (k == "enum") {
        if (!v.is_array() || v.empty()) return fail("'enum' must be a non-empty array", path);
        if (v.size() > lim.max_enum)
          return fail("'enum' has more than " + std::to_string(lim.max_enum) + " values", path);
        literal += count(v);
      } else if (k == "const") {
        literal += count(v);
      } else if (k == "type") {
        static const std::set<std::string> types = {"object", "array",   "string", "integer",
                                                    "number", "boolean", "null"};
        const auto ok = [&](const json& t) {
          return t.is_string() && types.count(t.get<std::string>()) != 0;
        };
        if (!(ok(v) || (v.is_array() && !v.empty() &&
                        std::all_of(v.begin(), v.end(), [&](const json& t) { return ok(t); }))))
          return fail(
              "'type' must be one of object, array, string, integer, number, boolean, "
              "null (or a list of them)",
              path);
      } else if (k == "required") {
        if (!v.is_array() ||
            !std::all_of(v.begin(), v.end(), [](const json& x) { return x.is_string(); }))
          return fail("'required' must be an array of strings", path);
      } else if (k == "$ref") {
        if (!v.is_string()) return fail("'$ref' must be a string", path);
        const std::string& r = v.get_ref<const std::string&>();
        if (r != "#" && r.rfind("#/", 0) != 0)
          return fail("only local '$ref's (#/...) are supported, not '" + r + "'", path);
      } else if (is_schema_map(k)) {
        if (!v.is_object()) return fail("'" + k + "' must be an object of schemas", path);
        for (const auto& [name, sub] : v.items())
          if (Status st = walk(sub, at + "." + name, depth + 1); !st.ok()) return st;
      } else if (is_schema_list(k)) {
        if (!v.is_array() || v.empty()) return fail("'" + k + "' must be a non-empty array", path);
        for (size_t i = 0; i < v.size(); ++i)
          if (Status st = walk(v[i], at + "[" + std::to_string(i) + "]", depth + 1); !st.ok())
            return st;
      } else if (is_schema_value(k)) {
        if (Status st = walk(v, at, depth + 1); !st.ok()) return st;
      }
      if (literal > lim.max_literal)
        return fail("enum/const values exceed " + std::to_string(lim.max_literal) + " bytes", path);
    }
    return Status();
  }
};

// Largest number in a regex's counted repetitions {n}, {n,}, {n,m}; -1 when malformed.
int64_t max_repeat(const std::string& re) {
  int64_t mx = 0;
  for (size_t i = 0; i < re.size(); ++i) {
    if (re[i] == '\\') {
      ++i;
      continue;
    }
    if (re[i] != '{') continue;
    int64_t cur = 0;
    for (size_t j = i + 1; j < re.size() && re[j] != '}'; ++j) {
      if (re[j] >= '0' && re[j] <= '9') {
        cur = std::min<int64_t>(cur * 10 + (re[j] - '0'), int64_t(1) << 40);
        mx = std::max(mx, cur);
      } else {
        cur = 0;
      }
    }
  }
  return mx;
}

int max_nesting(const std::string& s) {
  int d = 0, mx = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '(') {
      mx = std::max(mx, ++d);
    } else if (s[i] == ')') {
      d = std::max(0, d - 1);
    }
  }
  return mx;
}

constexpr const char* kIpv4Pattern =
    "^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    "(\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$";

constexpr int64_t kUnboundedLimit = 999999999999999;
// RFC 3339 dates and times as patterns XGrammar enforces exactly. Its own formats accept year
// 0000 and February 31 (which validators refuse) and any number of fractional digits (a model
// wrote digits until max_tokens): here years are 0001-9999, days fit their month (February
// stops at 28: leap days are never produced), fractions have at most 9 digits.
#define G4_DATE                                                                                  \
  "(\\d{3}[1-9]|\\d{2}[1-9]\\d|\\d[1-9]\\d{2}|[1-9]\\d{3})-((0[13578]|1[02])-(0[1-9]|[12]\\d|3[" \
  "01])|"                                                                                        \
  "(0[469]|11)-(0[1-9]|[12]\\d|30)|02-(0[1-9]|1\\d|2[0-8]))"
#define G4_TIME \
  "([01]\\d|2[0-3]):[0-5]\\d:([0-5]\\d|60)(\\.\\d{1,9})?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d)"
constexpr const char* kDatePattern = "^" G4_DATE "$";
constexpr const char* kTimePattern = "^" G4_TIME "$";
constexpr const char* kDateTimePattern = "^" G4_DATE "T" G4_TIME "$";
#undef G4_DATE
#undef G4_TIME

// XGrammar 0.2.9 mishandles an optional group holding a counted repetition in a JSON string's
// pattern: "(\\.\\d{1,3})?" lets the digits through without the dot (its regex path for whole
// outputs is right). "{0,1}" after the group is handled correctly, so every "?" quantifier
// right after a group becomes "{0,1}" (not inside a class, not escaped, not a lazy "??").
std::string fix_optional_groups(const std::string& re) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < re.size(); ++i) {
    const char c = re[i];
    if (c == '\\' && i + 1 < re.size()) {
      out += c;
      out += re[++i];
      continue;
    }
    if (in_class) {
      in_class = c != ']';
    } else if (c == '[') {
      in_class = true;
      if (i + 1 < re.size() && re[i + 1] == ']') out += re[++i];  // "[]...]": ']' is literal
    } else if (c == ')' && i + 1 < re.size() && re[i + 1] == '?' &&
               !(i + 2 < re.size() && re[i + 2] == '?')) {
      out += "){0,1}";
      ++i;
      continue;
    }
    out += c;
  }
  return out;
}

// Rewrites one schema node (then its subschemas); errors name the JSON path.
Status rewrite(json& s, const std::string& path, int depth) {
  if (depth > 256) return Status::error("schema nests too deeply at " + path);
  if (!s.is_object()) return Status();
  if (s.contains("format") && s["format"].is_string() && !s.contains("pattern")) {
    const std::string f = s["format"];
    const char* pattern = f == "ipv4"        ? kIpv4Pattern
                          : f == "date"      ? kDatePattern
                          : f == "time"      ? kTimePattern
                          : f == "date-time" ? kDateTimePattern
                                             : nullptr;
    if (pattern) {
      s.erase("format");
      s["pattern"] = pattern;
    }
  }
  // An integer or number without bounds gets |x| < 10^15 (exact in a double), so that its
  // digits cannot run on until max_tokens.
  if (s.contains("type") && (s["type"] == "integer" || s["type"] == "number") &&
      !s.contains("minimum") && !s.contains("maximum") && !s.contains("exclusiveMinimum") &&
      !s.contains("exclusiveMaximum") && !s.contains("multipleOf")) {
    s["minimum"] = -kUnboundedLimit;
    s["maximum"] = kUnboundedLimit;
  }
  if (s.contains("pattern") && s["pattern"].is_string())
    s["pattern"] = fix_optional_groups(s["pattern"].get<std::string>());
  if (s.contains("allOf") && s["allOf"].is_array()) {
    static const std::set<std::string> plain = {"type",  "properties",  "required",
                                                "title", "description", "$comment"};
    json merged_props = s.contains("properties") ? s["properties"] : json::object();
    json merged_req = s.contains("required") ? s["required"] : json::array();
    if (!merged_props.is_object() || !merged_req.is_array())
      return Status::error("'properties'/'required' malformed at " + path);
    for (const json& b : s["allOf"]) {
      bool ok = b.is_object() && (!b.contains("type") || b["type"] == "object");
      if (ok)
        for (const auto& [k, v] : b.items()) ok = ok && plain.count(k) != 0;
      if (!ok)
        return Status::error(
            "allOf is supported for plain object schemas (type object, properties, required) "
            "only, at " +
            path);
      if (b.contains("properties")) {
        if (!b["properties"].is_object())
          return Status::error("'properties' must be an object at " + path + ".allOf");
        for (const auto& [name, sub] : b["properties"].items()) {
          if (merged_props.contains(name))
            return Status::error("allOf branches both define property '" + name + "' at " + path);
          merged_props[name] = sub;
        }
      }
      if (b.contains("required")) {
        if (!b["required"].is_array())
          return Status::error("'required' must be an array at " + path + ".allOf");
        for (const json& r : b["required"]) merged_req.push_back(r);
      }
    }
    if (s.contains("type") && s["type"] != "object")
      return Status::error("allOf of objects under a non-object 'type' at " + path);
    s.erase("allOf");
    s["type"] = "object";
    s["properties"] = merged_props;
    if (!merged_req.empty()) s["required"] = merged_req;
  }
  for (auto& [k, v] : s.items()) {
    const std::string at = path + "." + k;
    if (is_schema_map(k) && v.is_object()) {
      for (auto& [name, sub] : v.items())
        if (Status st = rewrite(sub, at + "." + name, depth + 1); !st.ok()) return st;
    } else if (is_schema_list(k) && v.is_array()) {
      for (size_t i = 0; i < v.size(); ++i)
        if (Status st = rewrite(v[i], at + "[" + std::to_string(i) + "]", depth + 1); !st.ok())
          return st;
    } else if (is_schema_value(k)) {
      if (Status st = rewrite(v, at, depth + 1); !st.ok()) return st;
    }
  }
  return Status();
}

}  // namespace

Result<std::string> prepare_json_schema(const std::string& text, const SchemaLimits& limits) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return Status::error("the JSON schema is not valid JSON");
  // Bounds first (the rewrite walks the same tree), then the rewrite, then the keyword check.
  if (Status s = check_json_schema(j, limits); !s.ok()) {
    // allOf branches may use keywords only the merge understands; everything else is final.
    if (s.message().find("allOf") == std::string::npos) return s;
  }
  if (Status s = rewrite(j, "$", 0); !s.ok()) return s;
  if (Status s = check_json_schema(j, limits); !s.ok()) return s;
  return j.dump();
}

Status check_json_schema(const nlohmann::ordered_json& schema, const SchemaLimits& limits) {
  Walker w{limits};
  return w.walk(schema, "$", 0);
}

namespace {
// Length, counted repetitions and nesting: what XGrammar expands at compile time.
Status check_bounded(const char* what, const std::string& text, size_t max_bytes) {
  if (text.size() > max_bytes)
    return Status::error(std::string(what) + " longer than " + std::to_string(max_bytes) +
                         " bytes");
  if (max_repeat(text) > 1000)
    return Status::error(std::string(what) + " repetition counts above 1000 are not supported");
  if (max_nesting(text) > 64)
    return Status::error(std::string(what) + " nests groups deeper than 64");
  return Status();
}
}  // namespace

Status check_regex(const std::string& re) {
  return check_bounded("regex", re, 16384);
}

Status check_grammar_text(const std::string& g) {
  return check_bounded("grammar", g, 65536);
}

}  // namespace g4
