"""Continuous batching: concurrency must not change results, disconnects free sequences,
prefix reuse is exact, a full queue answers 429."""
import concurrent.futures as cf
import http.client
import json
import subprocess
import time

import pytest

from conftest import G4_BIN, MODEL, MODEL_ID, SANITIZED, Server, post

# Under ASan/UBSan everything runs but with fewer tokens; the long-prompt test is skipped.
N_TOK = 6 if SANITIZED else 24

PROMPTS = [
    "The quick brown fox",
    "In 1905, Albert Einstein published",
    "def fibonacci(n):\n    ",
    "Les plus grandes villes de France sont",
    "A recipe for pancakes: first,",
    "東京は日本の首都であり、",
    "The three laws of thermodynamics state that" + " energy" * 40,
    "SELECT name, COUNT(*) FROM users",
]


def complete(url, prompt, max_tokens=N_TOK, **kw):
    s, body, _ = post(url + "/v1/completions", {"model": MODEL_ID, "prompt": prompt,
                                                "max_tokens": max_tokens, "temperature": 0,
                                                "logprobs": 1, **kw})
    assert s == 200, body
    ch = body["choices"][0]
    return ch["text"], ch["logprobs"]["tokens"], ch["logprobs"]["token_logprobs"], body["usage"]


def test_eight_concurrent_equal_alone(server):
    alone = [complete(server.url, p) for p in PROMPTS]
    steps0 = server.metric("g4_engine_steps_total")
    with cf.ThreadPoolExecutor(8) as ex:
        together = list(ex.map(lambda p: complete(server.url, p), PROMPTS))
    steps = server.metric("g4_engine_steps_total") - steps0
    for a, b in zip(alone, together):
        assert a[0] == b[0] and a[1] == b[1]
        assert a[2] == b[2]  # bit-identical logits -> identical logprobs
    # they really ran together: far fewer steps than 8 separate runs would need
    assert steps < sum(len(a[1]) + 1 for a in alone) * 0.6, steps


@pytest.mark.skipif(SANITIZED, reason="660-token prompts; runs in the Release build")
def test_prefix_reuse_is_exact_across_slots_and_window():
    s = Server("--parallel", "2")
    try:
        system = "You are a careful assistant. " * 110  # ~660 tokens: longer than the 512 window
        msgs = lambda q: [{"role": "system", "content": system}, {"role": "user", "content": q}]
        body = lambda q: {"model": MODEL_ID, "messages": msgs(q), "max_tokens": 12, "temperature": 0}
        st, cold, _ = post(s.url + "/v1/chat/completions", body("What is 2+2?"))
        assert st == 200 and cold["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        # A different question in the other slot, then the first again: both reuse the prefix.
        st, other, _ = post(s.url + "/v1/chat/completions", body("Name a planet."))
        shared = cold["usage"]["prompt_tokens"] - 12
        assert shared > 512
        assert other["usage"]["prompt_tokens_details"]["cached_tokens"] >= shared
        st, warm, _ = post(s.url + "/v1/chat/completions", body("What is 2+2?"))
        assert warm["usage"]["prompt_tokens_details"]["cached_tokens"] >= shared
        assert warm["choices"][0]["message"] == cold["choices"][0]["message"]
        assert s.metric("g4_prefix_cache_hit_ratio") > 0.5
    finally:
        assert s.stop() == 0


def open_stream(url, body):
    host, port = url.replace("http://", "").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    return conn, resp


def leave_and_expect_freed(server, conn, d0):
    """Closes a client mid-answer: its sequence is freed and counted as a disconnect."""
    assert server.metric("g4_sequences_running") >= 1
    conn.sock.close()
    conn.close()
    deadline = time.time() + 20
    while time.time() < deadline and (server.metric("g4_sequences_running") or 0) > 0:
        time.sleep(0.1)
    assert server.metric("g4_sequences_running") == 0
    assert server.metric("g4_client_disconnects_total") == d0 + 1


def test_disconnect_frees_sequence(server):
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Count to a thousand."}],
            "max_tokens": 2000, "temperature": 0, "stream": True}
    d0 = server.metric("g4_client_disconnects_total")
    conn, resp = open_stream(server.url, body)
    got = 0
    while got < 5:
        line = resp.readline()
        if line.startswith(b"data: {"):
            got += 1
    leave_and_expect_freed(server, conn, d0)
    text, _, _, usage = complete(server.url, PROMPTS[0], max_tokens=4)
    assert usage["completion_tokens"] == 4


def test_full_queue_answers_429():
    s = Server("--parallel", "1", "--max-queue", "0")
    try:
        body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hello"}],
                "max_tokens": 400, "temperature": 0, "stream": True}
        conn, resp = open_stream(s.url, body)
        resp.readline()
        st, err, hdrs = post(s.url + "/v1/chat/completions", {**body, "stream": False, "max_tokens": 2})
        assert st == 429, err
        assert err["error"]["code"] == "server_busy" and "Retry-After" in hdrs
        conn.close()
    finally:
        assert s.stop() == 0


def test_api_key():
    s = Server("--api-key", "sekret")
    try:
        body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        st, err, _ = post(s.url + "/v1/chat/completions", body)
        assert st == 401 and err["error"]["code"] == "invalid_api_key"
        st, err, _ = post(s.url + "/v1/chat/completions", body, {"Authorization": "Bearer wrong"})
        assert st == 401
        st, ok, _ = post(s.url + "/v1/chat/completions", body, {"Authorization": "Bearer sekret"})
        assert st == 200
        st, err, _ = post(s.url + "/api/chat", body)
        assert st == 401 and "error" in err
        import urllib.request
        with urllib.request.urlopen(s.url + "/health") as r:
            assert r.status == 200
    finally:
        assert s.stop() == 0


def _sse_events(raw):
    return [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]


def test_sigterm_cut_short_is_visible_to_clients():
    # Answers still running when the grace period ends are cut short, and each client can tell:
    # an SSE stream gets an error event, then finish_reason "length" and [DONE]; an Ollama
    # stream's last line has done_reason "length" and an "error"; a non-streamed answer (whose
    # 200 already went out) is an error body instead of a complete-looking answer.
    s = Server("--shutdown-grace", "2")
    try:
        _check_sigterm_cut_short(s)
    finally:
        s.stop()  # fails with the report if a sanitizer stopped the server


def _check_sigterm_cut_short(s):
    long = {"max_tokens": 3000, "temperature": 0, "ignore_eos": True}
    conn, sse = open_stream(s.url, {"model": MODEL_ID, "stream": True, **long,
                                    "messages": [{"role": "user", "content": "Tell me a story."}]})
    _, ndjson = _open_plain(s.url, "/api/generate", {
        "model": MODEL_ID, "prompt": "1, 2, 3, 4, 5,", "stream": True,
        "options": {"num_predict": 3000, "temperature": 0}})
    _, plain = _open_plain(s.url, "/v1/completions",
                           {"model": MODEL_ID, "prompt": "Count to a thousand:", **long})
    assert sse.status == ndjson.status == plain.status == 200
    sse.readline()
    ndjson.readline()
    t0 = time.time()
    s.proc.terminate()
    events = _sse_events(sse.read())  # the stream ends instead of hanging
    assert events[-1] == "[DONE]", events[-3:]
    errors = [json.loads(e)["error"] for e in events[:-1] if "error" in json.loads(e)]
    assert len(errors) == 1 and errors[0]["code"] == "shutting_down", events[-4:]
    assert "cut short" in errors[0]["message"] and errors[0]["type"] == "server_error"
    finish = [c["finish_reason"] for e in events[:-1] for c in json.loads(e).get("choices", [])
              if c.get("finish_reason")]
    assert finish == ["length"], events[-4:]
    last = json.loads(ndjson.read().decode().strip().splitlines()[-1])
    assert last["done"] is True and last["done_reason"] == "length", last
    assert "cut short" in last["error"], last
    body = json.loads(plain.read())  # leading keep-alive spaces are JSON whitespace
    assert body["error"]["code"] == "shutting_down" and "choices" not in body, body
    assert s.proc.wait(timeout=60) == 0
    assert time.time() - t0 < 30


def test_sigterm_cut_short_raises_in_openai_client():
    import openai
    s = Server("--shutdown-grace", "1")
    c = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=0)
    stream = c.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Tell me a story."}],
        max_tokens=3000, temperature=0, stream=True, extra_body={"ignore_eos": True})
    try:
        with pytest.raises(openai.APIError, match="cut short"):
            for i, chunk in enumerate(stream):
                if i == 0:
                    s.proc.terminate()
                for ch in chunk.choices:
                    assert ch.finish_reason is None  # the error comes before any finish
        assert s.proc.wait(timeout=60) == 0
    finally:
        s.stop()


def test_restart_on_the_same_port_at_once():
    # The last run's server-side connections sit in TIME_WAIT (an HTTP/1.0 answer and a stream
    # cut by SIGTERM are closed by the server first); SO_REUSEADDR lets the next run bind.
    s = Server("--shutdown-grace", "0")
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
    conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"
    conn.request("GET", "/v1/models")
    assert conn.getresponse().status == 200
    conn.close()
    _, sse = open_stream(s.url, {"model": MODEL_ID, "stream": True, "max_tokens": 3000,
                                 "ignore_eos": True,
                                 "messages": [{"role": "user", "content": "Hello"}]})
    sse.readline()
    assert s.stop() == 0
    sse.read()
    again = Server("--shutdown-grace", "0", port=s.port)
    try:
        st, body, _ = post(again.url + "/v1/completions",
                           {"model": MODEL_ID, "prompt": "Hi", "max_tokens": 2})
        assert st == 200, body
        # ... and a port in use is refused (SO_REUSEPORT would let a second server share it).
        second = subprocess.run([G4_BIN, "serve", "-m", MODEL, "--port", str(again.port)],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "cannot listen" in second.stderr, second.stderr
    finally:
        assert again.stop() == 0


def test_queued_stream_disconnect_is_noticed():
    s = Server("--parallel", "1", "--max-queue", "4")
    try:
        # The first stream must outlast the queued one's disconnect (up to a few seconds):
        # it runs to 1500 tokens unless closed, and is closed at the end.
        body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Hello"}],
                "max_tokens": 1500, "temperature": 0, "stream": True, "ignore_eos": True}
        conn1, resp1 = open_stream(s.url, body)
        resp1.readline()
        deadline = time.time() + 15
        while time.time() < deadline and s.metric("g4_sequences_running") < 1:
            time.sleep(0.05)
        conn2, resp2 = open_stream(s.url, body)  # waits in the queue: no tokens yet
        time.sleep(0.3)
        assert s.metric("g4_sequences_waiting") == 1
        conn2.sock.close()
        conn2.close()
        deadline = time.time() + 15  # keep-alive pings (1/s) notice the closed socket
        while time.time() < deadline and s.metric("g4_client_disconnects_total") < 1:
            time.sleep(0.2)
        assert s.metric("g4_client_disconnects_total") == 1
        deadline = time.time() + 10
        while time.time() < deadline and s.metric("g4_sequences_waiting") > 0:
            time.sleep(0.05)
        assert s.metric("g4_sequences_waiting") == 0  # dropped from the queue at the next step
        assert s.metric("g4_sequences_running") == 1  # while the first stream still runs
        got = 0
        while got < 3:  # and it still streams
            if resp1.readline().startswith(b"data: {"):
                got += 1
        conn1.sock.close()
        conn1.close()
    finally:
        assert s.stop() == 0


def _open_plain(url, path, body):
    host, port = url.replace("http://", "").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    return conn, conn.getresponse()


@pytest.mark.parametrize("path,body", [
    ("/v1/completions", {"model": MODEL_ID, "prompt": "Count to a thousand:", "max_tokens": 3000,
                         "temperature": 0, "ignore_eos": True}),
    ("/api/generate", {"model": MODEL_ID, "prompt": "1, 2, 3, 4, 5,", "stream": False,
                       "options": {"num_predict": 3000, "temperature": 0}}),
])
def test_non_streamed_disconnect_frees_sequence(server, path, body):
    # A non-streamed answer has no body until the end; the server answers 200 once the first
    # token exists and then writes a space a second, so a client that leaves is noticed.
    d0 = server.metric("g4_client_disconnects_total")
    conn, resp = _open_plain(server.url, path, body)
    assert resp.status == 200
    leave_and_expect_freed(server, conn, d0)


def test_long_non_streamed_answer_is_plain_json(server):
    # Long enough for keep-alive spaces before the JSON: the body still parses as one JSON
    # document and carries every token (the same text as a run with logprobs asked for).
    n = 40 if SANITIZED else 250
    body = {"model": MODEL_ID, "prompt": PROMPTS[1], "max_tokens": n, "temperature": 0,
            "ignore_eos": True}
    st, j, _ = post(server.url + "/v1/completions", body)
    assert st == 200, j
    assert j["usage"]["completion_tokens"] == n and j["choices"][0]["finish_reason"] == "length"
    text, _, _, usage = complete(server.url, PROMPTS[1], max_tokens=n, ignore_eos=True)
    assert usage["completion_tokens"] == n and text == j["choices"][0]["text"]
