"""Instruction counts per token (valgrind callgrind) and peak RSS, g4 vs llama.cpp.

    .venv/bin/python bench/callgrind_compare.py [--model M] [--decode 4 12] [--prefill 16 48]
        [--no-prefill] [--no-callgrind] [--rss] [--rss-contexts 512 1024 2048] [--llama-python PY]
        [--llama-bench ~/.cache/g4/llama.cpp/bin-avx2/llama-bench]

Wall-clock numbers on a shared 2-core machine are noisy; instruction counts are not. Each
engine runs its own bench (`g4 bench`, bench/llamacpp_bench.py on llama-cpp-python) under
callgrind with one thread (so no spin-wait instructions are counted) twice with different
token counts, and the difference divided by the extra tokens is the cost of one token: model
loading, start-up and Python cancel out.
  decode:  g4 bench -p 0 -n N runs 1 + N single-token steps            -> (Ir(b) - Ir(a)) / (b - a)
  prefill: bench -p P -n 0 runs one warm-up and one timed P-token prompt -> (Ir(b) - Ir(a)) / 2(b - a)
Valgrind has no AVX-512: under it g4 picks its AVX2 kernels by itself (CPUID shows no
AVX-512), but a llama.cpp built with -march=native for an AVX-512 CPU dies on its first
AVX-512 instruction; its row then says so. --llama-python can name the interpreter of a venv
whose llama-cpp-python was built without AVX-512 (CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON"),
or --llama-bench an AVX2 llama-bench (`scripts/build_llama_server.sh --avx2`), which runs the
same warm-up + timed passes (a P-token warm-up before a prompt, one token before decode).
--rss runs pp512 + tg128 (then prompts of --rss-contexts tokens) under /usr/bin/time -v with
2 threads and reports the peak resident set of each process (llama.cpp's includes the Python
interpreter, ~30 MB).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

root = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--model", default=os.path.expanduser("~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf"))
ap.add_argument("--g4", default=str(root / "build/release/g4"))
ap.add_argument("--decode", type=int, nargs=2, default=[4, 12])
ap.add_argument("--prefill", type=int, nargs=2, default=[16, 48])
ap.add_argument("--no-prefill", action="store_true")
ap.add_argument("--engines", nargs="+", default=["g4", "llama.cpp"])
ap.add_argument("--rss", action="store_true")
ap.add_argument("--no-callgrind", action="store_true")
ap.add_argument("--llama-python", default=sys.executable)
ap.add_argument("--llama-bench", default=None, help="llama-bench binary instead of llama-cpp-python")
ap.add_argument("--rss-contexts", type=int, nargs="*", default=[512, 1024, 2048])
a = ap.parse_args()


def cmd(engine, p, n, threads):
    if engine == "g4":
        return [a.g4, "bench", a.model, "-p", str(p), "-n", str(n), "-r", "1", "-t", str(threads)]
    if a.llama_bench:
        return [a.llama_bench, "-m", a.model, "-p", str(p), "-n", str(n), "-r", "1", "-t", str(threads)]
    return [a.llama_python, str(root / "bench/llamacpp_bench.py"), a.model, "-p", str(p), "-n", str(n),
            "-t", str(threads), "-r", "1"]


def instructions(engine, p, n):
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "cg.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd(engine, p, n, 1),
                       check=True, capture_output=True)
        for line in out.read_text(errors="replace").splitlines():
            m = re.match(r"(?:summary|totals):\s+(\d+)", line)
            if m:
                return int(m.group(1))
    raise RuntimeError("no instruction total in callgrind output")


def peak_rss_mib(argv):
    r = subprocess.run(["/usr/bin/time", "-v"] + argv, check=True, capture_output=True, text=True)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
    return int(m.group(1)) / 1024


rows = []
for eng in [] if a.no_callgrind else a.engines:
    try:
        lo, hi = a.decode
        dec = (instructions(eng, 0, hi) - instructions(eng, 0, lo)) / (hi - lo)
        pre = None
        if not a.no_prefill:
            plo, phi = a.prefill
            pre = (instructions(eng, phi, 0) - instructions(eng, plo, 0)) / (2 * (phi - plo))
    except subprocess.CalledProcessError as e:
        err = e.stderr.decode(errors="replace") if e.stderr else ""
        why = "unrecognised instruction (AVX-512 build?)" if "Unrecognised instruction" in err else f"exit {e.returncode}"
        print(f"{eng}: failed under valgrind: {why}", file=sys.stderr)
        rows.append((eng, None, None, why))
        continue
    rows.append((eng, dec, pre, ""))
    print(f"{eng}: decode {dec / 1e6:.1f} M instructions/token"
          + (f", prefill {pre / 1e6:.1f} M/token" if pre else ""), file=sys.stderr)

if rows:
    print(f"model: {a.model}\ncallgrind, 1 thread; decode tokens {a.decode}, prefill prompts {a.prefill}\n")
    print("| engine | decode M instr/token | prefill M instr/token |")
    print("|---|---|---|")
    for eng, dec, pre, why in rows:
        if dec is None:
            print(f"| {eng} | n/a: {why} | n/a |")
        else:
            print(f"| {eng} | {dec / 1e6:.1f} | " + (f"{pre / 1e6:.1f} |" if pre else "- |"))
    if len(rows) == 2 and rows[0][1] and rows[1][1]:
        g, l = rows[0], rows[1]
        print(f"| {l[0]} / {g[0]} | {l[1] / g[1]:.2f}x | " + (f"{l[2] / g[2]:.2f}x |" if g[2] and l[2] else "- |"))

if a.rss:
    print("\npeak RSS (MiB), 2 threads:\n")
    print("| run | g4 | llama.cpp |")
    print("|---|---|---|")
    runs = [("pp512 + tg128", 512, 128)] + [(f"prompt {c} (n_ctx {c + 16})", c, 0) for c in a.rss_contexts]
    for name, p, n in runs:
        print(f"| {name} | {peak_rss_mib(cmd('g4', p, n, 2)):.0f} | {peak_rss_mib(cmd('llama.cpp', p, n, 2)):.0f} |")
