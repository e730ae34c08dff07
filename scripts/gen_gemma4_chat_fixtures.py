#!/usr/bin/env python3
"""Gemma 4 chat-template goldens: renders conversations with jinja2 from the official template
(../shared/testdata/gemma4/chat-template-31B-it.jinja) the way transformers'
apply_chat_template does (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks), and
tokenizes each rendering with the `tokenizers` package on the Gemma 4 fixture vocabulary
(tests/golden/gemma4_tok/tokenizer.json; encode(text, add_special_tokens=False)).
Regenerate with exactly (from the repository root):

    .venv/bin/python scripts/gen_gemma4_chat_fixtures.py --out tests/golden/chat_gemma4.json
"""
import argparse
import json
from pathlib import Path

import jinja2
import tokenizers
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ".venv/bin/python scripts/gen_gemma4_chat_fixtures.py --out tests/golden/chat_gemma4.json"

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name"},
        "days": {"type": "integer"}}, "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search_docs", "description": "Search the documentation index.",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string", "description": "Free-text query"},
        "mode": {"type": "string", "enum": ["fast", "exact"], "description": "Search mode"},
        "tags": {"type": "array", "description": "Filter tags",
                 "items": {"type": "string"}},
        "filters": {"type": "array", "items": {
            "type": "object", "properties": {"field": {"type": "string"},
                                             "value": {"type": "number"}},
            "required": ["field"]}},
        "limit": {"type": "integer", "nullable": True},
        "Options": {"type": "object", "description": "Extra options",
                    "properties": {"Zeta": {"type": "boolean"}, "alpha": {"type": "string"}},
                    "required": ["alpha"]}},
        "required": ["query", "mode"]},
    "response": {"type": "object", "description": "Matching documents"}}}
NO_PARAMS = {"type": "function", "function": {"name": "now", "description": "Current time"}}

USER = {"role": "user", "content": "What's the weather in Paris?"}
CALL = {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {
    "name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}]}

CASES = [
    ("single", [{"role": "user", "content": "Why is the sky blue?"}], None, True, False),
    ("single_thinking", [{"role": "user", "content": "Why is the sky blue?"}], None, True, True),
    ("system", [{"role": "system", "content": "  You are terse.\n"},
                {"role": "user", "content": "Hi"}], None, True, False),
    ("developer_thinking", [{"role": "developer", "content": "Think hard."},
                            {"role": "user", "content": "2+2?"}], None, True, True),
    ("multi_turn", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": "Bye"}], None, True, False),
    ("history_thinking_stripped", [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant",
         "content": "<|channel>thought\nBlue is common.<channel|>Blue.  "},
        {"role": "user", "content": "Another one."}], None, True, True),
    ("no_gen_prompt", [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"}],
     None, False, False),
    ("tools_thinking_system", [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Paris?"}], [WEATHER], True, True),
    ("tools_no_system", [USER], [WEATHER, NO_PARAMS], True, False),
    ("tool_schema_rich", [{"role": "user", "content": "Find docs about BPE."}], [SEARCH], True,
     False),
    ("tool_call_pending", [USER, CALL], [WEATHER], True, False),
    ("tool_call_and_response", [USER, CALL, {"role": "tool", "tool_call_id": "call_1",
                                             "content": '{"temp_c": 15}'}], [WEATHER], True,
     False),
    ("tool_round_trip_answer", [
        USER,
        dict(CALL, reasoning_content="I should call the weather tool."),
        {"role": "tool", "tool_call_id": "call_1", "content": "15 C, cloudy"},
        {"role": "assistant", "content": "It is 15 C and cloudy in Paris."},
        {"role": "user", "content": "Thanks!"}], [WEATHER], True, True),
    ("tool_reasoning_after_last_user", [
        USER, dict(CALL, reasoning_content="Need the tool."),
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}], [WEATHER], True, True),
    ("legacy_tool_responses", [
        USER, {"role": "assistant", "tool_calls": CALL["tool_calls"],
               "tool_responses": [{"name": "get_weather",
                                   "response": {"temp_c": 15, "sky": "cloudy", "ok": True}}]}],
     [WEATHER], True, False),
    ("multi_call_mixed_args", [
        {"role": "user", "content": "Do both."},
        {"role": "assistant", "tool_calls": [
            {"id": "a", "function": {"name": "search_docs", "arguments": {
                "query": "rope scaling", "mode": "exact", "tags": ["gemma", "rope"],
                "limit": None, "Options": {"alpha": "x", "Zeta": False},
                "filters": [{"field": "year", "value": 2.5}]}}},
            {"id": "b", "function": {"name": "now", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "a",
         "content": [{"type": "text", "text": "doc1, "}, {"type": "text", "text": "doc2"}]},
        {"role": "tool", "tool_call_id": "b", "content": "12:00"}], [SEARCH, NO_PARAMS], True,
     False),
    ("tool_without_ids", [
        USER, {"role": "assistant", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "cold"}], [WEATHER], True, False),
    ("multimodal_parts", [{"role": "user", "content": [
        {"type": "text", "text": " Describe these. "}, {"type": "image"},
        {"type": "audio"}, {"type": "video"}, {"type": "text", "text": "Thanks"}]}], None, True,
     False),
    ("whitespace_and_unicode", [
        {"role": "system", "content": "\u3000Réponds en français.\u00a0"},
        {"role": "user", "content": "\n\t Était-ce 東京? Привет 👋 👩‍👩‍👧 \n"},
        {"role": "assistant", "content": "  Oui.\n"},
        {"role": "user", "content": "def f(x):\n    return x  # ok\n"}], None, True, False),
    ("long_history", [{"role": "system", "content": "Sys"}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "turn %d" % i}
        for i in range(7)], None, True, False),
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--template", default=str(
        ROOT.parent / "shared/testdata/gemma4/chat-template-31B-it.jinja"))
    a = ap.parse_args()
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])

    def raise_exception(msg):
        raise jinja2.TemplateError(msg)

    env.globals["raise_exception"] = raise_exception
    tmpl = env.from_string(Path(a.template).read_text(encoding="utf-8"))
    tok = tokenizers.Tokenizer.from_file(str(ROOT / "tests/golden/gemma4_tok/tokenizer.json"))
    cases = []
    for name, msgs, tools, gen, think in CASES:
        kw = {"messages": msgs, "bos_token": "<bos>", "add_generation_prompt": gen}
        if tools is not None:
            kw["tools"] = tools
        if think:
            kw["enable_thinking"] = True
        text = tmpl.render(**kw)
        ids = tok.encode(text, add_special_tokens=False).ids
        cases.append({"name": name, "messages": msgs, "tools": tools,
                      "add_generation_prompt": gen, "enable_thinking": think, "text": text,
                      "ids": ids})
    rejected = []
    for name, msgs in [("empty", [])]:
        try:
            tmpl.render(messages=msgs, bos_token="<bos>", add_generation_prompt=True)
        except jinja2.TemplateError as e:
            rejected.append({"name": name, "messages": msgs, "error": str(e)})
    out = {"generator": "jinja2 %s (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks);"
                        " ids: tokenizers %s on tests/golden/gemma4_tok/tokenizer.json"
                        % (jinja2.__version__, tokenizers.__version__),
           "command": COMMAND, "cases": cases, "rejected": rejected}
    Path(a.out).write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print("%d renderings, %d rejections" % (len(cases), len(rejected)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
