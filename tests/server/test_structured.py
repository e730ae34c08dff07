"""Structured output through `g4 serve` with the real default model: every constrained answer
parses and validates, by construction. 42 JSON schemas of the kinds real APIs use (nested
objects, arrays of objects, enums, anyOf/oneOf, recursive $ref, formats, patterns, bounds),
each sampled 5 times at temperature 1.0 (n=5 in one request), validated with the `jsonschema`
package (formats checked); regex and choice constraints checked with Python's `re`; Ollama's
`format`; and the CLI giving the server's exact output for the same seed."""
import json
import re
import subprocess

import jsonschema
import pytest

from conftest import G4_BIN, MODEL, MODEL_ID, SANITIZED, post

pytestmark = pytest.mark.skipif(SANITIZED, reason="sampling runs in the Release build")

S = {"type": "string", "maxLength": 24}  # free text, bounded so a 5-sample run stays short
ID = {"type": "string", "pattern": "^[a-z]{2,8}-[0-9]{1,4}$"}
ADDRESS = {"type": "object", "properties": {"street": S, "city": S,
                                            "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                                            "country": {"enum": ["US", "FR", "DE", "JP"]}},
           "required": ["street", "city", "zip", "country"], "additionalProperties": False}
LINKED = {"$defs": {"node": {"type": "object", "properties": {
    "value": {"type": "integer", "minimum": 0, "maximum": 9},
    "next": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/node"}]}},
    "required": ["value", "next"], "additionalProperties": False}}, "$ref": "#/$defs/node"}
EMAIL = {"type": "string", "pattern": "^[a-z]{1,8}@[a-z]{1,8}\\.(com|org|net)$"}

SCHEMAS = {
    "string": S,
    "integer_bounds": {"type": "integer", "minimum": -5, "maximum": 5},
    "number": {"type": "number", "minimum": 0, "maximum": 1},
    "boolean": {"type": "boolean"},
    "null": {"type": "null"},
    "enum_strings": {"enum": ["low", "medium", "high"]},
    "enum_mixed": {"enum": [1, "two", None, True]},
    "const": {"const": {"ok": True}},
    "type_list": {"type": ["string", "integer"], "maxLength": 10, "minimum": 0, "maximum": 99},
    "simple_object": {"type": "object", "properties": {"name": S, "age": {"type": "integer", "minimum": 0, "maximum": 130}},
                      "required": ["name", "age"]},
    "optional_fields": {"type": "object", "properties": {"a": S, "b": {"type": "integer", "maximum": 9999, "minimum": -9999}, "c": {"type": "boolean"}},
                        "required": ["a"]},
    "no_additional": {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 100}}, "required": ["x"],
                      "additionalProperties": False},
    "additional_schema": {"type": "object", "properties": {"id": ID}, "required": ["id"],
                          "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 999},
                          "maxProperties": 3},
    "nested_object": {"type": "object", "properties": {"user": {"type": "object", "properties": {
        "id": ID, "profile": {"type": "object", "properties": {"bio": S, "verified": {"type": "boolean"}},
                              "required": ["bio", "verified"]}}, "required": ["id", "profile"]}},
        "required": ["user"]},
    "address": ADDRESS,
    "array_of_strings": {"type": "array", "items": S, "minItems": 1, "maxItems": 4},
    "array_of_objects": {"type": "array", "items": {"type": "object", "properties": {
        "sku": ID, "qty": {"type": "integer", "minimum": 1, "maximum": 9}}, "required": ["sku", "qty"]},
        "minItems": 1, "maxItems": 3},
    "tuple_prefix_items": {"type": "array", "prefixItems": [{"type": "integer", "minimum": 0, "maximum": 99}, S, {"type": "boolean"}],
                           "items": False},
    "array_bounds": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
                     "minItems": 2, "maxItems": 2},
    "any_of": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 9}, {"type": "object", "properties": {"error": S}, "required": ["error"]}]},
    "one_of_discriminated": {"oneOf": [
        {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number", "minimum": 0, "maximum": 10}},
         "required": ["kind", "r"], "additionalProperties": False},
        {"type": "object", "properties": {"kind": {"const": "square"}, "side": {"type": "integer", "minimum": 1, "maximum": 10}},
         "required": ["kind", "side"], "additionalProperties": False}]},
    "all_of_objects": {"allOf": [{"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["a"]},
                                 {"type": "object", "properties": {"b": S}, "required": ["b"]}]},
    "recursive_linked_list": LINKED,
    "defs_reuse": {"$defs": {"addr": ADDRESS}, "type": "object", "properties": {
        "home": {"$ref": "#/$defs/addr"}, "work": {"$ref": "#/$defs/addr"}}, "required": ["home", "work"]},
    "format_date": {"type": "string", "format": "date"},
    "format_date_time": {"type": "string", "format": "date-time"},
    "format_time": {"type": "string", "format": "time"},
    "format_uuid": {"type": "string", "format": "uuid"},
    "email_pattern": EMAIL,
    "format_ipv4": {"type": "string", "format": "ipv4"},
    "pattern_phone": {"type": "string", "pattern": "^\\+[1-9][0-9]{7,12}$"},
    "pattern_hex_color": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
    "string_lengths": {"type": "string", "minLength": 3, "maxLength": 6},
    "integer_exclusive": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 4},
    "integer_multiple": {"type": "integer", "multipleOf": 5, "minimum": 0, "maximum": 100},
    "weather_tool_args": {"type": "object", "properties": {
        "location": S, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location", "unit"], "additionalProperties": False},
    "calendar_event": {"type": "object", "properties": {
        "title": S, "start": {"type": "string", "format": "date-time"},
        "attendees": {"type": "array", "items": EMAIL, "maxItems": 3},
        "priority": {"enum": ["low", "normal", "urgent"]}},
        "required": ["title", "start", "attendees", "priority"], "additionalProperties": False},
    "invoice": {"type": "object", "properties": {
        "invoice_id": ID, "date": {"type": "string", "format": "date"},
        "lines": {"type": "array", "items": {"type": "object", "properties": {
            "desc": S, "amount": {"type": "number", "minimum": 0, "maximum": 1000}},
            "required": ["desc", "amount"], "additionalProperties": False}, "minItems": 1, "maxItems": 3},
        "paid": {"type": "boolean"}}, "required": ["invoice_id", "date", "lines", "paid"]},
    "sentiment": {"type": "object", "properties": {
        "label": {"enum": ["positive", "negative", "neutral"]},
        "score": {"type": "number", "minimum": -1, "maximum": 1}}, "required": ["label", "score"]},
    "nullable_field": {"type": "object", "properties": {"middle_name": {"anyOf": [S, {"type": "null"}]}},
                       "required": ["middle_name"]},
    "map_of_counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 99},
                      "maxProperties": 3},
    "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
                                          "minItems": 2, "maxItems": 2}, "minItems": 2, "maxItems": 2},
    "search_query": {"type": "object", "properties": {
        "query": S, "filters": {"type": "object", "properties": {
            "since": {"type": "string", "format": "date"}, "tags": {"type": "array", "items": S, "maxItems": 2}},
            "additionalProperties": False}, "limit": {"type": "integer", "minimum": 1, "maximum": 50}},
        "required": ["query", "limit"]},
}
assert len(SCHEMAS) >= 40
CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER


def ask(server, body):
    status, out, _ = post(server.url + "/v1/chat/completions", dict(
        {"model": MODEL_ID, "messages": [{"role": "user", "content": "Reply in JSON."}],
         "temperature": 1.0, "n": 5, "seed": 1234, "max_tokens": 400}, **body))
    assert status == 200, out
    return out["choices"]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_json_schema_outputs_validate(server, name):
    schema = SCHEMAS[name]
    choices = ask(server, {"response_format": {"type": "json_schema", "json_schema": {
        "name": name, "schema": schema, "strict": True}}})
    assert len(choices) == 5
    for c in choices:
        text = c["message"]["content"]
        assert c["finish_reason"] == "stop", (name, text)
        value = json.loads(text)
        jsonschema.validate(value, schema, format_checker=CHECKER)


# Unbounded outputs (any JSON object, XGrammar's email format, a regex with `+`): the model
# may go on to max_tokens, which the answer reports as finish_reason "length" (a truncated,
# never an invalid, answer); every answer that finished is valid. Bounded schemas above must all
# finish.
def finished_ones(choices):
    done = [c for c in choices if c["finish_reason"] == "stop"]
    assert all(c["finish_reason"] in ("stop", "length") for c in choices)
    return done


def test_json_object(server):
    for c in finished_ones(ask(server, {"response_format": {"type": "json_object"}})):
        assert isinstance(json.loads(c["message"]["content"]), dict)


def test_unbounded_format_email(server):
    schema = {"type": "string", "format": "email"}
    for c in finished_ones(ask(server, {"response_format": {"type": "json_schema", "json_schema": {
            "name": "e", "schema": schema}}})):
        jsonschema.validate(json.loads(c["message"]["content"]), schema, format_checker=CHECKER)


REGEXES = [r"\(\d{3}\) \d{3}-\d{4}", r"[A-Z][a-z]{2,9}( [A-Z][a-z]{2,9})?", r"(yes|no|maybe)",
           r"\d{4}-\d{2}-\d{2}", r"[a-z]{1,10}@[a-z]{1,10}\.(com|org)"]


@pytest.mark.parametrize("regex", REGEXES)
def test_regex_outputs_match(server, regex):
    for c in ask(server, {"regex": regex}):
        assert c["finish_reason"] == "stop"
        assert re.fullmatch(regex, c["message"]["content"]), (regex, c["message"]["content"])


def test_choice_outputs_are_choices(server):
    opts = ["red", "green", "sky blue", "none of these"]
    got = {c["message"]["content"] for c in ask(server, {"choice": opts})}
    assert got <= set(opts)


def test_grammar(server):
    g = 'root ::= "(" expr ")"\nexpr ::= num (("+" | "*") num){0,3}\nnum ::= [1-9] [0-9]{0,2}\n'
    for c in ask(server, {"grammar": g}):
        assert re.fullmatch(r"\([1-9][0-9]{0,2}([+*][1-9][0-9]{0,2}){0,3}\)", c["message"]["content"])


def test_openai_client_parse(server):
    """The openai client's structured-output helper (pydantic model -> strict json_schema)."""
    import openai
    from pydantic import BaseModel, Field

    class City(BaseModel):
        name: str = Field(max_length=30)
        country_code: str = Field(pattern="^[A-Z]{2}$")
        population: int = Field(ge=0, le=50_000_000)

    c = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    r = c.chat.completions.parse(model=MODEL_ID, response_format=City, temperature=1.0, seed=9,
                                 max_tokens=200,
                                 messages=[{"role": "user", "content": "A city, as JSON."}])
    city = r.choices[0].message.parsed
    assert isinstance(city, City)


def test_ollama_format(server):
    import ollama
    c = ollama.Client(host=server.url)
    schema = SCHEMAS["sentiment"]
    r = c.chat(model=MODEL_ID, messages=[{"role": "user", "content": "Sentiment of 'great!'"}],
               format=schema, options={"temperature": 1.0, "seed": 3, "num_predict": 200})
    jsonschema.validate(json.loads(r.message.content), schema)
    r = c.generate(model=MODEL_ID, prompt="A JSON object:", format="json",
                   options={"temperature": 1.0, "seed": 4, "num_predict": 200})
    assert isinstance(json.loads(r.response), dict)


def test_cli_equals_server_for_the_same_seed(server, tmp_path):
    """`g4 run --json-schema` and the server give the same constrained text for one seed."""
    schema = SCHEMAS["calendar_event"]
    f = tmp_path / "s.json"
    f.write_text(json.dumps(schema))
    prompt = "An event as JSON:"
    cli = subprocess.run([G4_BIN, "run", prompt, "-m", MODEL, "--raw", "--json-schema", str(f),
                          "--temp", "1", "--top-k", "0", "--top-p", "1", "--min-p", "0",
                          "--seed", "77", "-n", "300", "--ctx", "4096"],
                         check=True, capture_output=True, text=True).stdout
    status, out, _ = post(server.url + "/v1/completions", {
        "model": MODEL_ID, "prompt": prompt, "temperature": 1.0, "top_k": 0, "top_p": 1,
        "min_p": 0, "seed": 77, "max_tokens": 300,
        "response_format": {"type": "json_schema", "json_schema": {"name": "e", "schema": schema}}})
    assert status == 200, out
    text = out["choices"][0]["text"]
    assert cli.rstrip("\n") == prompt + text
    jsonschema.validate(json.loads(text), schema, format_checker=CHECKER)
