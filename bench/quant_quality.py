#!/usr/bin/env python3
"""Quality of each `g4 quantize` type on the default model: perplexity and KL divergence
against an F16 base, all computed by g4 (`g4 perplexity MODEL TEXT --kld BASE --json`).

The base is the default Gemma 3 270M Q4_K_M file re-encoded to F16 by `g4 quantize --type f16`:
the original bf16/f32 checkpoint is not available here, so the best base we have is the
Q4_K_M weights themselves, kept at (almost) full precision. Every other type is quantized from
the same Q4_K_M file, so its numbers measure the loss of re-quantising those weights (a real
llama-quantize run from the original checkpoint would lose less). The text is the one of
Golden.PerplexityWithinOnePercent (the Apache-2.0 licence, 512-token chunks).

Run from the repository root (a few minutes on 2 cores):

    .venv/bin/python bench/quant_quality.py --g4 build/release/g4 --threads 1

(--threads does not change the numbers: g4's per-token arithmetic is independent of the
thread partition; one thread avoids spin-waiting on a busy machine.)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TYPES = ["bf16", "q8_0", "q6_k", "q5_0", "q4_k", "q4_0"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--g4", default="build/release/g4")
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--text", default="/usr/share/common-licenses/Apache-2.0")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        def quantize(t):
            out = os.path.join(tmp, t + ".gguf")
            subprocess.run([args.g4, "quantize", args.model, out, "--type", t,
                            "-t", str(args.threads)], check=True, stdout=subprocess.DEVNULL)
            return out

        base = quantize("f16")
        base_size = os.path.getsize(base)
        models = [("Q4_K_M (downloaded)", args.model)]
        models += [(t, None) for t in TYPES]
        for name, path in models:
            t0 = time.time()
            if path is None:
                path = quantize(name)
            r = subprocess.run([args.g4, "perplexity", path, args.text, "--ctx", str(args.ctx),
                                "--kld", base, "--json", "-t", str(args.threads)],
                               check=True, capture_output=True, text=True)
            j = json.loads(r.stdout)
            j["name"], j["size"] = name, os.path.getsize(path)
            rows.append(j)
            print("%-20s done in %.0fs" % (name, time.time() - t0), file=sys.stderr)
            if path != base and path != args.model:
                os.remove(path)
    print("| type | file MB | PPL | PPL / base | mean KL | 99th pct KL | top-1 agreement |")
    print("|---|---|---|---|---|---|---|")
    print("| f16 (base) | %.1f | %.4f | 1 | 0 | 0 | 100%% |" % (base_size / 1e6, rows[0]["ppl_base"]))
    for j in rows:
        print("| %s | %.1f | %.4f | %.4f | %.5f | %.4f | %.2f%% |" % (
            j["name"], j["size"] / 1e6, j["ppl_model"], j["ppl_ratio"], j["mean_kl"],
            j["p99_kl"], 100 * j["top1_agreement"]))
    print("\n%d tokens scored in %d chunks of %d (base PPL %.4f)" % (
        rows[0]["n_predicted"], rows[0]["n_chunks"], args.ctx, rows[0]["ppl_base"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
