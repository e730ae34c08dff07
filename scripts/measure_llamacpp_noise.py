"""How well does llama.cpp agree with itself? Re-evaluates every row of
tests/golden/logits_gemma3_270m.json (made with n_batch=512) with llama.cpp at other batch
sizes, and reports top-1 agreement and mean KL(fixture || rerun) computed exactly as
Golden.LogitParityVsLlamaCpp computes them for g4. This is the noise floor of the reference:
activations are rounded to int8 blocks, so a 1-ulp change in summation order (which llama.cpp
makes when the batch size changes kernels) moves logits by ~0.2. Regenerate with:
    .venv/bin/python scripts/measure_llamacpp_noise.py --model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --out tests/golden/llamacpp_self_agreement.json
"""
import argparse
import json
from pathlib import Path

import numpy as np
import llama_cpp
from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--fixture", default=str(Path(__file__).resolve().parent.parent / "tests/golden/logits_gemma3_270m.json"))
a = ap.parse_args()
fx = json.loads(Path(a.fixture).read_text())
results = []
for nb in (1, 8, 64):
    llm = Llama(a.model, n_ctx=2048, n_batch=nb, n_ubatch=nb, n_threads=2, n_threads_batch=2,
                logits_all=True, verbose=False, seed=0)
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
            k = float((np.exp(lp_ref) * (lp_ref - lp_new)).sum())
            rr = max(1e-12, 1 - np.exp(lp_ref).sum())
            oo = max(1e-12, 1 - np.exp(lp_new).sum())
            kl += k + rr * np.log(rr / oo)
            agree += int(int(row.argmax()) == ti[0])
            rows += 1
    results.append({"n_batch": nb, "rows": rows, "top1": agree / rows, "mean_kl": kl / rows})
    print(results[-1])
Path(a.out).write_text(json.dumps({
    "generator": f"llama-cpp-python {llama_cpp.__version__}",
    "command": ".venv/bin/python scripts/measure_llamacpp_noise.py --model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --out tests/golden/llamacpp_self_agreement.json",
    "reference_n_batch": 512, "reruns": results}, indent=1) + "\n")
