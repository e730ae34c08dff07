"""Bounded load test on loopback: 200 streamed requests at 16 concurrency, mixed prompt
lengths. Zero errors, every stream token-for-token equal to the same request served alone
(nothing lost or duplicated), and RSS stable between the two halves of the run."""
import concurrent.futures as cf
import json
import time
import urllib.request

import pytest

from conftest import MODEL_ID, SANITIZED, post

pytestmark = pytest.mark.skipif(SANITIZED, reason="load test runs in the Release build")

BASE = ["Write a haiku about the sea.", "List three prime numbers.",
        "Explain photosynthesis briefly.", "Translate 'good morning' to German.",
        "What is the boiling point of water?"]
PROMPTS = [(b + " Context: " + "lorem ipsum dolor sit amet " * k, 8 + 4 * (i % 4))
           for i, (b, k) in enumerate((b, k) for k in (0, 6, 20, 60) for b in BASE)]


def stream(url, prompt, max_tokens):
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True, "logprobs": True,
            "stream_options": {"include_usage": True}}
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    text, tokens, usage, done, finish = "", [], None, False, None
    with urllib.request.urlopen(req, timeout=600) as r:
        assert r.status == 200
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                continue
            j = json.loads(data)
            assert "error" not in j, j
            if j.get("usage"):
                usage = j["usage"]
            for ch in j["choices"]:
                text += ch["delta"].get("content") or ""
                if ch.get("logprobs"):
                    tokens += [t["token"] for t in ch["logprobs"]["content"]]
                finish = ch.get("finish_reason") or finish
    assert done and usage
    return text, tokens, usage["completion_tokens"], finish


def test_load_200_requests_16_concurrent(server):
    ref = {}
    for p, n in PROMPTS:
        st, body, _ = post(server.url + "/v1/chat/completions",
                           {"model": MODEL_ID, "messages": [{"role": "user", "content": p}],
                            "max_tokens": n, "temperature": 0})
        assert st == 200, body
        ref[(p, n)] = (body["choices"][0]["message"]["content"], body["usage"]["completion_tokens"])
    jobs = [PROMPTS[i % len(PROMPTS)] for i in range(200)]
    rss = []
    t0 = time.time()
    errors = []
    for half in (jobs[:100], jobs[100:]):
        with cf.ThreadPoolExecutor(16) as ex:
            futs = {ex.submit(stream, server.url, p, n): (p, n) for p, n in half}
            for f in cf.as_completed(futs):
                p, n = futs[f]
                try:
                    text, tokens, count, finish = f.result()
                except Exception as e:  # noqa: BLE001 - every failure is reported below
                    errors.append(repr(e))
                    continue
                exp_text, exp_count = ref[(p, n)]
                if text != exp_text or count != exp_count or len(tokens) != count:
                    errors.append(f"mismatch for {p[:30]!r}: {text!r} vs {exp_text!r}, "
                                  f"{count}/{len(tokens)} vs {exp_count}")
        rss.append(server.rss_kib())
    elapsed = time.time() - t0
    assert not errors, errors[:5]
    assert server.metric("g4_sequences_running") == 0
    assert server.metric("g4_sequences_waiting") == 0
    # The second half must not grow memory: nothing accumulates per request.
    assert rss[1] <= rss[0] * 1.05 + 16 * 1024, rss
    print(f"200 streamed requests in {elapsed:.1f} s, RSS {rss[0] // 1024} -> {rss[1] // 1024} MiB")
