"""Float64 NumPy reference for g4's guard scores on the default model (Gemma 3 270M Q4_K_M).

Independent of g4's C++ code: weights dequantised by gguf-py's own dequantizers, the Gemma 3
forward of gemma-architecture.md §2.2 in float64 (no activation rounding, float64 KV cache,
embedding scale bf16(sqrt(d)) as in HF), the same forward as scripts/gen_numpy_reference.py.
Token ids are llama.cpp's, taken from tests/golden/guard_gemma3_270m.json (ShieldGemma's own
template, the four built-in policies; g4 builds the same ids, GuardDefaultModel.MatchesLlamaCpp).
For each case the prefix runs once and each policy suffix continues a copy of its cache;
P(Yes) = softmax over the "Yes"/"No" logits of the last suffix position, in float64.
Writes tests/golden/guard_numpy_gemma3_270m.json, read by tests/unit/guard_test.cc
(GuardDefaultModel.MatchesNumpyFloat64Exact). Regenerate with:
    /work/venv-hf/bin/python scripts/gen_guard_numpy_fixture.py --model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf
(any Python with numpy and gguf==0.19.0, e.g. .venv after `scripts/setup.sh --dev`)
"""
import argparse
import copy
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ("/work/venv-hf/bin/python scripts/gen_guard_numpy_fixture.py "
           "--model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf")

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--ids", default=str(ROOT / "tests/golden/guard_gemma3_270m.json"))
ap.add_argument("--out", default=str(ROOT / "tests/golden/guard_numpy_gemma3_270m.json"))
a = ap.parse_args()

t_start = time.time()
r = GGUFReader(a.model)
T = {t.name: t for t in r.tensors}


def W(name):
    t = T[name]
    x = dequantize(t.data, t.tensor_type).astype(np.float64)
    return x.reshape([int(v) for v in reversed(list(t.shape))])


def field(key):
    return r.fields[key].contents()


d = int(field("gemma3.embedding_length"))
L = int(field("gemma3.block_count"))
H = int(field("gemma3.attention.head_count"))
Hkv = int(field("gemma3.attention.head_count_kv"))
hd = int(field("gemma3.attention.key_length"))
Wn = int(field("gemma3.attention.sliding_window"))
eps = float(field("gemma3.attention.layer_norm_rms_epsilon"))
assert L == 18 and d == 640, "script written for Gemma 3 270M"

emb = W("token_embd.weight")  # [vocab, d]
layers = []
for l in range(L):
    b = f"blk.{l}."
    layers.append({k: W(b + k + ".weight") for k in [
        "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm",
        "post_attention_norm", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm"]})
out_norm = W("output_norm.weight")

# HF's embedding scale: sqrt(d) rounded to bfloat16 (round to nearest even).
u = np.array([np.sqrt(d)], dtype=np.float32).view(np.uint32)[0]
embed_scale = float(np.array([((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16],
                             dtype=np.uint32).view(np.float32)[0])
qscale = hd ** -0.5


def rms(x, w=None):
    y = x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return y if w is None else y * w


def gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))


def rope(x, pos, base):
    half = hd // 2
    inv = base ** (-np.arange(half) * 2.0 / hd)
    th = pos[:, None] * inv[None, :]
    c, s = np.cos(th)[:, None, :], np.sin(th)[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], -1)


class Cache:
    def __init__(self):
        self.k = [np.zeros((0, Hkv, hd)) for _ in range(L)]
        self.v = [np.zeros((0, Hkv, hd)) for _ in range(L)]


def forward(ids, cache):
    """Appends ids to the cache; returns the last position's logits [vocab]."""
    n0 = cache.k[0].shape[0]
    n = len(ids)
    pos = np.arange(n0, n0 + n, dtype=np.float64)
    x = emb[ids] * embed_scale
    for l, w in enumerate(layers):
        sliding = (l + 1) % 6 != 0
        h = rms(x, w["attn_norm"])
        q = (h @ w["attn_q"].T).reshape(n, H, hd)
        k = (h @ w["attn_k"].T).reshape(n, Hkv, hd)
        v = (h @ w["attn_v"].T).reshape(n, Hkv, hd)
        q = rms(q, w["attn_q_norm"])
        k = rms(k, w["attn_k_norm"])
        base = 1e4 if sliding else 1e6
        q = rope(q, pos, base) * qscale
        k = rope(k, pos, base)
        cache.k[l] = np.concatenate([cache.k[l], k])
        cache.v[l] = np.concatenate([cache.v[l], v])
        K, V = cache.k[l], cache.v[l]
        kpos = np.arange(K.shape[0])
        att = np.zeros((n, H, hd))
        for hh in range(H):
            kv = hh // (H // Hkv)
            s = q[:, hh, :] @ K[:, kv, :].T
            i, j = pos[:, None], kpos[None, :]
            mask = (j <= i) & ((i - j < Wn) if sliding else True)
            s = np.where(mask, s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            att[:, hh, :] = s @ V[:, kv, :]
        o = att.reshape(n, H * hd) @ w["attn_output"].T
        x = x + rms(o, w["post_attention_norm"])
        h = rms(x, w["ffn_norm"])
        f = (gelu(h @ w["ffn_gate"].T) * (h @ w["ffn_up"].T)) @ w["ffn_down"].T
        x = x + rms(f, w["post_ffw_norm"])
    return rms(x[-1:], out_norm)[0] @ emb.T


src = json.loads(Path(a.ids).read_text())
yes_id, no_id = src["yes_id"], src["no_id"]
cases = []
for c in src["cases"]:
    base = Cache()
    forward(c["prefix"], base)
    scores, odds = [], []
    for sfx in c["suffixes"]:
        cache = copy.deepcopy(base)
        row = forward(sfx, cache)
        dlt = float(row[yes_id] - row[no_id])
        odds.append(dlt)
        scores.append(1.0 / (1.0 + math.exp(-dlt)))
    cases.append({"name": c["name"], "prompt": c["prompt"], "response": c["response"],
                  "prefix": c["prefix"], "suffixes": c["suffixes"], "scores": scores,
                  "log_odds": odds})
    print(c["name"], len(c["prefix"]), [round(s, 6) for s in scores],
          f"{time.time() - t_start:.0f} s")

Path(a.out).write_text(json.dumps({
    "generator": f"numpy {np.__version__} float64 forward, gguf-py dequantizers",
    "command": COMMAND,
    "ids_from": "tests/golden/guard_gemma3_270m.json (llama.cpp tokenizer)",
    "model_sha256": hashlib.sha256(Path(a.model).read_bytes()).hexdigest(),
    "settings": {"embed_scale": embed_scale, "activations": "float64", "kv_cache": "float64"},
    "policies": src["policies"], "yes_id": yes_id, "no_id": no_id, "cases": cases},
    indent=1) + "\n")
print("wrote", a.out, f"{time.time() - t_start:.0f} s")
