#!/usr/bin/env python3
"""Cost of the safety guard on chat: g4 serve unguarded vs guarded (the serving model as its own
guard, --guard, with ShieldGemma's 4 built-in policies), alternating in one run so machine noise
hits both.

  .venv/bin/python bench/guard_overhead.py [--g4 build/release/g4] [--model M] [--threads 2]
        [--rounds 4] [--requests 4] [--max-tokens 64] [--json]

Each round starts one server, streams --requests chats one at a time (greedy, distinct prompts:
a request number and different words lead every prompt, so the prefix cache never hits beyond
the chat template's first tokens), stops it, then does the same with the other mode; the order
alternates between rounds. Guarded: `--guard --guard-profile P.json` with P = the balanced
profile's 4 policies at threshold 1.0, so every check runs in full but nothing is refused (Gemma
3 270M is no classifier: it answers "Yes" ~0.9 to everything, README).
TTFT = request sent to first streamed content; decode = (tokens - 1) / (last - first content),
tokens from the stream's usage. Reports medians and the ratios guarded / unguarded.
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = (Path(os.environ.get("G4_HOME", Path.home() / ".cache/g4"))
                 / "models/gemma-3-270m-q4_k_m.gguf")
WORDS = ("river mountain quiet lantern harvest copper winter meadow signal orchard thunder "
         "velvet compass island marble ember falcon glacier saffron tunnel").split()


def prompt_of(i):  # distinct from its first word on
    words = " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(24))
    return f"Request {i}. Write a long, detailed story that uses these words: {words}."


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, g4, model, threads, extra):
        self.port = free_port()
        self.model = model
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [g4, "serve", "-m", model, "--port", str(self.port), "--threads", str(threads),
             "--parallel", "1", *extra], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                sys.exit(f"g4 serve exited: {self.log.read().decode(errors='replace')}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except Exception:
                time.sleep(0.2)
        self.stop()
        sys.exit("g4 serve did not become ready")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def chat(self, prompt, max_tokens):
        body = json.dumps({"model": Path(self.model).stem, "messages": [{"role": "user", "content": prompt}],
                           "max_tokens": max_tokens, "temperature": 0, "stream": True,
                           "stream_options": {"include_usage": True}})
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        t0 = time.perf_counter()
        c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            sys.exit(f"chat answered {r.status}: {r.read()[:300]!r}")
        first = last = None
        tokens = None
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if ev.get("usage"):
                tokens = ev["usage"]["completion_tokens"]
            for ch in ev.get("choices", []):
                if ch.get("delta", {}).get("content"):
                    now = time.perf_counter()
                    first = first or now
                    last = now
        c.close()
        if first is None or not tokens:
            sys.exit("no streamed content")
        rate = (tokens - 1) / (last - first) if tokens > 8 and last > first else None
        return first - t0, rate, tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--g4", default=str(ROOT / "build/release/g4"))
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--requests", type=int, default=4, help="chats per server start")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    prof = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"name": "bench-all-checks", "base": "balanced", "default_threshold": 1.0}, prof)
    prof.close()
    modes = {"unguarded": [], "guarded": ["--guard", "--guard-profile", prof.name]}
    res = {m: {"ttft": [], "rate": []} for m in modes}
    n = 0
    for rnd in range(a.rounds):
        order = ["unguarded", "guarded"] if rnd % 2 == 0 else ["guarded", "unguarded"]
        for mode in order:
            s = Server(a.g4, a.model, a.threads, modes[mode])
            try:
                for _ in range(a.requests):
                    ttft, rate, tok = s.chat(prompt_of(n), a.max_tokens)
                    n += 1
                    res[mode]["ttft"].append(ttft)
                    if rate:
                        res[mode]["rate"].append(rate)
                    print(f"round {rnd} {mode:9s} ttft {ttft * 1e3:7.1f} ms  decode "
                          f"{rate or float('nan'):6.1f} tok/s  ({tok} tokens)", file=sys.stderr)
            finally:
                s.stop()
    os.unlink(prof.name)
    med = {m: {k: statistics.median(v) if v else float("nan") for k, v in r.items()}
           for m, r in res.items()}
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "threads": a.threads,
           "rounds": a.rounds, "requests_per_round": a.requests, "max_tokens": a.max_tokens,
           "median": med,
           "ttft_ratio_guarded_over_unguarded": med["guarded"]["ttft"] / med["unguarded"]["ttft"],
           "decode_ratio_guarded_over_unguarded": med["guarded"]["rate"] / med["unguarded"]["rate"],
           "samples": {m: len(r["ttft"]) for m, r in res.items()}}
    if a.json:
        print(json.dumps(out, indent=1))
        return
    for m in modes:
        print(f"{m:9s}: TTFT median {med[m]['ttft'] * 1e3:.1f} ms, decode median "
              f"{med[m]['rate']:.1f} tok/s ({out['samples'][m]} chats)")
    print(f"guarded / unguarded: TTFT x{out['ttft_ratio_guarded_over_unguarded']:.2f}, decode "
          f"throughput x{out['decode_ratio_guarded_over_unguarded']:.2f}")


if __name__ == "__main__":
    main()
