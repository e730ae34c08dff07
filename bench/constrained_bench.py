"""Constrained vs unconstrained decode through `g4 serve`, alternating in one run: the same
prompt, a realistic nested JSON schema (response_format json_schema) against free text of the
same length (ignore_eos, max_tokens = the constrained answers' mean length), at 1 and 8
concurrent streams. Decode rate = (tokens - 1) / (last chunk - first chunk) per stream, from
the SSE stream's arrival times; the ratio is constrained / unconstrained.

  .venv/bin/python bench/constrained_bench.py [--g4 build/release/g4] [--rounds 3] [--top-k K]

With top_k 0 (OpenAI's defaults: temperature 1, top_p 1) the sampler sorts all 262,144
candidates per token, which the constraint mask mostly removes first: compare with --top-k 40
as well to see the mask's own cost.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests/server"))
from conftest import MODEL, free_port  # noqa: E402

SCHEMA = {"type": "object", "properties": {
    "order_id": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{6}$"},
    "customer": {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 40},
        "address": {"type": "object", "properties": {
            "street": {"type": "string", "maxLength": 40}, "city": {"type": "string", "maxLength": 30},
            "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["street", "city", "zip"]}},
        "required": ["name", "address"]},
    "items": {"type": "array", "items": {"type": "object", "properties": {
        "sku": {"type": "string", "maxLength": 12}, "qty": {"type": "integer", "minimum": 1, "maximum": 99}},
        "required": ["sku", "qty"]}, "minItems": 1, "maxItems": 4},
    "status": {"enum": ["pending", "paid", "shipped"]}},
    "required": ["order_id", "customer", "items", "status"]}


def stream(url, body, out):
    req = urllib.request.Request(url + "/v1/chat/completions", method="POST",
                                 data=json.dumps(dict(body, stream=True,
                                                      stream_options={"include_usage": True})).encode(),
                                 headers={"Content-Type": "application/json"})
    times, tokens = [], 0
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if ev.get("usage"):
                tokens = ev["usage"]["completion_tokens"]
            if ev.get("choices") and ev["choices"][0]["delta"].get("content"):
                times.append(time.perf_counter())
    out.append((tokens, times))


def run(url, body, streams):
    out, ths = [], []
    for i in range(streams):
        b = dict(body, seed=100 + i)
        ths.append(threading.Thread(target=stream, args=(url, b, out)))
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    rates = [(n - 1) / (ts[-1] - ts[0]) for n, ts in out if n > 2 and len(ts) > 1 and ts[-1] > ts[0]]
    return statistics.mean(rates) * streams, statistics.mean(n for n, _ in out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--g4", default=str(ROOT / "build/release/g4"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top-k", type=int, default=0,
                    help="top_k for both (0, OpenAI's default, samples the whole vocabulary)")
    a = ap.parse_args()
    port = free_port()
    srv = subprocess.Popen([a.g4, "serve", "-m", MODEL, "--port", str(port), "--parallel", "8",
                            "-t", str(a.threads)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except Exception:
                time.sleep(0.5)
        base = {"model": "default", "temperature": 1.0, "max_tokens": 300, "top_k": a.top_k,
                "messages": [{"role": "user", "content": "An order record as JSON."}]}
        con = dict(base, response_format={"type": "json_schema",
                                          "json_schema": {"name": "order", "schema": SCHEMA}})
        for streams in (1, 8):
            c_rates, u_rates, lens = [], [], []
            for _ in range(a.rounds):
                rc, n = run(url, con, streams)
                ru, _ = run(url, dict(base, ignore_eos=True, max_tokens=max(8, int(n))), streams)
                c_rates.append(rc)
                u_rates.append(ru)
                lens.append(n)
            c, u = statistics.median(c_rates), statistics.median(u_rates)
            print(f"{streams} stream(s): constrained {c:.1f} tok/s, unconstrained {u:.1f} tok/s, "
                  f"ratio {c / u:.3f} (answers of ~{statistics.mean(lens):.0f} tokens, "
                  f"{a.rounds} rounds)")
    finally:
        srv.terminate()
        srv.wait()


if __name__ == "__main__":
    main()
