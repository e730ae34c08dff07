#!/usr/bin/env python3
"""llama.cpp logits on the files `g4 quantize` writes (for Golden.LogitParityQuantized*).

For each type T in --types: runs `g4 quantize MODEL /tmp/.../T.gguf --type T`, records the
output's SHA-256 (the test first checks that g4 reproduces the same bytes), then loads the file
with llama.cpp (llama-cpp-python) and writes tests/golden/logits_quant_T.json in the format of
logits_gemma3_270m.json (the same functions: this script imports scripts/gen_logit_fixtures.py;
the same settings except n_threads=1, and 5 of its 9 prompts, to keep the run short on a busy
2-core machine). It also re-runs every row with n_batch=1 and records llama.cpp's agreement
with itself on that file ("self_agreement"), the noise floor the test gates on.

Regenerate with (from the repository root, after building build/release/g4):

    .venv/bin/python scripts/gen_quant_logit_fixtures.py --g4 build/release/g4 --model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --types q8_0,f16 --outdir tests/golden
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_logit_fixtures as glf  # noqa: E402

PROMPTS = ["short_en", "french", "python", "json", "mixed_emoji"]
KWARGS = dict(glf.LLAMA_KWARGS, n_threads=1, n_threads_batch=1)
COMMAND = (".venv/bin/python scripts/gen_quant_logit_fixtures.py --g4 build/release/g4 "
           "--model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --types q8_0,f16 "
           "--outdir tests/golden")


def self_agreement(path, fx):
    """Top-1 agreement and mean KL(fixture || rerun) of llama.cpp with n_batch=1, computed as
    scripts/measure_llamacpp_noise.py does."""
    llm = Llama(path, **dict(KWARGS, n_batch=1, n_ubatch=1))
    rows = agree = 0
    kl = 0.0
    for p in fx["prompts"]:
        ids = p["prompt_ids"] + p["continuation"]
        llm.reset()
        llm.eval(ids)
        S = np.array(llm.scores[: len(ids)], dtype=np.float64)
        for r in range(len(ids)):
            row = S[r]
            m = row.max()
            lse = m + np.log(np.exp(row - m).sum())
            ti = p["top_ids"][r]
            lp_ref = np.array(p["top_logits"][r]) - p["logsumexp"][r]
            lp_new = row[ti] - lse
            k = float(np.sum(np.exp(lp_ref) * (lp_ref - lp_new)))
            ref_rest = max(1e-12, 1 - np.exp(lp_ref).sum())
            new_rest = max(1e-12, 1 - np.exp(lp_new).sum())
            k += ref_rest * np.log(ref_rest / new_rest)
            kl += k
            agree += int(np.argmax(row) == ti[0])
            rows += 1
    return {"n_batch": 1, "rows": rows, "top1": agree / rows, "mean_kl": kl / rows}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--g4", default="build/release/g4")
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--types", default="q8_0,f16")
    ap.add_argument("--outdir", default="tests/golden")
    args = ap.parse_args()
    model = os.path.expanduser(args.model)
    in_sha = glf.sha256_file(model)
    with tempfile.TemporaryDirectory() as tmp:
        for t in args.types.split(","):
            t0 = time.time()
            path = os.path.join(tmp, t + ".gguf")
            subprocess.run([args.g4, "quantize", model, path, "--type", t, "-t", "2"], check=True)
            out = {
                "generator": "llama-cpp-python %s" % llama_cpp.__version__,
                "command": COMMAND,
                "quantize": "g4 quantize MODEL OUT --type %s" % t,
                "type": t,
                "input_sha256": in_sha,
                "model_sha256": glf.sha256_file(path),
                "file_size": os.path.getsize(path),
            }
            glf.LLAMA_KWARGS.update(KWARGS)  # settings_dict reports these
            llm = Llama(model_path=path, **KWARGS)
            out["settings"] = glf.settings_dict(llm)
            out["prompts"] = [glf.run_prompt(llm, n, text) for n, text in glf.PROMPTS
                              if n in PROMPTS]
            del llm
            out["self_agreement"] = self_agreement(path, out)
            dst = os.path.join(args.outdir, "logits_quant_%s.json" % t)
            with open(dst, "w", encoding="utf-8") as f:
                json.dump(out, f, separators=(",", ":"), ensure_ascii=False)
                f.write("\n")
            print("%s: sha256 %s, llama.cpp self-agreement top-1 %.4f mean KL %.2e, wrote %s "
                  "(%.0fs)" % (t, out["model_sha256"], out["self_agreement"]["top1"],
                               out["self_agreement"]["mean_kl"], dst, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
