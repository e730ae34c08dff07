"""A table of bad requests: each gets the right 4xx status and an error body of the right
shape, and the server keeps serving. Runs in the Release and the ASan/UBSan builds."""
import http.client
import json
import socket
import time

import pytest

from conftest import MODEL_ID, post

CHAT = "/v1/chat/completions"
COMP = "/v1/completions"
OK_MSGS = [{"role": "user", "content": "Hi"}]



DEEP_SCHEMA = {"type": "string"}
for _ in range(200):
    DEEP_SCHEMA = {"type": "array", "items": DEEP_SCHEMA}

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def chat(**kw):
    return {"model": MODEL_ID, "messages": OK_MSGS, "max_tokens": 2, **kw}


LONG = "word " * 5000  # ~5000 tokens > the 4096 context

CASES = [
    # (name, path, body (dict or raw bytes), status, error code or None for Ollama shape)
    ("malformed json", CHAT, b'{"model": "x", "messages": [', 400, "invalid_json"),
    ("not an object", CHAT, b'[1, 2, 3]', 400, "invalid_json"),
    ("invalid utf-8", CHAT, b'{"model": "' + MODEL_ID.encode() + b'", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400, "invalid_json"),
    ("empty body", CHAT, b'', 400, "invalid_json"),
    ("missing model", CHAT, {"messages": OK_MSGS}, 400, "missing_field"),
    ("unknown model", CHAT, {"model": "gpt-17", "messages": OK_MSGS}, 404, "model_not_found"),
    ("model wrong type", CHAT, {"model": 5, "messages": OK_MSGS}, 400, "invalid_type"),
    ("missing messages", CHAT, {"model": MODEL_ID}, 400, "missing_field"),
    ("messages not array", CHAT, {"model": MODEL_ID, "messages": "hi"}, 400, "invalid_type"),
    ("empty messages", CHAT, {"model": MODEL_ID, "messages": []}, 400, "invalid_value"),
    ("message not object", CHAT, {"model": MODEL_ID, "messages": ["hi"]}, 400, "invalid_type"),
    ("unknown role", CHAT, {"model": MODEL_ID, "messages": [{"role": "wizard", "content": "x"}]}, 400, "invalid_value"),
    ("missing content", CHAT, {"model": MODEL_ID, "messages": [{"role": "user"}]}, 400, "missing_field"),
    ("content wrong type", CHAT, {"model": MODEL_ID, "messages": [{"role": "user", "content": 42}]}, 400, "invalid_type"),
    ("image content part", CHAT, {"model": MODEL_ID, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400, "invalid_value"),
    ("badly ordered roles", CHAT, {"model": MODEL_ID, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, 400, "invalid_value"),
    ("assistant first", CHAT, {"model": MODEL_ID, "messages": [{"role": "assistant", "content": "a"}]}, 400, "invalid_value"),
    ("system not first", CHAT, {"model": MODEL_ID, "messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]}, 400, "invalid_value"),
    ("temperature string", CHAT, chat(temperature="hot"), 400, "invalid_type"),
    ("temperature too high", CHAT, chat(temperature=7), 400, "invalid_value"),
    ("top_p zero", CHAT, chat(top_p=0), 400, "invalid_value"),
    ("negative max_tokens", CHAT, chat(max_tokens=-1), 400, "invalid_value"),
    ("fractional max_tokens", CHAT, chat(max_tokens=2.5), 400, "invalid_type"),
    ("max_tokens past context", CHAT, chat(max_tokens=100000), 400, "context_length_exceeded"),
    ("prompt longer than context", CHAT, {"model": MODEL_ID, "messages": [{"role": "user", "content": LONG}]}, 400, "context_length_exceeded"),
    ("n too large", CHAT, chat(n=1000), 400, "invalid_value"),
    ("stop wrong type", CHAT, chat(stop=5), 400, "invalid_type"),
    ("empty stop string", CHAT, chat(stop=[""]), 400, "invalid_value"),
    ("stream not bool", CHAT, chat(stream="yes"), 400, "invalid_type"),
    ("stream_options without stream", CHAT, chat(stream_options={"include_usage": True}), 400, "invalid_value"),
    ("top_logprobs without logprobs", CHAT, chat(top_logprobs=3), 400, "invalid_value"),
    ("top_logprobs too many", CHAT, chat(logprobs=True, top_logprobs=50), 400, "invalid_value"),
    ("tool with no name", CHAT, chat(tools=[{"type": "function", "function": {"description": "f"}}]), 400, "missing_field"),
    ("tool name with spaces", CHAT, chat(tools=[{"type": "function", "function": {"name": "get weather"}}]), 400, "invalid_value"),
    ("tool declared twice", CHAT, chat(tools=[TOOL, TOOL]), 400, "invalid_value"),
    ("tool parameters not an object schema", CHAT, chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]), 400, "invalid_value"),
    ("tool schema keyword g4 cannot enforce", CHAT, chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"not": {}}}}}}]), 400, "invalid_value"),
    ("tool schema bomb", CHAT, chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": DEEP_SCHEMA}}}}]), 400, "invalid_value"),
    ("tool_choice required without tools", CHAT, chat(tool_choice="required"), 400, "invalid_value"),
    ("tool_choice names an undeclared tool", CHAT, chat(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "nope"}}), 400, "invalid_value"),
    ("tool_choice unknown value", CHAT, chat(tools=[TOOL], tool_choice="always"), 400, "invalid_value"),
    ("tool result for an unknown call id", CHAT, {"model": MODEL_ID, "messages": OK_MSGS + [{"role": "tool", "tool_call_id": "call_x", "content": "1"}]}, 400, "invalid_value"),
    ("tool result without call id", CHAT, {"model": MODEL_ID, "messages": OK_MSGS + [{"role": "tool", "content": "1"}]}, 400, "missing_field"),
    ("tool call arguments not json", CHAT, {"model": MODEL_ID, "messages": OK_MSGS + [{"role": "assistant", "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}, 400, "invalid_value"),
    ("tools with a regex", CHAT, chat(tools=[TOOL], regex="a+"), 400, "invalid_value"),
    ("deprecated functions", CHAT, chat(functions=[{"name": "f"}]), 400, "unsupported_parameter"),
    ("thinking on gemma 3", CHAT, chat(reasoning_effort="high"), 400, "invalid_value"),
    ("tools on completions", COMP, {"model": MODEL_ID, "prompt": "x", "tools": [TOOL]}, 400, "unsupported_parameter"),
    ("ollama tool result without a call", "/api/chat", {"model": MODEL_ID, "messages": OK_MSGS + [{"role": "tool", "content": "1"}]}, 400, None),
    ("ollama tools on generate", "/api/generate", {"model": MODEL_ID, "prompt": "x", "tools": [TOOL]}, 400, None),
    ("ollama think on gemma 3", "/api/chat", {"model": MODEL_ID, "messages": OK_MSGS, "think": True}, 400, None),
    ("logit_bias not an object", CHAT, chat(logit_bias=[1, 5]), 400, "invalid_type"),
    ("logit_bias key not an id", CHAT, chat(logit_bias={"abc": 5}), 400, "invalid_value"),
    ("logit_bias id past vocabulary", CHAT, chat(logit_bias={"99999999": 5}), 400, "invalid_value"),
    ("logit_bias value out of range", CHAT, chat(logit_bias={"1": 500}), 400, "invalid_value"),
    ("logit_bias value not a number", CHAT, chat(logit_bias={"1": "x"}), 400, "invalid_value"),
    ("json_schema without schema", CHAT, chat(response_format={"type": "json_schema", "json_schema": {}}), 400, "invalid_type"),
    ("response_format unknown type", CHAT, chat(response_format={"type": "xml"}), 400, "invalid_value"),
    ("response_format not an object", CHAT, chat(response_format="json"), 400, "invalid_type"),
    ("schema keyword g4 cannot enforce", CHAT, chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array", "uniqueItems": True}}}), 400, "invalid_value"),
    ("schema not keyword", CHAT, chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"not": {"type": "string"}}}}), 400, "invalid_value"),
    ("schema unknown format", CHAT, chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "format": "credit-card"}}}), 400, "invalid_value"),
    ("schema bad type", CHAT, chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strnig"}}}), 400, "invalid_value"),
    ("schema remote ref", CHAT, chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "https://example.com/s.json"}}}), 400, "invalid_value"),
    ("schema bomb: deep nesting", CHAT, chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": DEEP_SCHEMA}}), 400, "invalid_value"),
    ("schema bomb: huge enum", CHAT, chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"enum": list(range(100000))}}}), 400, "invalid_value"),
    ("schema bomb: huge maxItems", CHAT, chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array", "minItems": 10000000}}}), 400, "invalid_value"),
    ("schema dangling ref", CHAT, chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/$defs/missing"}}}), 400, "invalid_value"),
    ("invalid regex", CHAT, chat(regex="(ab"), 400, "invalid_value"),
    ("regex bomb", CHAT, chat(regex="(a{1,1000}){1,1000}b{99999}"), 400, "invalid_value"),
    ("invalid grammar", CHAT, chat(grammar='root ::= "a" |'), 400, "invalid_value"),
    ("grammar without root", CHAT, chat(grammar='start ::= "a"'), 400, "invalid_value"),
    ("choice not a list", CHAT, chat(choice="yes"), 400, "invalid_type"),
    ("empty choice list", CHAT, chat(choice=[]), 400, "invalid_value"),
    ("two constraints", CHAT, chat(regex="a+", choice=["a"]), 400, "invalid_value"),
    ("seed not integer", CHAT, chat(seed="abc"), 400, "invalid_type"),
    ("seed past int64", CHAT, chat(seed=2 ** 64 - 1), 400, "invalid_value"),
    ("max_tokens huge float", CHAT, chat(max_tokens=1e300), 400, "invalid_value"),
    ("n zero", CHAT, chat(n=0), 400, "invalid_value"),
    ("deeply nested json", CHAT, b'{"model": ' + b'[' * 100000 + b']' * 100000 + b'}', 400, "invalid_type"),
    ("nan penalty", CHAT, b'{"model": "' + MODEL_ID.encode() + b'", "messages": [{"role":"user","content":"x"}], "presence_penalty": NaN}', 400, "invalid_json"),
    ("completion missing prompt", COMP, {"model": MODEL_ID}, 400, "missing_field"),
    ("completion prompt wrong type", COMP, {"model": MODEL_ID, "prompt": {"a": 1}}, 400, "invalid_type"),
    ("completion token id out of range", COMP, {"model": MODEL_ID, "prompt": [1, 99999999]}, 400, "invalid_value"),
    ("completion empty prompt", COMP, {"model": MODEL_ID, "prompt": ""}, 400, "invalid_value"),
    ("completion echo unsupported", COMP, {"model": MODEL_ID, "prompt": "x", "echo": True}, 400, "unsupported_parameter"),
    ("completion logprobs too many", COMP, {"model": MODEL_ID, "prompt": "x", "logprobs": 99}, 400, "invalid_value"),
    ("body too large", CHAT, {"model": MODEL_ID, "messages": [{"role": "user", "content": "x" * (5 << 20)}]}, 413, "payload_too_large"),
    ("unknown endpoint", "/v1/engines", {}, 404, "not_found"),
    ("ollama bad json", "/api/chat", b'{"model":', 400, None),
    ("ollama unknown model", "/api/chat", {"model": "llama9", "messages": OK_MSGS}, 404, None),
    ("ollama options wrong type", "/api/generate", {"model": MODEL_ID, "prompt": "x", "options": {"temperature": "warm"}}, 400, None),
    ("ollama options not object", "/api/generate", {"model": MODEL_ID, "prompt": "x", "options": [1]}, 400, None),
    ("ollama num_ctx too large", "/api/generate", {"model": MODEL_ID, "prompt": "x", "options": {"num_ctx": 10 ** 7}}, 400, None),
    ("ollama format wrong type", "/api/generate", {"model": MODEL_ID, "prompt": "x", "format": 5}, 400, None),
    ("ollama format schema g4 cannot enforce", "/api/chat", {"model": MODEL_ID, "messages": OK_MSGS, "format": {"type": "object", "if": {}}}, 400, None),
    ("ollama images", "/api/generate", {"model": MODEL_ID, "prompt": "x", "images": ["aGk="]}, 400, None),
    ("ollama show unknown", "/api/show", {"model": "nope"}, 404, None),
]


@pytest.mark.parametrize("name,path,body,status,code", CASES, ids=[c[0] for c in CASES])
def test_bad_request(server, name, path, body, status, code):
    st, err, _ = post(server.url + path, body, timeout=120)
    assert st == status, (name, err)
    assert isinstance(err, dict), err
    if code is None:  # Ollama shape
        assert isinstance(err.get("error"), str) and err["error"]
    else:
        e = err["error"]
        assert set(e) >= {"message", "type", "param", "code"}, e
        assert e["code"] == code, e
        assert isinstance(e["message"], str) and e["message"]


def test_garbage_http_and_still_serving(server):
    host, port = "127.0.0.1", server.port
    for junk in [b"\x00\x01\x02garbage\r\n\r\n", b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                 b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"]:
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(junk)
            try:
                s.recv(4096)
            except OSError:
                pass
    # a truncated body: client sends less than Content-Length and hangs up
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"model\"")
    st, body, _ = post(server.url + CHAT, chat(temperature=0))
    assert st == 200, body
    assert body["choices"][0]["finish_reason"] in ("stop", "length")


def _request(url, method, path, body=None):
    host, port = url.replace("http://", "").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.request(method, path, body, {"Content-Type": "application/json"} if body else {})
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    return r.status, r.getheader("Allow"), raw


@pytest.mark.parametrize("method,path,allow", [
    ("GET", CHAT, "POST"), ("GET", COMP, "POST"), ("PUT", CHAT, "POST"), ("DELETE", "/api/chat", "POST"),
    ("GET", "/api/generate", "POST"), ("POST", "/v1/models", "GET, HEAD"),
    ("POST", "/health", "GET, HEAD"), ("DELETE", "/api/tags", "GET, HEAD"),
])
def test_wrong_method_is_405_with_allow(server, method, path, allow):
    st, got_allow, raw = _request(server.url, method, path, b"{}" if method != "GET" else None)
    assert st == 405 and got_allow == allow, (st, got_allow, raw)
    err = json.loads(raw)["error"]
    if path.startswith("/api/"):  # Ollama shape
        assert isinstance(err, str) and method in err
    else:
        assert err["code"] == "method_not_allowed" and err["type"] == "invalid_request_error"
        assert method in err["message"] and allow in err["message"]


def test_head_on_post_route_is_405(server):
    st, allow, raw = _request(server.url, "HEAD", CHAT)
    assert st == 405 and allow == "POST" and raw == b""


def _requests_total(server, endpoint, status):
    v = server.metric(f'g4_requests_total{{endpoint="{endpoint}",status="{status}"}}')
    return v or 0


def test_requests_total_counts_real_statuses(server):
    # Streams are counted with the status they were sent with (200), and answers httplib
    # produces itself (404, 405, 413, 400 on a broken request line) are counted too.
    expect = {(COMP, 200): 2, ("/api/generate", 200): 1, ("other", 404): 1, (CHAT, 405): 1,
              (CHAT, 413): 1, ("other", 400): 1}
    before = {k: _requests_total(server, *k) for k in expect}
    st, _, _ = post(server.url + COMP, {"model": MODEL_ID, "prompt": "Hi", "max_tokens": 2})
    assert st == 200
    st, text, _ = post(server.url + COMP, {"model": MODEL_ID, "prompt": "Hi", "max_tokens": 2,
                                           "stream": True})
    assert st == 200 and "[DONE]" in text
    st, _, _ = post(server.url + "/api/generate",
                    {"model": MODEL_ID, "prompt": "Hi", "options": {"num_predict": 2}})
    assert st == 200
    assert post(server.url + "/v1/nothing-here", {})[0] == 404
    assert _request(server.url, "GET", CHAT)[0] == 405
    assert post(server.url + CHAT, b"x" * (5 << 20))[0] == 413
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"NOT-HTTP\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 400")
    # httplib's logger counts after the last byte went out, so the client may see its answer
    # a moment before the counter moves.
    deadline = time.time() + 10
    while True:
        got = {k: _requests_total(server, *k) - before[k] for k in expect}
        if got == expect or time.time() > deadline:
            break
        time.sleep(0.1)
    assert got == expect
