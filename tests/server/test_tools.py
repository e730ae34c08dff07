"""Tool calling through `g4 serve` with the real default model (Gemma 3 270M, g4's JSON
convention for Gemma 3: docs/ARCHITECTURE.md "Agents") and the clients people use: the `openai`
client (streamed and not), LangChain (`bind_tools` and an agent loop that runs a real Python
function and sends its result back), and the `ollama` client. Every call must name a declared
tool and its arguments must validate against that tool's schema (the `jsonschema` package),
because decoding is constrained from the call's first character. The 270M model is weak, so
calls are asked for with tool_choice "required" or a named tool where the test needs one; with
"auto" only the validity of whatever it chose is checked."""
import json

import jsonschema
import ollama
import pytest
from openai import OpenAI

from conftest import MODEL_ID, SANITIZED, post

pytestmark = pytest.mark.skipif(SANITIZED, reason="sampling runs in the Release build")

WEATHER = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 30},
    "unit": {"enum": ["celsius", "fahrenheit"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city", "unit"], "additionalProperties": False}
TIME = {"type": "object", "properties": {"timezone": {"type": "string", "pattern": "^[A-Z][a-z]+/[A-Z][a-z]+$"}},
        "required": ["timezone"], "additionalProperties": False}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                      "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "description": "Local time in a timezone",
                                      "parameters": TIME}},
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "system", "content": "You are a helpful assistant."},
       {"role": "user", "content": "What is the weather like in Paris today?"}]


def client(server):
    return OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)


def check_calls(calls, allowed=None):
    """Each call names a declared tool and its arguments validate; returns (name, args) pairs."""
    out = []
    for c in calls:
        name, args = c.function.name, json.loads(c.function.arguments)
        assert name in (allowed or SCHEMAS), name
        jsonschema.validate(args, SCHEMAS[name])
        assert c.id and c.type == "function"
        out.append((name, args))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_required_call_streamed_equals_unstreamed(server, seed):
    kw = dict(model=MODEL_ID, messages=ASK, tools=TOOLS, tool_choice="required",
              parallel_tool_calls=False, seed=seed, temperature=1.0, max_tokens=120)
    r = client(server).chat.completions.create(**kw)
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls", ch
    assert ch.message.content is None
    calls = check_calls(ch.message.tool_calls)
    assert len(calls) == 1
    # The same through the stream, accumulated as the openai client's users do.
    acc, finish = {}, None
    for chunk in client(server).chat.completions.create(stream=True, **kw):
        if not chunk.choices:
            continue
        d = chunk.choices[0].delta
        for tc in d.tool_calls or []:
            slot = acc.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
        assert not d.content, d
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [(v["name"], json.loads(v["arguments"])) for _, v in sorted(acc.items())] == calls
    assert all(v["id"] for v in acc.values())


def test_named_tool_and_parallel_calls(server):
    named = {"type": "function", "function": {"name": "get_time"}}
    for seed in range(3):
        st, r, _ = post(server.url + "/v1/chat/completions", {
            "model": MODEL_ID, "messages": ASK, "tools": TOOLS, "tool_choice": named,
            "seed": seed, "max_tokens": 160})
        assert st == 200, r
        ch = r["choices"][0]
        calls = ch["message"].get("tool_calls") or []
        # Parallel calls (the default) may go on until max_tokens: every complete one counts.
        assert calls, ch
        assert ch["finish_reason"] in ("tool_calls", "length")
        for c in calls:
            assert c["function"]["name"] == "get_time"
            jsonschema.validate(json.loads(c["function"]["arguments"]), TIME)
        assert len({c["id"] for c in calls}) == len(calls)


@pytest.mark.parametrize("seed", range(5))
def test_auto_answers_text_or_valid_calls(server, seed):
    r = client(server).chat.completions.create(
        model=MODEL_ID, messages=ASK, tools=TOOLS, seed=seed, temperature=1.0, max_tokens=60)
    ch = r.choices[0]
    check_calls(ch.message.tool_calls or [])
    if ch.message.tool_calls:
        assert ch.finish_reason in ("tool_calls", "length")
    else:
        assert isinstance(ch.message.content, str)
    # tool_choice "none": never a call.
    r = client(server).chat.completions.create(
        model=MODEL_ID, messages=ASK, tools=TOOLS, tool_choice="none", seed=seed, max_tokens=30)
    assert not r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason in ("stop", "length")


def test_tool_calls_with_response_format(server):
    """With auto, tools and a JSON answer format together: calls or the JSON, never prose."""
    fmt = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 40}},
           "required": ["answer"], "additionalProperties": False}
    for seed in range(4):
        st, r, _ = post(server.url + "/v1/chat/completions", {
            "model": MODEL_ID, "messages": ASK, "tools": TOOLS, "seed": seed, "max_tokens": 120,
            "parallel_tool_calls": False,
            "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": fmt}}})
        assert st == 200, r
        m = r["choices"][0]["message"]
        if m.get("tool_calls"):
            for c in m["tool_calls"]:
                jsonschema.validate(json.loads(c["function"]["arguments"]),
                                    SCHEMAS[c["function"]["name"]])
        else:
            jsonschema.validate(json.loads(m["content"]), fmt)


def get_weather(city: str, unit: str = "celsius", days: int = 1) -> str:
    """Current weather in a city.

    Args:
        city: the city's name
        unit: celsius or fahrenheit
        days: how many days of forecast
    """
    CALLED.append((city, unit))
    return json.dumps({"city": city, "temperature": 21 if unit == "celsius" else 70, "sky": "clear"})


CALLED = []


def test_openai_round_trip_with_a_real_function(server):
    c = client(server)
    messages = list(ASK)
    r = c.chat.completions.create(model=MODEL_ID, messages=messages, tools=TOOLS[:1],
                                  tool_choice="required", parallel_tool_calls=False, seed=3,
                                  max_tokens=120)
    msg = r.choices[0].message
    (name, args), = check_calls(msg.tool_calls)
    messages.append(msg.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": msg.tool_calls[0].id,
                     "content": get_weather(**args)})
    r2 = c.chat.completions.create(model=MODEL_ID, messages=messages, tools=TOOLS[:1],
                                   tool_choice="none", seed=3, max_tokens=40)
    assert r2.choices[0].message.content and not r2.choices[0].message.tool_calls
    # The call and its result reached the prompt.
    r0 = c.chat.completions.create(model=MODEL_ID, messages=ASK, tools=TOOLS[:1],
                                   tool_choice="none", max_tokens=1)
    assert r2.usage.prompt_tokens > r0.usage.prompt_tokens + 20


def test_langchain_bind_tools_and_agent_loop(server):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    weather = tool(get_weather)
    llm = ChatOpenAI(base_url=server.url + "/v1", api_key="none", model=MODEL_ID, temperature=0.7,
                     max_tokens=120, seed=5, max_retries=0)
    schema = weather.args_schema.model_json_schema()
    # bind_tools, streamed and not.
    bound = llm.bind_tools([weather], tool_choice="required", parallel_tool_calls=False)
    ai = bound.invoke("What is the weather in Oslo?")
    assert len(ai.tool_calls) == 1 and ai.tool_calls[0]["name"] == "get_weather", ai
    jsonschema.validate(ai.tool_calls[0]["args"], schema)
    streamed = None
    for part in bound.stream("What is the weather in Oslo?"):
        streamed = part if streamed is None else streamed + part
    assert streamed.tool_calls == [dict(ai.tool_calls[0], id=streamed.tool_calls[0]["id"])]
    # The agent loop: the model asks, the function runs, its result goes back, the model answers.
    CALLED.clear()
    history = [HumanMessage("What is the weather in Oslo? Use get_weather.")]
    for step in range(3):
        ai = (bound if step == 0 else llm.bind_tools([weather], tool_choice="none")).invoke(history)
        history.append(ai)
        if not ai.tool_calls:
            break
        for call in ai.tool_calls:
            history.append(ToolMessage(weather.invoke(call["args"]), tool_call_id=call["id"]))
    assert CALLED, "the tool never ran"
    assert isinstance(history[-1].content, str) and history[-1].content
    assert isinstance(history[-2], ToolMessage)


def test_ollama_client_tools(server):
    cl = ollama.Client(host=server.url)
    # Auto (Ollama has no tool_choice): whatever the model does is a valid answer or call.
    for seed in range(3):
        r = cl.chat(model=MODEL_ID, messages=ASK, tools=[get_weather], stream=False,
                    options={"seed": seed, "num_predict": 60})
        for c in r.message.tool_calls or []:
            assert c.function.name == "get_weather"
            assert isinstance(c.function.arguments, dict) and "city" in c.function.arguments
    # g4's tool_choice extension asks for a call; the arguments come back as an object.
    st, r, _ = post(server.url + "/api/chat", {
        "model": MODEL_ID, "messages": ASK, "tools": TOOLS, "tool_choice": "required",
        "parallel_tool_calls": False, "stream": False, "options": {"seed": 1, "num_predict": 120}})
    assert st == 200, r
    (call,) = r["message"]["tool_calls"]
    jsonschema.validate(call["function"]["arguments"], SCHEMAS[call["function"]["name"]])
    # The round trip through the ollama client: its call and the function's result go back.
    history = ASK + [{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": call["function"]["name"], "arguments": call["function"]["arguments"]}}]},
        {"role": "tool", "tool_name": call["function"]["name"], "content": json.dumps({"ok": True})}]
    r2 = cl.chat(model=MODEL_ID, messages=history, tools=TOOLS, stream=False,
                 options={"seed": 2, "num_predict": 30})
    assert r2.done and isinstance(r2.message.content, str)
    # Streamed, the calls arrive in a message chunk of their own.
    parts = list(cl.chat(model=MODEL_ID, messages=ASK, tools=[get_weather], stream=True,
                         options={"seed": 0, "num_predict": 40}))
    assert parts[-1].done
    for p in parts:
        for c in p.message.tool_calls or []:
            assert c.function.name == "get_weather"
