#!/usr/bin/env python3
"""Server throughput and latency: g4 serve vs a llama.cpp server, same model, same threads,
in one run (alternating per concurrency level so machine noise hits both).

  .venv/bin/python bench/server_bench.py [--model M] [--threads 2] [--levels 1,4,8,16]
        [--llama-server PATH]   # a llama-server binary (tools/server of llama.cpp); default:
                                # llama-cpp-python's server (PyPI llama-cpp-python[server]),
                                # which handles one request at a time

For each level c: c client threads each stream requests (128-token prompt, 64 new tokens,
greedy) for a fixed number of rounds; reports aggregate generated tokens/s and TTFT p50/p95.
"""
import argparse
import concurrent.futures as cf
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = Path(os.environ.get("G4_HOME", Path.home() / ".cache/g4")) / "models/gemma-3-270m-q4_k_m.gguf"
WORDS = ("river mountain quiet lantern harvest copper winter meadow signal orchard thunder "
         "velvet compass island marble ember").split()


def prompt_of(i):  # ~128 tokens, different per request (no prefix sharing beyond the first words)
    return f"Request {i}: " + " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(120))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, proc, timeout=180):
    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None:
            sys.exit(f"server exited early ({proc.args})")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2):
                return
        except Exception:
            time.sleep(0.3)
    sys.exit("server not ready")


def one(url, model, i, max_tokens):
    body = {"model": model, "prompt": prompt_of(i), "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "ignore_eos": True}
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    t0 = time.time()
    ttft, n = None, 0
    with urllib.request.urlopen(req, timeout=600) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            j = json.loads(line[6:])
            for ch in j.get("choices", []):
                if ch.get("text"):
                    n += 1
                    if ttft is None:
                        ttft = time.time() - t0
    return ttft or 0.0, n


def level(url, model, c, rounds, max_tokens, base):
    t0 = time.time()
    with cf.ThreadPoolExecutor(c) as ex:
        res = list(ex.map(lambda i: one(url, model, base + i, max_tokens), range(c * rounds)))
    wall = time.time() - t0
    ttfts = sorted(r[0] for r in res)
    toks = sum(r[1] for r in res)
    p = lambda q: ttfts[min(len(ttfts) - 1, int(q * len(ttfts)))]
    return toks / wall, statistics.median(ttfts), p(0.95)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--levels", default="1,4,8,16")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--llama-server", default="")
    ap.add_argument("--g4", default=str(ROOT / "build/release/g4"))
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    slots = max(levels)
    gp, lp = free_port(), free_port()
    g4 = subprocess.Popen([a.g4, "serve", "-m", a.model, "--port", str(gp), "--threads", str(a.threads),
                           "--parallel", str(min(slots, 16)), "--ctx", "1024", "--max-queue", "256"],
                          stderr=subprocess.DEVNULL)
    if a.llama_server:
        llama_name = "llama-server"
        ll = subprocess.Popen([a.llama_server, "-m", a.model, "--port", str(lp), "-t", str(a.threads),
                               "-np", str(min(slots, 16)), "-c", str(1024 * min(slots, 16)), "-cb"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        llama_name = "llama-cpp-python server"
        ll = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", a.model, "--port", str(lp),
                               "--n_threads", str(a.threads), "--n_ctx", "1024", "--n_batch", "512"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        gu, lu = f"http://127.0.0.1:{gp}", f"http://127.0.0.1:{lp}"
        wait_ready(gu, g4)
        wait_ready(lu, ll)
        model = Path(a.model).stem
        one(gu, model, 10**6, 4)
        one(lu, model, 10**6, 4)  # warm-up
        print(f"model {model}, {a.threads} threads, prompt ~128 tokens, {a.max_tokens} new tokens, greedy")
        print(f"baseline: {llama_name}")
        print(f"{'streams':>7} | {'g4 tok/s':>9} {'base tok/s':>10} {'ratio':>6} | "
              f"{'g4 TTFT p50/p95 ms':>19} | {'base TTFT p50/p95 ms':>21}")
        rows = []
        for c in levels:
            g = level(gu, model, c, a.rounds, a.max_tokens, 1000 * c)
            b = level(lu, model, c, a.rounds, a.max_tokens, 1000 * c + 500)
            rows.append((c, g, b))
            print(f"{c:>7} | {g[0]:9.1f} {b[0]:10.1f} {g[0] / b[0]:5.2f}x | "
                  f"{g[1] * 1000:8.0f} / {g[2] * 1000:8.0f} | {b[1] * 1000:9.0f} / {b[2] * 1000:9.0f}")
        print(json.dumps({"baseline": llama_name, "rows": [
            {"streams": c, "g4_tok_s": g[0], "base_tok_s": b[0], "g4_ttft_p50": g[1], "g4_ttft_p95": g[2],
             "base_ttft_p50": b[1], "base_ttft_p95": b[2]} for c, g, b in rows]}))
    finally:
        for p in (g4, ll):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
