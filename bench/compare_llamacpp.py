"""g4 vs llama.cpp (llama-cpp-python) on the same GGUF with the same threads, in one run,
alternating the two engines each repetition. Prints a markdown table with ratios.

    .venv/bin/python bench/compare_llamacpp.py [--model M] [--threads 2] [--reps 5] [-p 512] [-n 128]
        [--llama-bench ~/.cache/g4/llama.cpp/bin/llama-bench]

With --llama-bench (built by scripts/build_llama_server.sh) the llama.cpp side is llama-bench
itself instead of llama-cpp-python. Either way each process's peak RSS (wait4 ru_maxrss) is
reported beside its speed, so memory is compared in the same run too. With
build/release/g4_read_bandwidth built, each rep also records a plain read loop's bandwidth
(decode is bandwidth-bound, and a shared VM's bandwidth moves from minute to minute), and
the decode rates are converted to GB/s of weights: a dense Gemma step reads every tensor of
the file once (the tied embedding as the LM head), so bytes per token = the file's tensor bytes.

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
ap.add_argument("--llama-bench", default=None)
a = ap.parse_args()


def run_rss(cmd):
    """stdout and peak RSS (MiB) of one child process."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with {p.returncode}")
    return out, ru.ru_maxrss / 1024.0


def llama_side():
    if a.llama_bench:
        out, rss = run_rss([a.llama_bench, "-m", a.model, "-p", str(a.p), "-n", str(a.n), "-r", "1",
                            "-t", str(a.threads), "-o", "json"])
        rows = json.loads(out)
        pp = [r["avg_ts"] for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0]
        tg = [r["avg_ts"] for r in rows if r["n_gen"] > 0 and r["n_prompt"] == 0]
        return {"pp": pp, "tg": tg}, rss
    out, rss = run_rss([sys.executable, str(root / "bench/llamacpp_bench.py"), a.model, "-p", str(a.p),
                        "-n", str(a.n), "-t", str(a.threads)])
    return json.loads(out), rss


g4_rss, ll_rss = [], []
# Decode is bound by memory bandwidth, which moves on a shared VM: each rep also records what a
# plain read loop gets (g4_read_bandwidth, huge pages, same thread count), when it is built.
bw_tool = root / "build/release/g4_read_bandwidth"
bw = []


def read_bandwidth():
    if not bw_tool.exists() or a.threads not in (1, 2):
        return None
    out = subprocess.run([str(bw_tool)], capture_output=True, text=True).stdout
    want = f"huge pages, {a.threads} thread"
    for line in out.splitlines():
        if line.startswith(want):
            return float(line.split(":")[1].split()[0])
    return None

g4_pp, g4_tg, ll_pp, ll_tg = [], [], [], []
for r in range(a.reps):
    out, rss = run_rss([a.g4, "bench", a.model, "-p", str(a.p), "-n", str(a.n), "-r", "1", "-t",
                        str(a.threads), "--json"])
    g = json.loads(out)
    g4_rss.append(rss)
    g4_pp.append(g["pp"]["tokens_per_s"])
    g4_tg.append(g["tg"]["tokens_per_s"])
    l, rss = llama_side()
    ll_rss.append(rss)
    ll_pp += l["pp"]
    ll_tg += l["tg"]
    b = read_bandwidth()
    if b is not None:
        bw.append(b)
    print(f"rep {r + 1}/{a.reps}: g4 pp {g4_pp[-1]:.1f} tg {g4_tg[-1]:.1f} | llama.cpp pp {ll_pp[-1]:.1f} "
          f"tg {ll_tg[-1]:.1f}" + (f" | read loop {b:.1f} GB/s" if b is not None else ""), file=sys.stderr)

def ms(v):
    return f"{statistics.mean(v):.1f} ± {statistics.stdev(v) if len(v) > 1 else 0:.1f}"

side = "llama-bench" if a.llama_bench else "llama-cpp-python"
print(f"model: {a.model}, threads: {a.threads}, repetitions: {a.reps} (alternating), "
      f"llama.cpp via {side}\n")
print("| test | g4 tok/s | llama.cpp tok/s | g4 / llama.cpp |")
print("|---|---|---|---|")
print(f"| pp{a.p} | {ms(g4_pp)} | {ms(ll_pp)} | {statistics.mean(g4_pp) / statistics.mean(ll_pp):.2f}x |")
print(f"| tg{a.n} | {ms(g4_tg)} | {ms(ll_tg)} | {statistics.mean(g4_tg) / statistics.mean(ll_tg):.2f}x |")
print(f"| peak RSS MiB (pp{a.p} + tg{a.n} process) | {max(g4_rss):.0f} | {max(ll_rss):.0f} | "
      f"{max(g4_rss) / max(ll_rss):.2f}x |")
if bw:
    print(f"\nplain read loop, {a.threads} thread(s), huge pages, after each rep: "
          f"{min(bw):.1f}-{max(bw):.1f} GB/s (median {statistics.median(bw):.1f})")


def tensor_bytes(path):
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    return sum(int(t.n_bytes) for t in GGUFReader(path).tensors)


tb = tensor_bytes(a.model)
if tb:
    g4_gbs = statistics.mean(g4_tg) * tb / 1e9
    ll_gbs = statistics.mean(ll_tg) * tb / 1e9
    line = (f"decode weight traffic ({tb / 1e6:.1f} MB of tensors per token): g4 {g4_gbs:.1f} GB/s, "
            f"llama.cpp {ll_gbs:.1f} GB/s")
    if bw:
        med = statistics.median(bw)
        line += f" ({100 * g4_gbs / med:.0f}% and {100 * ll_gbs / med:.0f}% of the read loop's median)"
    print(line)
