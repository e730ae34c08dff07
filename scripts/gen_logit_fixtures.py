#!/usr/bin/env python3
"""Generate golden logit / perplexity fixtures for g4 from llama.cpp.

Reference implementation: llama.cpp through llama-cpp-python (module
``llama_cpp``; the exact version is recorded in every JSON as "generator").

Regenerate with (from the repository root; runs in a few minutes on 2 cores):

    .venv/bin/python scripts/gen_logit_fixtures.py --model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --outdir tests/golden

Outputs:

  tests/golden/logits_gemma3_270m.json
      For each of 9 built-in prompts: prompt token ids (BOS prepended), a
      64-token greedy continuation (argmax of the last logits row, never
      stopping at EOS), and for every row p in [0, len(prompt)+64) -- the
      logits after consuming token p, i.e. the prediction of token p+1 --
      the top-10 token ids (descending logit; ties broken by lower id),
      their logits (rounded to 5 decimals) and the log-sum-exp over the
      full vocabulary (float64).  The prompt is evaluated with one
      llm.eval(prompt_ids) call (internally split into n_batch=512 token
      batches); every continuation token is then evaluated one at a time.

  tests/golden/perplexity_gemma3_270m.json
      Perplexity of /usr/share/common-licenses/Apache-2.0.  The file bytes
      are tokenized without BOS, split into consecutive chunks of
      ctx-1 = 511 tokens (a final chunk shorter than 2 tokens is dropped),
      and each chunk is evaluated from an empty KV cache as [BOS=2] + chunk.
      Every chunk token i (i = 0..len-1) is scored from the row of the
      preceding position (row 0, after BOS, predicts chunk[0]).
      perplexity = exp(nll_sum / n_predicted); log-softmax in float64.

Reference setup (also recorded under "settings"):
    Llama(model_path, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=2,
          n_threads_batch=2, logits_all=True, verbose=False, seed=0)
    default KV cache type (f16), flash attention disabled (the default).
    Prompts tokenized with llm.tokenize(text.encode(), add_bos=True,
    special=False).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np

import llama_cpp
from llama_cpp import Llama

EXPECTED_MODEL_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
COMMAND = (
    ".venv/bin/python scripts/gen_logit_fixtures.py "
    "--model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --outdir tests/golden"
)
N_CONTINUATION = 64
TOP_K = 10
LOGIT_DECIMALS = 5
LSE_DECIMALS = 6
PPL_FILE = "/usr/share/common-licenses/Apache-2.0"
PPL_CTX = 512

LLAMA_KWARGS = dict(
    n_ctx=2048,
    n_batch=512,
    n_ubatch=512,
    n_threads=2,
    n_threads_batch=2,
    logits_all=True,
    verbose=False,
    seed=0,
)

# ---------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------

LONG_ESSAY = """\
The Lighthouse Keepers of Varnholm

For nearly three centuries the small island of Varnholm, a crooked finger of granite in the northern sea, was known to sailors for one thing only: its lighthouse. The tower itself was not remarkable. It was built of grey stone quarried on the island, it stood a modest thirty-one meters tall, and its lantern was, by the standards of the great coastal lights, rather dim. What made Varnholm famous was the unbroken line of keepers who tended it, and the peculiar logbooks they left behind.

The first keeper, a former ship's carpenter named Aldous Brenner, arrived in the spring of 1702 with a wife, two goats, and a crate of candles. His instructions from the harbor council were brief: keep the light burning from dusk until dawn, record every vessel that passed, and note the weather at each change of watch. Brenner followed these instructions with a thoroughness that bordered on obsession. His entries describe not only the ships and the wind, but also the color of the sea at sunrise, the number of gulls on the western rocks, the taste of the rainwater in the cistern, and, on one memorable occasion, a long argument with a goat about the ownership of a wool blanket.

When Brenner died in 1741, his daughter Maren took over the light, and she kept the logbook in the same meticulous style. It became a tradition. Each new keeper inherited not only the tower but also the habit of writing everything down, and over the generations the logbooks grew into an extraordinary archive. Historians who have studied them describe a record of daily life so detailed that it is possible to reconstruct, almost hour by hour, the weather of the northern sea for more than two hundred years.

The value of that record was not obvious at first. For most of the nineteenth century the logbooks sat in a damp storeroom beneath the lantern, slowly gathering mold. It was only in 1923 that a young meteorologist named Ingrid Sollas, stranded on the island for a week by a storm, began to read them out of boredom. She quickly realized that the keepers had, without intending to, produced one of the longest continuous series of weather observations anywhere in the world. The temperatures were written in three different scales, the wind directions in an old system of thirty-two points, and the spelling changed with every keeper, but the observations themselves were careful and consistent.

Sollas spent the next eleven years transcribing the logbooks by hand. Her colleagues considered the project eccentric; one of them wrote that she was "counting seagulls while the rest of us do science." Yet when her tables were finally published, they changed the way researchers thought about the climate of the region. The records showed long, slow cycles of warmer and colder decades, sudden years of unusual storms, and a gradual shift in the date of the first autumn frost. Later studies confirmed many of her conclusions using ice cores and tree rings, but the lighthouse logbooks remained unique in one respect: they described not only what the weather was, but what it felt like to live through it.

What lessons can we draw from the keepers of Varnholm? Perhaps the most important is that careful attention, sustained over a long time, can produce knowledge that no single person could have planned. None of the keepers set out to study the climate. They simply wrote down what they saw, every day, without skipping the boring parts. The result was a gift to people they would never meet, and a reminder that the"""

PROMPTS = [
    ("short_en", "The capital of France is Paris, and the capital of Germany is"),
    ("long_en", LONG_ESSAY),
    (
        "french",
        "Il était une fois, dans un petit village au bord de la mer, une vieille "
        "boulangère qui se levait chaque matin avant l'aube pour préparer",
    ),
    ("chinese", "人工智能是计算机科学的一个分支，它试图理解智能的本质，并生产出"),
    (
        "russian",
        "Москва — столица России, крупнейший по численности населения город "
        "страны. Город расположен на реке",
    ),
    (
        "python",
        "def fibonacci(n: int) -> list[int]:\n"
        '    """Return the first n Fibonacci numbers."""\n'
        "    result = []\n"
        "    a, b = 0, 1\n"
        "    for _ in range(n):\n",
    ),
    (
        "c_code",
        "#include <stdio.h>\n"
        "#include <stdlib.h>\n"
        "\n"
        "/* Reverse a singly linked list in place. */\n"
        "struct node {\n"
        "    int value;\n"
        "    struct node *next;\n"
        "};\n"
        "\n"
        "struct node *reverse(struct node *head) {\n",
    ),
    (
        "json",
        '{\n  "id": 4217,\n  "name": "Ada Lovelace",\n  "email": "ada@example.org",\n'
        '  "roles": ["admin", "editor"],\n  "active": true,\n  "address": {\n'
        '    "street": "12 St James\'s Square",\n    "city": ',
    ),
    (
        "mixed_emoji",
        "Hello 👋 world! Bonjour le monde 🌍, 你好世界 🐉, Привет мир 🚀, "
        "مرحبا بالعالم ✨ — ¿qué tal? 😀🎉 Next:",
    ),
]


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def logsumexp_rows(rows: np.ndarray) -> np.ndarray:
    """Float64 log-sum-exp of each row of a 2-D float32 array."""
    x = rows.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    return (m[:, 0] + np.log(np.exp(x - m).sum(axis=1)))


def top_k_row(row: np.ndarray, k: int):
    """Top-k ids of a 1-D logits row, descending logit, ties -> lower id."""
    cand = np.argpartition(row, -k * 4)[-k * 4:]  # generous candidate set
    # Make sure no tie at the k-th value is cut off by argpartition.
    kth = np.sort(row[cand])[-k]
    cand = np.nonzero(row >= kth)[0]
    order = np.lexsort((cand, -row[cand].astype(np.float64)))
    ids = cand[order][:k]
    return [int(i) for i in ids], [round(float(row[i]), LOGIT_DECIMALS) for i in ids]


def make_llm(model: str) -> Llama:
    return Llama(model_path=model, **LLAMA_KWARGS)


def settings_dict(llm: Llama) -> dict:
    cp = llm.context_params
    s = {k: v for k, v in LLAMA_KWARGS.items() if k != "verbose"}
    s.update(
        {
            "n_ctx_actual": int(llm.n_ctx()),
            "n_vocab": int(llm.n_vocab()),
            "flash_attn": False,
            "flash_attn_type": int(cp.flash_attn_type),
            "type_k": int(cp.type_k),
            "type_v": int(cp.type_v),
            "kv_type": "f16",
            "swa_full": bool(cp.swa_full),
            "add_bos": True,
            "special": False,
            "bos_id": int(llm.token_bos()),
            "eos_id": int(llm.token_eos()),
            "n_continuation": N_CONTINUATION,
            "decode": "greedy argmax of last row (numpy argmax, lowest id on ties), "
                      "one token per llm.eval, no EOS stop",
            "prompt_eval": "single llm.eval(prompt_ids), split into n_batch chunks",
            "top_k": TOP_K,
            "top_order": "descending logit, ties by ascending id",
            "logit_decimals": LOGIT_DECIMALS,
            "logsumexp": "float64 over full vocabulary, rounded to %d decimals" % LSE_DECIMALS,
            "row_semantics": "row p = logits after consuming token p (predicts token p+1); "
                             "rows = len(prompt_ids) + n_continuation",
        }
    )
    return s


# ---------------------------------------------------------------------------
# Logits fixture
# ---------------------------------------------------------------------------

def run_prompt(llm: Llama, name: str, text: str) -> dict:
    ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    llm.reset()
    llm.eval(ids)
    cont = []
    for _ in range(N_CONTINUATION):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        cont.append(nxt)
        llm.eval([nxt])
    n_rows = len(ids) + N_CONTINUATION
    assert llm.n_tokens == n_rows, (llm.n_tokens, n_rows)
    scores = llm.scores[:n_rows]
    top_ids, top_logits = [], []
    for p in range(n_rows):
        i, l = top_k_row(scores[p], TOP_K)
        top_ids.append(i)
        top_logits.append(l)
    lse = []
    for start in range(0, n_rows, 128):
        lse.extend(logsumexp_rows(scores[start:start + 128]).tolist())
    # sanity: greedy continuation == argmax of the preceding rows
    for j, t in enumerate(cont):
        assert top_ids[len(ids) - 1 + j][0] == t or \
            top_logits[len(ids) - 1 + j][0] == top_logits[len(ids) - 1 + j][1], (name, j)
    return {
        "name": name,
        "text": text,
        "prompt_ids": [int(t) for t in ids],
        "continuation": cont,
        "top_ids": top_ids,
        "top_logits": top_logits,
        "logsumexp": [round(float(v), LSE_DECIMALS) for v in lse],
    }


# ---------------------------------------------------------------------------
# Perplexity fixture
# ---------------------------------------------------------------------------

def run_perplexity(llm: Llama, path: str, ctx: int) -> dict:
    with open(path, "rb") as f:
        data = f.read()
    ids = llm.tokenize(data, add_bos=False, special=False)
    bos = int(llm.token_bos())
    step = ctx - 1
    chunks = [ids[i:i + step] for i in range(0, len(ids), step)]
    if chunks and len(chunks[-1]) < 2:
        chunks.pop()
    nll_sum = 0.0
    n_pred = 0
    chunk_ppl = []
    for chunk in chunks:
        llm.reset()
        llm.eval([bos] + chunk)
        n = len(chunk)
        rows = llm.scores[:n]  # row r (after token r of [BOS]+chunk) predicts chunk[r]
        c_nll = 0.0
        for start in range(0, n, 64):
            block = rows[start:start + 64]
            lse = logsumexp_rows(block)
            tgt = np.asarray(chunk[start:start + 64])
            picked = block[np.arange(len(tgt)), tgt].astype(np.float64)
            c_nll += float((lse - picked).sum())
        nll_sum += c_nll
        n_pred += n
        chunk_ppl.append(math.exp(c_nll / n))
    return {
        "generator": "llama-cpp-python %s" % llama_cpp.__version__,
        "command": COMMAND,
        "file": path,
        "file_sha256": hashlib.sha256(data).hexdigest(),
        "ctx": ctx,
        "n_tokens_text": len(ids),
        "n_chunks": len(chunks),
        "chunk_sizes": [len(c) for c in chunks],
        "n_predicted": n_pred,
        "nll_sum": nll_sum,
        "perplexity": math.exp(nll_sum / n_pred),
        "chunk_perplexities": chunk_ppl,
        "settings": {k: v for k, v in LLAMA_KWARGS.items() if k != "verbose"},
    }


# ---------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--outdir", default="tests/golden")
    ap.add_argument("--ppl-file", default=PPL_FILE)
    ap.add_argument("--only", choices=["logits", "perplexity"], default=None)
    args = ap.parse_args(argv)

    model = os.path.expanduser(args.model)
    t0 = time.time()
    model_sha = sha256_file(model)
    if model_sha != EXPECTED_MODEL_SHA256:
        print("WARNING: model sha256 %s != expected %s" % (model_sha, EXPECTED_MODEL_SHA256),
              file=sys.stderr)
    os.makedirs(args.outdir, exist_ok=True)
    llm = make_llm(model)

    if args.only in (None, "logits"):
        out = {
            "generator": "llama-cpp-python %s" % llama_cpp.__version__,
            "command": COMMAND,
            "settings": settings_dict(llm),
            "model_sha256": model_sha,
            "prompts": [],
        }
        for name, text in PROMPTS:
            t1 = time.time()
            rec = run_prompt(llm, name, text)
            out["prompts"].append(rec)
            n_cont_rows = range(len(rec["prompt_ids"]) - 1,
                                len(rec["prompt_ids"]) - 1 + N_CONTINUATION)
            ties = sum(1 for r in n_cont_rows
                       if rec["top_logits"][r][0] - rec["top_logits"][r][1] < 0.05)
            print("%-12s prompt=%4d rows=%4d near_ties(<0.05)=%2d  %.1fs  cont=%r" % (
                name, len(rec["prompt_ids"]), len(rec["top_ids"]), ties, time.time() - t1,
                llm.detokenize(rec["continuation"]).decode("utf-8", "replace")[:80]))
        path = os.path.join(args.outdir, "logits_gemma3_270m.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(out, f, separators=(",", ":"), ensure_ascii=False)
            f.write("\n")
        print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))

    if args.only in (None, "perplexity"):
        t1 = time.time()
        ppl = run_perplexity(llm, args.ppl_file, PPL_CTX)
        ppl["model_sha256"] = model_sha
        path = os.path.join(args.outdir, "perplexity_gemma3_270m.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(ppl, f, indent=1)
            f.write("\n")
        print("perplexity: tokens=%d chunks=%d predicted=%d nll=%.6f ppl=%.6f chunks=%s %.1fs" % (
            ppl["n_tokens_text"], ppl["n_chunks"], ppl["n_predicted"], ppl["nll_sum"],
            ppl["perplexity"], ["%.4f" % c for c in ppl["chunk_perplexities"]], time.time() - t1))
        print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))

    print("total time %.1fs" % (time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
