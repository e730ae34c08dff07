"""KV bytes and decode time per token, dense vs sparse, of a Gemma-4-31B-shaped stack at 128K and
256K tokens of context (issue 14). Random weights (bench/shape_models.py's g4-31b file: the real
per-layer dimensions, the first 6 of 60 layers: 5 sliding + 1 global), and a random-filled KV
cache (`g4 bench --kv-fill random`): a 256K-token prefill would take hours on this machine, so
the context is written as random K/V rows and page summaries instead. Only speed and memory
mean anything here: which pages sparse routing selects from random keys says nothing of quality.

    /work/venv-hf/bin/python bench/long_context_shape.py [--g4 build/release/g4] [-t 2] [-n 8] [--reps 2]
        [--sparse-args "--sparse-budget 2048 --sparse-page 32"]

The shape file says 131072 tokens of trained context (shape_models.py's choice); Gemma 4 31B has
262144, so the script first writes a copy with context_length 262144
(~/.cache/g4/shapes/g4-31b-ctx256k-q4_k_m.gguf; nothing else changes). For each depth it runs
`g4 plan FILE --ctx D --kv-type f16 [--sparse] --json` (predicted KV bytes) and
`g4 bench FILE --kv-fill random -d D -p 0 -n N -r R -t T --json [--sparse]`, dense and sparse
alternating, and a depth-1024 dense run as the baseline (the stack's time without long-range
attention): attention time per token = decode time - that baseline.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
HOME = Path(os.environ.get("G4_HOME", Path.home() / ".cache/g4"))
SRC = HOME / "shapes/g4-31b-q4_k_m.gguf"
DST = HOME / "shapes/g4-31b-ctx256k-q4_k_m.gguf"
CTX = 262144


def patched():
    if DST.exists():
        return DST
    if not SRC.exists():
        sys.exit("%s missing: /work/venv-hf/bin/python bench/shape_models.py make --shapes g4-31b "
                 "--quants q4_k_m" % SRC)
    tmp = DST.with_suffix(".tmp")
    shutil.copyfile(SRC, tmp)
    from gguf import GGUFReader  # needs gguf-py (/work/venv-hf)
    r = GGUFReader(str(tmp), "r+")
    f = r.fields["gemma4.context_length"]
    f.parts[f.data[0]][0] = CTX
    r.data.flush()
    del r
    os.replace(tmp, DST)
    return DST


def run_json(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), p.stderr[-2000:]))
    try:
        return json.loads(p.stdout)  # g4 plan --json: one document over several lines
    except json.JSONDecodeError:
        return json.loads(p.stdout.strip().splitlines()[-1])  # g4 bench: its last line


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--g4", default=str(root / "build/release/g4"))
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-n", type=int, default=8)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--depths", default="131072,261632",
                    help="the largest must leave room for -n + 17 tokens in 262144")
    ap.add_argument("--kv-type", default="f16")
    ap.add_argument("--sparse-args", default="",
                    help="extra g4 flags for the sparse runs, e.g. '--sparse-budget 2048 "
                    "--sparse-page 32' (the default routing before 2026-12-08)")
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()
    model = str(patched())
    depths = [int(x) for x in a.depths.split(",")]
    rows = []

    def bench(d, sparse):
        cmd = [a.g4, "bench", model, "--kv-fill", "random", "-d", str(d), "-p", "0", "-n", str(a.n),
               "-r", str(a.reps), "-t", str(a.threads), "--kv-type", a.kv_type, "--json"]
        if sparse:
            cmd += ["--sparse"] + a.sparse_args.split()
        print("+", " ".join(cmd), file=sys.stderr, flush=True)
        j = run_json(cmd)
        return {"ms_per_token": 1e3 / j["tg"]["tokens_per_s"], "runs": j["tg"]["runs"],
                "kv_bytes": j["kv_bytes"], "peak_rss_bytes": j["peak_rss_bytes"]}

    # g4 plan takes the page size (its summaries' bytes) of the sparse flags, nothing else.
    sa = a.sparse_args.split()
    plan_page_args = []
    for i, x in enumerate(sa):
        if x == "--sparse-page" and i + 1 < len(sa):
            plan_page_args = ["--sparse-page", sa[i + 1]]
    base = bench(1024, False)
    for d in depths:
        r = {"depth": d}
        for mode, sparse in (("dense", False), ("sparse", True)):
            plan = run_json([a.g4, "plan", model, "--ctx", str(d), "--kv-type", a.kv_type, "--json"]
                            + (["--sparse"] + plan_page_args if sparse else []))
            r[mode] = bench(d, sparse)
            r[mode]["plan_kv_bytes"] = plan["kv"]["bytes"]
            r[mode]["attention_ms"] = r[mode]["ms_per_token"] - base["ms_per_token"]
        rows.append(r)
    out = {"model": model, "threads": a.threads, "n": a.n, "reps": a.reps, "kv_type": a.kv_type,
           "baseline_d1024": base, "rows": rows}
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(out, indent=1))
    mib = 1 / 1048576
    print("| depth | mode | KV (g4 plan) | KV held (measured) | peak RSS | ms/token | "
          "attention ms/token (- d1024 baseline %.0f ms) |" % base["ms_per_token"])
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        for mode in ("dense", "sparse"):
            x = r[mode]
            print("| %d | %s | %.0f MiB | %.0f MiB | %.0f MiB | %.0f | %.0f |" % (
                r["depth"], mode, x["plan_kv_bytes"] * mib, x["kv_bytes"] * mib,
                x["peak_rss_bytes"] * mib, x["ms_per_token"], x["attention_ms"]))
        print("| %d | dense/sparse | | | | %.2fx | %.2fx |" % (
            r["depth"], r["dense"]["ms_per_token"] / r["sparse"]["ms_per_token"],
            r["dense"]["attention_ms"] / max(1e-9, r["sparse"]["attention_ms"])))


if __name__ == "__main__":
    sys.exit(main())
