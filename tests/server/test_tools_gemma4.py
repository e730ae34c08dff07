"""Gemma 4 tool calling end to end through `g4 serve`'s OpenAI API, with a tiny random-weight
Gemma 4 whose vocabulary is the Gemma 4 test tokenizer (tests/golden/tiny_gemma4/
tiny_gemma4_chat.gguf, scripts/gen_tiny_gemma4_chat.py): real <|turn>/<|tool_call>/<|"|>/
<|channel>/<|tool_response> markup, prompts rendered by the Gemma 4 chat code, calls produced
under the tool-call grammar, parsed back into OpenAI tool_calls, streamed as deltas, and a
tool result fed back. The weights are random, so the text means nothing: every check is on
structure and validity (finish reasons, names, arguments against the declared schema, stream
equal to non-stream, usage), never on wording.

Random weights spread probability over all 5192 tokens, so a free string (which only the
string delimiter <|"|> closes) would run to max_tokens; the requests that make calls bias
<|"|> (`logit_bias`, id 52 in the test vocabulary), which the grammar admits only where a
string opens or closes, so strings stay short. The thinking tests bias <|channel> (id 100) the
same way so the thought channel is actually opened and the budget has something to cap.
The model's context is 256 tokens; prompts here are ~110-170 tokens."""
import json
from pathlib import Path

import jsonschema
import pytest
import requests

from conftest import Server

TINY = Path(__file__).resolve().parents[1] / "golden/tiny_gemma4/tiny_gemma4_chat.gguf"
MODEL_ID = TINY.stem
SEEDS = [0, 1, 2, 3, 4]
STRING_DELIM = "52"   # <|"|>      (scripts/gen_gemma4_tokenizer_fixtures.py: tool markers 46-52)
CHANNEL_OPEN = "100"  # <|channel>

WEATHER = {"type": "object",
           "properties": {"city": {"type": "string"},
                          "days": {"type": "integer", "minimum": 1, "maximum": 7}},
           "required": ["city"]}
TIME = {"type": "object", "properties": {"timezone": {"type": "string"}},
        "required": ["timezone"]}
TOOLS = {
    "get_weather": {"type": "function", "function": {
        "name": "get_weather", "description": "Weather forecast", "parameters": WEATHER}},
    "get_time": {"type": "function", "function": {
        "name": "get_time", "description": "Local time", "parameters": TIME}},
}
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
USER = {"role": "user", "content": "Weather in Paris?"}

@pytest.fixture(scope="module")
def tiny():
    s = Server("--parallel", "2", model=TINY)
    yield s
    code = s.stop()
    assert code == 0, s.log_text()


def body(**kw):
    b = {"model": MODEL_ID, "messages": [USER], "max_tokens": 16}
    b.update(kw)
    return b


def call_body(seed, tools=("get_weather",), **kw):
    return body(seed=seed, tools=[TOOLS[t] for t in tools],
                logit_bias={STRING_DELIM: 8, **kw.pop("logit_bias", {})}, **kw)


def complete(server, b):
    """POST a non-streamed chat completion; returns the parsed 200 response."""
    r = requests.post(server.url + "/v1/chat/completions", json=b, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def complete_stream(server, b):
    """POST a streamed chat completion and rebuild the message as the openai client does:
    tool_calls deltas accumulated by index, the first one of each index carrying id, type and
    function.name, later ones argument fragments. Returns (choice, usage)."""
    r = requests.post(server.url + "/v1/chat/completions",
                      json={**b, "stream": True, "stream_options": {"include_usage": True}},
                      stream=True, timeout=120)
    assert r.status_code == 200, r.text
    content, reasoning, calls, finish, usage, done = None, None, {}, None, None, False
    for raw in r.iter_lines():  # bytes: text/event-stream names no charset, the body is UTF-8
        if not raw:
            continue
        line = raw.decode("utf-8")
        assert line.startswith("data: "), line
        data = line[len("data: "):]
        if data == "[DONE]":
            done = True
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            usage = chunk["usage"]
        for ch in chunk["choices"]:
            d = ch.get("delta", {})
            if d.get("content") is not None:
                content = (content or "") + d["content"]
            if d.get("reasoning_content") is not None:
                reasoning = (reasoning or "") + d["reasoning_content"]
            for tc in d.get("tool_calls") or []:
                i = tc["index"]
                if i not in calls:
                    assert isinstance(tc.get("id"), str) and tc["id"], tc
                    assert tc.get("type") == "function", tc
                    assert isinstance(tc["function"].get("name"), str), tc
                    calls[i] = {"id": tc["id"], "type": "function",
                                "function": {"name": tc["function"]["name"], "arguments": ""}}
                else:
                    assert "id" not in tc and "name" not in tc.get("function", {}), tc
                calls[i]["function"]["arguments"] += tc.get("function", {}).get("arguments") or ""
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
    assert done, "stream ended without [DONE]"
    assert sorted(calls) == list(range(len(calls))), f"tool_call indexes {sorted(calls)}"
    msg = {"role": "assistant", "content": content}
    if reasoning is not None:
        msg["reasoning_content"] = reasoning
    if calls:
        msg["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {"finish_reason": finish, "message": msg}, usage


def comparable(choice):
    """What must agree between a streamed and a non-streamed answer (call ids are random)."""
    m = choice["message"]
    return {"finish_reason": choice["finish_reason"],
            "content": m.get("content") or None,
            "reasoning_content": m.get("reasoning_content") or None,
            "calls": [(c["function"]["name"], c["function"]["arguments"])
                      for c in m.get("tool_calls") or []]}


def check_calls(msg, names):
    """Structure of message.tool_calls: ids, type, a name from `names`, arguments a JSON
    object. Returns the (name, arguments) pairs."""
    calls = msg.get("tool_calls") or []
    ids = [c["id"] for c in calls]
    assert len(set(ids)) == len(ids) and all(isinstance(i, str) and i for i in ids), ids
    out = []
    for c in calls:
        assert c["type"] == "function", c
        assert c["function"]["name"] in names, c
        args = json.loads(c["function"]["arguments"])
        assert isinstance(args, dict), c
        out.append((c["function"]["name"], args))
    return out


def schema_errors(calls):
    """Arguments that fail their tool's schema: [(name, args, error)]."""
    bad = []
    for name, args in calls:
        err = jsonschema.exceptions.best_match(
            jsonschema.Draft202012Validator(SCHEMAS[name]).iter_errors(args))
        if err is not None:
            bad.append((name, args, err.message))
    return bad


def settle_schema_errors(bad):
    """Every call's arguments validate. (These tests found keys that kept the whitespace the
    grammar allows before ':', {"city\\n": ...}; the argument parser now trims it.)"""
    if bad:
        pytest.fail(f"tool-call arguments fail their schema: {bad}")


# ---------------------------------------------------------------- a. tool_choice required


@pytest.mark.parametrize("parallel", [False, True], ids=["single", "parallel"])
def test_required_calls_valid_and_stream_equals_non_stream(tiny, parallel):
    bad = []
    for seed in SEEDS:
        b = call_body(seed, tool_choice="required", parallel_tool_calls=parallel,
                      max_tokens=120 if not parallel else 80)
        resp = complete(tiny, b)
        choice = resp["choices"][0]
        streamed, usage = complete_stream(tiny, b)
        assert comparable(streamed) == comparable(choice), f"seed {seed}"
        assert usage["completion_tokens"] == resp["usage"]["completion_tokens"], f"seed {seed}"
        assert usage["prompt_tokens"] == resp["usage"]["prompt_tokens"], f"seed {seed}"
        calls = check_calls(choice["message"], {"get_weather"})
        if parallel:
            # Calls may repeat until max_tokens; only the complete ones are parsed.
            assert choice["finish_reason"] in ("tool_calls", "length"), choice
            assert len(calls) >= 1, f"seed {seed}: {choice}"
        else:
            assert choice["finish_reason"] == "tool_calls", f"seed {seed}: {choice}"
            assert len(calls) == 1, f"seed {seed}: {choice}"
            assert not choice["message"].get("content"), choice
        bad += schema_errors(calls)
    settle_schema_errors(bad)


# ---------------------------------------------------------------- b. named tool_choice


def test_named_tool_choice_calls_only_that_tool(tiny):
    bad = []
    for seed in SEEDS[:3]:
        b = call_body(seed, tools=("get_weather", "get_time"), max_tokens=80,
                      tool_choice={"type": "function", "function": {"name": "get_time"}})
        choice = complete(tiny, b)["choices"][0]
        assert choice["finish_reason"] in ("tool_calls", "length"), choice
        calls = check_calls(choice["message"], {"get_time"})
        assert len(calls) >= 1, f"seed {seed}: {choice}"
        bad += schema_errors(calls)
    settle_schema_errors(bad)


# ---------------------------------------------------------------- c. full round trip


def test_tool_round_trip(tiny):
    first = complete(tiny, call_body(3, tool_choice="required", parallel_tool_calls=False,
                                     max_tokens=120))
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    (call,) = choice["message"]["tool_calls"]
    history = [USER,
               {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": call["id"], "content": "{\"temp_c\": 15}"}]
    # tool_choice "none" leaves the declarations out of the prompt (agent/chat_format.cc,
    # gemma4_tools), so the history is measured against the bare question under "none" too.
    bare = complete(tiny, body(seed=3, tools=[TOOLS["get_weather"]], tool_choice="none",
                               max_tokens=1))["usage"]["prompt_tokens"]
    for choice_, stream in (("none", False), ("none", True), ("auto", False)):
        b = body(seed=3, messages=history, tools=[TOOLS["get_weather"]], tool_choice=choice_,
                 max_tokens=16)
        if stream:
            second, usage = complete_stream(tiny, b)
        else:
            resp = complete(tiny, b)
            second, usage = resp["choices"][0], resp["usage"]
        msg = second["message"]
        assert msg.get("content") is None or isinstance(msg["content"], str), second
        assert usage["completion_tokens"] <= 16, usage
        if choice_ == "none":
            assert not msg.get("tool_calls"), second
            assert second["finish_reason"] in ("stop", "length"), second
            # the call and its result are in the prompt: well over the bare question
            assert usage["prompt_tokens"] > bare + 10, (usage, bare)
        else:
            # declarations, call and result: longer than request 1 (declarations + question)
            assert usage["prompt_tokens"] > first["usage"]["prompt_tokens"], (usage, first["usage"])


# ---------------------------------------------------------------- d. thinking


def test_thinking_then_one_call(tiny):
    bad, thought = [], 0
    for seed in SEEDS:
        b = call_body(seed, tool_choice="required", parallel_tool_calls=False, max_tokens=120,
                      chat_template_kwargs={"enable_thinking": True}, thinking_budget=5,
                      logit_bias={CHANNEL_OPEN: 8})
        resp = complete(tiny, b)
        choice = resp["choices"][0]
        assert choice["finish_reason"] == "tool_calls", f"seed {seed}: {choice}"
        msg = choice["message"]
        if "reasoning_content" in msg:
            assert isinstance(msg["reasoning_content"], str), msg
            thought += 1
        calls = check_calls(msg, {"get_weather"})
        assert len(calls) == 1, f"seed {seed}: {choice}"
        streamed, _ = complete_stream(tiny, b)
        assert comparable(streamed) == comparable(choice), f"seed {seed}"
        bad += schema_errors(calls)
    assert thought >= 1, "no answer opened the thought channel"
    settle_schema_errors(bad)


ANSWER = {"type": "object",
          "properties": {"ok": {"type": "boolean"},
                         "n": {"type": "integer", "minimum": 0, "maximum": 9}},
          "required": ["ok", "n"], "additionalProperties": False}


def test_thinking_with_json_schema(tiny):
    thought = 0
    for seed in SEEDS:
        b = body(seed=seed, max_tokens=60, messages=[{"role": "user", "content": "Answer in JSON"}],
                 chat_template_kwargs={"enable_thinking": True}, thinking_budget=5,
                 logit_bias={CHANNEL_OPEN: 8},
                 response_format={"type": "json_schema",
                                  "json_schema": {"name": "x", "schema": ANSWER}})
        choice = complete(tiny, b)["choices"][0]
        assert choice["finish_reason"] == "stop", f"seed {seed}: {choice}"
        msg = choice["message"]
        jsonschema.validate(json.loads(msg["content"]), ANSWER)
        if "reasoning_content" in msg:
            assert isinstance(msg["reasoning_content"], str), msg
            thought += 1
        streamed, _ = complete_stream(tiny, b)
        assert comparable(streamed) == comparable(choice), f"seed {seed}"
    assert thought >= 1, "no answer opened the thought channel"


# ---------------------------------------------------------------- e. bad input


def error_of(server, b):
    r = requests.post(server.url + "/v1/chat/completions", json=b, timeout=60)
    assert r.status_code == 400, (r.status_code, r.text)
    return r.json()["error"]


@pytest.mark.parametrize("stream", [False, True])
def test_tool_result_without_call_is_400(tiny, stream):
    call = {"id": "call_abc", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}
    b = body(stream=stream, tools=[TOOLS["get_weather"]], messages=[
        USER, {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_nowhere_17", "content": "{\"temp_c\": 15}"}])
    err = error_of(tiny, b)
    assert "call_nowhere_17" in err["message"], err


def test_tool_without_name_is_400(tiny):
    b = body(tools=[{"type": "function", "function": {"parameters": WEATHER}}])
    err = error_of(tiny, b)
    assert "tools[0].function.name" in err["message"], err
