"""Server memory under a long-context load (issue 14): `g4 serve --parallel P --ctx C` with P
concurrent completions of about T prompt tokens each; the server's peak RSS (VmHWM from
/proc/PID/status) against `g4 plan`'s prediction for that load and against llama-server at
the same settings (-np P -c P*C, so each of its slots holds C tokens; -fa on). Prints a table.

    .venv/bin/python bench/serve_memory.py [--model M] [--parallel 8] [--ctx 32768]
        [--tokens 16000] [--max-tokens 16] [-t 2] [--g4 build/release/g4]
        [--llama-server ~/.cache/g4/llama.cpp/bin/llama-server] [--no-llama] [--json OUT]

The prompts are distinct (words drawn from a fixed list with a different seed each), so no
prefix is shared and every conversation holds its own KV. The plan is
`g4 plan MODEL --ctx T' --parallel P -t THREADS` where T' is the longest conversation's
prompt + generated tokens: the plan assumes sequences that hold T' tokens each, which is
what the load makes (global layers are paged; a slot's unused context costs nothing).
llama-server runs with --cache-ram 0 (no prompt cache kept in RAM after a request; g4 keeps
a finished slot's KV in place for reuse, which the measurement includes) and its default
split KV (-np given explicitly: one 32K-token KV range per slot, allocated at start).
"""
import argparse
import concurrent.futures as cf
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

root = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--model", default=os.path.expanduser("~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf"))
ap.add_argument("--parallel", type=int, default=8)
ap.add_argument("--ctx", type=int, default=32768)
ap.add_argument("--tokens", type=int, default=16000, help="prompt tokens per conversation")
ap.add_argument("--max-tokens", type=int, default=16)
ap.add_argument("-t", "--threads", type=int, default=2)
ap.add_argument("--g4", default=str(root / "build/release/g4"))
ap.add_argument("--llama-server", default=os.path.expanduser("~/.cache/g4/llama.cpp/bin/llama-server"))
ap.add_argument("--no-llama", action="store_true")
ap.add_argument("--json", default=None)
a = ap.parse_args()

WORDS = ("time year people way day man thing woman life child world school state family "
         "student group country problem hand part place case week company system program "
         "question work government number night point home water room mother area money story "
         "fact month lot right study book eye job word business issue side kind head house "
         "service friend father power hour game line end member law car city community name "
         "president team minute idea kid body information back parent face others level office "
         "door health person art war history party result change morning reason research girl "
         "guy moment air teacher force education").split()


def ntokens(text):
    p = subprocess.run([a.g4, "tokenize", "-m", a.model, "--json", "-f", "/dev/stdin"],
                       input=text, capture_output=True, text=True, check=True)
    return len(json.loads(p.stdout.strip().splitlines()[-1]))


def prompts():
    """P distinct texts of about a.tokens tokens (calibrated on the first)."""
    def text(seed, n_words):
        r = random.Random(seed)
        return f"Conversation {seed}. " + " ".join(r.choice(WORDS) for _ in range(n_words))
    n = a.tokens
    per = ntokens(text(0, 2000)) / 2000
    n_words = int(a.tokens / per)
    for _ in range(4):  # converge on the target with the real tokenizer
        got = ntokens(text(0, n_words))
        if abs(got - a.tokens) < 16:
            break
        n_words = int(n_words * a.tokens / got)
    return [text(i, n_words) for i in range(a.parallel)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def post(url, body, timeout=7200):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def measure(name, cmd, port, texts):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except Exception:
                time.sleep(0.5)
        else:
            sys.exit(f"{name} did not start: {' '.join(cmd)}")
        idle = rss_mib(proc.pid, "VmRSS")
        t0 = time.time()

        def one(t):
            b = post(url + "/v1/completions", {"model": Path(a.model).stem, "prompt": t, "max_tokens": a.max_tokens,
                                              "temperature": 0, "ignore_eos": True})
            return b["usage"]["prompt_tokens"], b["usage"]["completion_tokens"]
        with cf.ThreadPoolExecutor(len(texts)) as ex:
            usage = list(ex.map(one, texts))
        peak = rss_mib(proc.pid, "VmHWM")
        secs = time.time() - t0
        print(f"  {name}: {secs:.0f} s, idle {idle:.1f} MiB, peak {peak:.1f} MiB, usage {usage}",
              file=sys.stderr, flush=True)
        return {"idle_mib": idle, "peak_mib": peak, "seconds": secs, "usage": usage}
    finally:
        proc.terminate()
        proc.wait(60)


texts = prompts()
res = {"model": a.model, "parallel": a.parallel, "ctx": a.ctx, "threads": a.threads}
port = free_port()
res["g4"] = measure("g4 serve", [a.g4, "serve", "-m", a.model, "--port", str(port), "--parallel",
                                 str(a.parallel), "--ctx", str(a.ctx), "-t", str(a.threads)], port, texts)
held = max(p + c for p, c in res["g4"]["usage"])
plan = json.loads(subprocess.run([a.g4, "plan", a.model, "--ctx", str(held), "--parallel", str(a.parallel),
                                  "-t", str(a.threads), "--json"], capture_output=True, text=True,
                                 check=True).stdout)
res["plan_mib"] = plan["total_bytes"] / 1048576
res["plan_ctx"] = held
if not a.no_llama:
    port = free_port()
    res["llama"] = measure("llama-server", [a.llama_server, "-m", a.model, "--port", str(port), "-np",
                                            str(a.parallel), "-c", str(a.parallel * a.ctx), "-t",
                                            str(a.threads), "-fa", "on", "--cache-ram", "0"], port, texts)

g = res["g4"]["peak_mib"]
print(f"{a.parallel} concurrent completions of {res['g4']['usage'][0][0]} prompt tokens "
      f"(+{a.max_tokens}), --parallel {a.parallel} --ctx {a.ctx}, {a.threads} threads\n")
print("| | peak RSS | vs g4 plan | g4 / this |\n|---|---|---|---|")
print(f"| g4 plan (--ctx {held} --parallel {a.parallel}) | {res['plan_mib']:.1f} MiB | | |")
print(f"| g4 serve | {g:.1f} MiB | {100 * (g / res['plan_mib'] - 1):+.1f}% | |")
if "llama" in res:
    l = res["llama"]["peak_mib"]
    print(f"| llama-server -np {a.parallel} -c {a.parallel * a.ctx} -fa on | {l:.1f} MiB | | {g / l:.2f} |")
if a.json:
    Path(a.json).write_text(json.dumps(res, indent=1))
