"""g4 vs llama.cpp (llama-cpp-python) on the same GGUF with the same threads, in one run,
alternating the two engines each repetition. Prints a markdown table with ratios.

    .venv/bin/python bench/compare_llamacpp.py [--model M] [--threads 2] [--reps 5] [-p 512] [-n 128]

Needs `scripts/setup.sh --dev` (llama-cpp-python). Note: llama-cpp-python's eval() samples
nothing but copies logits for the last token each call, a small per-token overhead that
llama-bench does not have.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--model", default=os.path.expanduser("~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf"))
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("-p", type=int, default=512)
ap.add_argument("-n", type=int, default=128)
ap.add_argument("--g4", default=str(root / "build/release/g4"))
a = ap.parse_args()

g4_pp, g4_tg, ll_pp, ll_tg = [], [], [], []
for r in range(a.reps):
    g = json.loads(subprocess.run([a.g4, "bench", a.model, "-p", str(a.p), "-n", str(a.n), "-r", "1",
                                   "-t", str(a.threads), "--json"], check=True, capture_output=True,
                                  text=True).stdout)
    g4_pp.append(g["pp"]["tokens_per_s"])
    g4_tg.append(g["tg"]["tokens_per_s"])
    l = json.loads(subprocess.run([sys.executable, str(root / "bench/llamacpp_bench.py"), a.model, "-p",
                                   str(a.p), "-n", str(a.n), "-t", str(a.threads)], check=True,
                                  capture_output=True, text=True).stdout)
    ll_pp += l["pp"]
    ll_tg += l["tg"]
    print(f"rep {r + 1}/{a.reps}: g4 pp {g4_pp[-1]:.1f} tg {g4_tg[-1]:.1f} | llama.cpp pp {ll_pp[-1]:.1f} "
          f"tg {ll_tg[-1]:.1f}", file=sys.stderr)

def ms(v):
    return f"{statistics.mean(v):.1f} ± {statistics.stdev(v) if len(v) > 1 else 0:.1f}"

print(f"model: {a.model}, threads: {a.threads}, repetitions: {a.reps} (alternating)\n")
print("| test | g4 tok/s | llama.cpp tok/s | g4 / llama.cpp |")
print("|---|---|---|---|")
print(f"| pp{a.p} | {ms(g4_pp)} | {ms(ll_pp)} | {statistics.mean(g4_pp) / statistics.mean(ll_pp):.2f}x |")
print(f"| tg{a.n} | {ms(g4_tg)} | {ms(ll_tg)} | {statistics.mean(g4_tg) / statistics.mean(ll_tg):.2f}x |")
