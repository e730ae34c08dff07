"""Float64 NumPy reference logits for the default model (Gemma 3 270M Q4_K_M GGUF).

An implementation independent of g4's C++ code: weights are dequantised by gguf-py's own
dequantizers, and the forward follows gemma-architecture.md §2.2 in float64 with no
activation rounding and an exact (float64) KV cache; embedding scale bf16(sqrt(d)) as in
HF/gemma.cpp. Prompts are the 9 prompts of tests/golden/logits_gemma3_270m.json (same ids).
For each: the prompt, then a 64-token greedy continuation decoded one token at a time with a
KV cache (no stop at EOS); every row stores the top-10 ids/logits and the log-sum-exp.
Regenerate with:
    .venv/bin/python scripts/gen_numpy_reference.py --model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --out tests/golden/logits_numpy_gemma3_270m.json
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import gguf
from gguf import GGUFReader
from gguf.quants import dequantize

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--prompts", default=str(Path(__file__).resolve().parent.parent / "tests/golden/logits_gemma3_270m.json"))
ap.add_argument("--n-gen", type=int, default=64)
a = ap.parse_args()

t_start = time.time()
r = GGUFReader(a.model)
T = {t.name: t for t in r.tensors}

def W(name):
    t = T[name]
    x = dequantize(t.data, t.tensor_type).astype(np.float64)
    shape = [int(v) for v in reversed(list(t.shape))]
    return x.reshape(shape)

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

u = np.array([np.sqrt(d)], dtype=np.float32).view(np.uint32)[0]
embed_scale = float(np.array([((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16], dtype=np.uint32).view(np.float32)[0])
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
    """Appends ids to the cache; returns logits [len(ids), vocab]."""
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
    return rms(x, out_norm) @ emb.T

def summarize(row):
    top = np.argsort(-row, kind="stable")[:10]
    m = row.max()
    lse = float(m + np.log(np.exp(row - m).sum()))
    return [int(t) for t in top], [round(float(row[t]), 5) for t in top], round(lse, 6)

src = json.loads(Path(a.prompts).read_text())
prompts = []
for p in src["prompts"]:
    ids = p["prompt_ids"]
    cache = Cache()
    rows = list(forward(ids, cache))
    cont = []
    for _ in range(a.n_gen):
        nxt = int(np.argmax(rows[-1]))
        cont.append(nxt)
        rows.append(forward([nxt], cache)[0])
    tops = [summarize(rw) for rw in rows]
    prompts.append({"name": p["name"], "prompt_ids": ids, "continuation": cont,
                    "top_ids": [t[0] for t in tops], "top_logits": [t[1] for t in tops],
                    "logsumexp": [t[2] for t in tops]})
    print(f"{p['name']}: {len(ids)} prompt tokens, {len(rows)} rows, {time.time() - t_start:.0f} s")

out = {"generator": f"numpy {np.__version__} float64 reference, gguf-py {gguf.__version__ if hasattr(gguf, '__version__') else ''} dequantizers",
       "command": ".venv/bin/python scripts/gen_numpy_reference.py --model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --out tests/golden/logits_numpy_gemma3_270m.json",
       "settings": {"embed_scale": embed_scale, "kv_cache": "float64", "activations": "float64", "n_gen": a.n_gen},
       "model_sha256": src.get("model_sha256"), "prompts": prompts}
Path(a.out).write_text(json.dumps(out, separators=(",", ":"), ensure_ascii=False) + "\n")
print(f"wrote {a.out} in {time.time() - t_start:.0f} s")
