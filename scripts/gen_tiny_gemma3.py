"""Tiny random-weight Gemma 3 checkpoints (GGUF, written by gguf-py) and their expected logits
from an independent NumPy float64 forward pass written from gemma-architecture.md §2.2 (not
from the C++ code). They exercise what the 270M default model does not: linear x8 RoPE scaling
on global layers (4B+), the 27B query scale (d/H)^-0.5 with head_dim 128-style shapes, GQA
groups > 1, F16 weights, and prompts longer than the sliding window. Regenerate with:
    .venv/bin/python scripts/gen_tiny_gemma3.py --outdir tests/golden/tiny

The engine stores K/V as fp16; the reference rounds K and V to float16 the same way, so the
comparison isolates everything else. Where float32 and float64 values straddle an fp16
rounding boundary the two still differ by one fp16 ulp, which is the floor of that comparison
(and differs between summation orders: the scalar and SIMD kernels straddle different
boundaries). So each model also gets NAME_f32kv.json: the same forward with K/V unrounded, for
the engine with an f32 KV cache, where only float32 arithmetic separates the two.
"""
import argparse
import json
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType

ap = argparse.ArgumentParser()
ap.add_argument("--outdir", required=True)
a = ap.parse_args()
out = Path(a.outdir)
out.mkdir(parents=True, exist_ok=True)

VOCAB = 272  # 256 byte tokens + specials + a few pieces

def vocab():
    toks = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [3, 3, 3, 2] + [6] * 256
    while len(toks) < VOCAB:
        toks.append(f"piece{len(toks)}")
        types.append(1)
    return toks, types

def make(name, L, d, ff, H, Hkv, hd, W, rope_scale, layer_count_for_scale, dtype, seed):
    rng = np.random.default_rng(seed)
    w = {}
    def mat(o, i, s=0.2):
        return (rng.standard_normal((o, i)) * s / np.sqrt(i) * 4).astype(np.float32)
    w["token_embd.weight"] = (rng.standard_normal((VOCAB, d)) * 0.5).astype(np.float32)
    w["output_norm.weight"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
    for l in range(L):
        b = f"blk.{l}."
        w[b + "attn_norm.weight"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        w[b + "attn_q.weight"] = mat(H * hd, d)
        w[b + "attn_k.weight"] = mat(Hkv * hd, d)
        w[b + "attn_v.weight"] = mat(Hkv * hd, d)
        w[b + "attn_output.weight"] = mat(d, H * hd)
        w[b + "attn_q_norm.weight"] = (1 + 0.1 * rng.standard_normal(hd)).astype(np.float32)
        w[b + "attn_k_norm.weight"] = (1 + 0.1 * rng.standard_normal(hd)).astype(np.float32)
        w[b + "post_attention_norm.weight"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        w[b + "ffn_norm.weight"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        w[b + "ffn_gate.weight"] = mat(ff, d)
        w[b + "ffn_up.weight"] = mat(ff, d)
        w[b + "ffn_down.weight"] = mat(d, ff)
        w[b + "post_ffw_norm.weight"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
    if dtype == "f16":  # the engine reads what the file holds: round the reference's copy too
        for k in w:
            if w[k].ndim == 2:
                w[k] = w[k].astype(np.float16).astype(np.float32)

    path = out / f"{name}.gguf"
    g = GGUFWriter(str(path), "gemma3")
    g.add_name(name)
    g.add_context_length(256)
    g.add_embedding_length(d)
    g.add_block_count(L)
    g.add_feed_forward_length(ff)
    g.add_head_count(H)
    g.add_head_count_kv(Hkv)
    g.add_key_length(hd)
    g.add_value_length(hd)
    g.add_sliding_window(W)
    g.add_layer_norm_rms_eps(1e-6)
    g.add_rope_freq_base(1e6)
    if rope_scale != 1:
        g.add_rope_scaling_type(__import__("gguf").RopeScalingType.LINEAR)
        g.add_rope_scaling_factor(rope_scale)
    toks, types = vocab()
    g.add_tokenizer_model("llama")
    g.add_token_list(toks)
    g.add_token_scores([0.0] * len(toks))
    g.add_token_types(types)
    g.add_bos_token_id(2)
    g.add_eos_token_id(1)
    g.add_add_bos_token(True)
    for k, v in w.items():
        if v.ndim == 2 and dtype == "f16":
            g.add_tensor(k, v.astype(np.float16))
        else:
            g.add_tensor(k, v)
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()

    # ---- independent float64 reference (gemma-architecture.md §2.2) ----
    def rms(x, wt):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * wt
    def gelu(x):
        return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))
    def rope(x, pos, base, scale):
        half = hd // 2
        inv = base ** (-np.arange(half) * 2.0 / hd) / scale
        th = pos[:, None] * inv[None, :]
        c, s = np.cos(th)[:, None, :], np.sin(th)[:, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], -1)
    qscale = (d / H) ** -0.5 if L == layer_count_for_scale else hd ** -0.5
    embed_scale = float(np.float32(np.sqrt(d)).astype(np.float32))
    # bf16 rounding of sqrt(d) (spec §2.6)
    u = np.array([np.sqrt(d)], dtype=np.float32).view(np.uint32)[0]
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    embed_scale = float(np.array([u << 16], dtype=np.uint32).view(np.float32)[0])

    def forward(ids, kv16=True):
        n = len(ids)
        pos = np.arange(n, dtype=np.float64)
        x = w["token_embd.weight"].astype(np.float64)[ids] * embed_scale
        for l in range(L):
            b = f"blk.{l}."
            sliding = (l + 1) % 6 != 0
            h = rms(x, w[b + "attn_norm.weight"])
            q = (h @ w[b + "attn_q.weight"].T).reshape(n, H, hd)
            k = (h @ w[b + "attn_k.weight"].T).reshape(n, Hkv, hd)
            v = (h @ w[b + "attn_v.weight"].T).reshape(n, Hkv, hd)
            q = rms(q, w[b + "attn_q_norm.weight"])
            k = rms(k, w[b + "attn_k_norm.weight"])
            base, sc = (1e4, 1.0) if sliding else (1e6, rope_scale)
            q = rope(q, pos, base, sc) * qscale
            k = rope(k, pos, base, sc)
            if kv16:
                k = k.astype(np.float16).astype(np.float64)
                v = v.astype(np.float16).astype(np.float64)
            att = np.zeros((n, H, hd))
            for hh in range(H):
                kv = hh // (H // Hkv)
                s = q[:, hh, :] @ k[:, kv, :].T
                i, j = np.arange(n)[:, None], np.arange(n)[None, :]
                mask = (j <= i) & ((i - j < W) if sliding else True)
                s = np.where(mask, s, -np.inf)
                s = np.exp(s - s.max(-1, keepdims=True))
                s /= s.sum(-1, keepdims=True)
                att[:, hh, :] = s @ v[:, kv, :]
            o = att.reshape(n, H * hd) @ w[b + "attn_output.weight"].T
            x = x + rms(o, w[b + "post_attention_norm.weight"])
            h = rms(x, w[b + "ffn_norm.weight"])
            f = (gelu(h @ w[b + "ffn_gate.weight"].T) * (h @ w[b + "ffn_up.weight"].T)) @ w[b + "ffn_down.weight"].T
            x = x + rms(f, w[b + "post_ffw_norm.weight"])
        return rms(x, w["output_norm.weight"]) @ w["token_embd.weight"].astype(np.float64).T

    for kv16, suffix in ((True, ""), (False, "_f32kv")):
        prompts = []
        for pi, n in enumerate([5, W + 7, 3 * W + 2]):
            ids = [2] + [int(t) for t in np.random.default_rng(100 + pi).integers(4, VOCAB, n - 1)]
            lg = forward(ids, kv16)
            rows = sorted(set(range(0, n, 3)) | {n - 1})  # every third position and the last
            # 5 decimals for the fp16-KV reference (its floor is ~1e-4), 8 without rounding
            digits = 5 if kv16 else 8
            prompts.append({"ids": ids, "rows": rows,
                            "logits": [np.round(lg[r], digits).tolist() for r in rows]})
        meta = {"name": name, "file": path.name, "layers": L, "d": d, "heads": [H, Hkv],
                "head_dim": hd, "window": W, "rope_scale_global": rope_scale, "query_scale": qscale,
                "dtype": dtype, "prompts": prompts}
        if not kv16:
            meta["kv"] = "f32"
        (out / f"{name}{suffix}.json").write_text(json.dumps(meta))
    print(f"{name}: {path.stat().st_size} bytes, prompts of {[len(p['ids']) for p in prompts]} tokens")

# 4B-like: GQA 2 groups, linear x8 on global layers, 7 layers (layer 5 global).
make("tiny_4b_like", L=7, d=48, ff=96, H=4, Hkv=2, hd=16, W=8, rope_scale=8.0, layer_count_for_scale=62, dtype="f32", seed=1)
# 27B-like: query scale (d/H)^-0.5 != hd^-0.5 (the engine keys it on 62 layers, as llama.cpp).
make("tiny_27b_like", L=62, d=32, ff=32, H=4, Hkv=2, hd=8, W=8, rope_scale=8.0, layer_count_for_scale=62, dtype="f16", seed=2)
# 1B-like: MQA, no scaling, F16 weights.
make("tiny_1b_like", L=6, d=48, ff=64, H=4, Hkv=1, hd=16, W=8, rope_scale=1.0, layer_count_for_scale=62, dtype="f16", seed=3)
