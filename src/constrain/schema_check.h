// What g4 accepts in a JSON Schema before compiling it: every keyword it can enforce (or that
// only annotates), nothing it would have to ignore. XGrammar logs and skips keywords it cannot
// enforce (not, if/then/else, uniqueItems, contains, multipleOf on numbers, unknown formats,
// min/maxLength beside a pattern or format); a silently unenforced keyword would let invalid
// output through, so each is refused here with its name and JSON path. Also bounds a schema's
// size, depth and enum/const bulk, so a hostile schema cannot make compilation take long.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "core/status.h"

namespace g4 {

struct SchemaLimits {
  size_t max_nodes = 20000;    // schema objects and values, all together
  int max_depth = 64;          // nesting of schema objects
  size_t max_enum = 4096;      // entries of one enum
  size_t max_literal = 65536;  // bytes of enum/const values, all together
  int64_t max_count = 4096;    // minItems/maxItems/minLength/maxLength bounds that expand
};

// OK, or an error like "unsupported JSON Schema keyword 'uniqueItems' at $.properties.tags".
Status check_json_schema(const nlohmann::ordered_json& schema, const SchemaLimits& limits = {});

// Parses, checks and rewrites a schema into what XGrammar enforces exactly (key order kept:
// properties are generated in the schema's order):
//  - allOf of plain object schemas (type/properties/required) merged into one object;
//  - "type": "integer" or "number" without any bound: |x| <= 999999999999999, so that a
//    number's digits cannot run on until max_tokens;
//  - formats "date", "time" and "date-time" as patterns: years 0001-9999, days that fit
//    their month (no February 29), at most 9 fractional digits (XGrammar's own formats take
//    year 0000, February 31 and endless fractions);
//  - in patterns, "?" after a group as "{0,1}" (XGrammar 0.2.9 lets "(\.\d{1,3})?" match
//    digits without the dot inside JSON strings);
//  - format "ipv4" as a pattern (XGrammar's grammar admits leading zeros, which RFC 2673
//    dotted-quads and the jsonschema validator refuse).
Result<std::string> prepare_json_schema(const std::string& text, const SchemaLimits& limits = {});

// The same for a regular expression (length, counted repetitions, nesting) and a GBNF grammar
// (length, nesting), which XGrammar expands at compile time.
Status check_regex(const std::string& re);
Status check_grammar_text(const std::string& g);

}  // namespace g4
