"""Long-context speed, g4 vs llama.cpp's llama-bench on the same GGUF and threads, in one run
(issue 14's benchmark). Alternates the engines test by test:

  prefill  P tokens from an empty context      llama-bench -fa 1 -p P -n 0
                                               g4 bench -p P -n 0
  decode   N tokens after D tokens of context  llama-bench -fa 1 -p 0 -n N -d D
                                               g4 bench -p 0 -n N -d D --profile [--sparse]

and prints tokens/s with g4/llama.cpp ratios, plus g4's attention time per decoding step
(dense vs --sparse, from --profile) and its ratio.

    .venv/bin/python bench/long_context.py [--model M] [--threads 2] [--reps 1]
        [--prefill 16384,32768] [--depths 8192,16384,32768] [-n 32] [--g4 build/release/g4]
        [--llama-bench ~/.cache/g4/llama.cpp/bin/llama-bench] [--kv-fill prefill|random]
        [--sparse-args "--sparse-budget 8192 --sparse-page 16"] [--json OUT.json]

A depth at or past the model's trained context (32768 for the default model) is lowered to
ctx - n - 1 so the decoded tokens fit (g4 caps its context at the trained length). Both
engines get the same lowered depth. Both keep their warm-ups (llama-bench: a short eval
before each test; g4 bench: one untimed prefill run before a prefill test, and each depth is
prefilled once, untimed, then copied into the timed runs). --kv-fill random makes g4's
depth context from random K/V rows instead of a prefill (g4 only; the decode timing is the
same work, and it saves the untimed prefill of each depth); the default is a real prefill.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--model", default=os.path.expanduser("~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf"))
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=1)
ap.add_argument("--prefill", default="16384,32768", help="prompt lengths (empty: skip)")
ap.add_argument("--depths", default="8192,16384,32768", help="decode depths (empty: skip)")
ap.add_argument("-n", type=int, default=32, help="decoded tokens per decode test")
ap.add_argument("--ctx-train", type=int, default=32768, help="the model's trained context")
ap.add_argument("--g4", default=str(root / "build/release/g4"))
ap.add_argument("--llama-bench", default=os.path.expanduser("~/.cache/g4/llama.cpp/bin/llama-bench"))
ap.add_argument("--kv-fill", default="prefill", choices=["prefill", "random"])
ap.add_argument("--no-sparse", action="store_true", help="skip the g4 --sparse decode runs")
ap.add_argument("--sparse-args", default="", help="extra g4 flags for the sparse runs, e.g. "
                "'--sparse-budget 8192 --sparse-page 16'")
ap.add_argument("--json", default=None, help="also write every result to this file")
a = ap.parse_args()

ints = lambda s: [int(x) for x in s.split(",") if x.strip()]


def run(cmd):
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    print(f"  {time.time() - t0:6.0f} s  {' '.join(cmd)}", file=sys.stderr, flush=True)
    return p.stdout


def llama(p, n, d):
    out = run([a.llama_bench, "-m", a.model, "-t", str(a.threads), "-fa", "1", "-p", str(p),
               "-n", str(n), "-d", str(d), "-r", str(a.reps), "-o", "json"])
    rows = json.loads(out)
    assert len(rows) == 1, rows
    return rows[0]["avg_ts"]


def g4(p, n, d, sparse=False):
    cmd = [a.g4, "bench", a.model, "-t", str(a.threads), "-p", str(p), "-n", str(n),
           "-r", str(a.reps), "--json"]
    if d:
        cmd += ["-d", str(d), "--kv-fill", a.kv_fill]
    if n:
        cmd += ["--profile"]
    if sparse:
        cmd += ["--sparse"] + a.sparse_args.split()
    j = json.loads(run(cmd).strip().splitlines()[-1])
    if p:
        return j["pp"]["tokens_per_s"], None
    return j["tg"]["tokens_per_s"], j["tg"].get("profile_ms_per_step", {}).get("attention")


results = {"model": a.model, "threads": a.threads, "reps": a.reps, "n": a.n,
           "sparse_args": a.sparse_args,
           "kv_fill": a.kv_fill, "prefill": [], "decode": []}
for p in ints(a.prefill):
    ll = llama(p, 0, 0)
    gg, _ = g4(p, 0, 0)
    results["prefill"].append({"tokens": p, "llama": ll, "g4": gg})
for d in ints(a.depths):
    dd = min(d, a.ctx_train - a.n - 1)
    ll = llama(0, a.n, dd)
    gd, att_d = g4(0, a.n, dd)
    row = {"depth": d, "depth_run": dd, "llama": ll, "g4": gd, "g4_attn_ms": att_d}
    if not a.no_sparse:
        gs, att_s = g4(0, a.n, dd, sparse=True)
        row.update({"g4_sparse": gs, "g4_sparse_attn_ms": att_s})
    results["decode"].append(row)

print(f"model {a.model}, {a.threads} threads, {a.reps} rep(s), llama-bench -fa 1; tokens/s\n")
if results["prefill"]:
    print("| prefill | llama.cpp | g4 | g4 / llama.cpp |\n|---|---|---|---|")
    for r in results["prefill"]:
        print(f"| {r['tokens']} | {r['llama']:.1f} | {r['g4']:.1f} | {r['g4'] / r['llama']:.2f}x |")
    print()
if results["decode"]:
    print("| decode depth | llama.cpp | g4 dense | g4 sparse | dense / llama.cpp | "
          "sparse / llama.cpp | g4 attention ms/token dense | sparse | dense / sparse |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results["decode"]:
        gs = r.get("g4_sparse")
        ad, as_ = r["g4_attn_ms"], r.get("g4_sparse_attn_ms")
        f = lambda v, fmt: fmt.format(v) if v is not None else "-"
        print(f"| {r['depth_run']} | {r['llama']:.2f} | {r['g4']:.2f} | {f(gs, '{:.2f}')} | "
              f"{r['g4'] / r['llama']:.2f}x | {f(gs and gs / r['llama'], '{:.2f}x')} | "
              f"{f(ad, '{:.2f}')} | {f(as_, '{:.2f}')} | {f(ad and as_ and ad / as_, '{:.2f}x')} |")
if a.json:
    Path(a.json).write_text(json.dumps(results, indent=1))
