"""Tiny Gemma 4 MoE checkpoint in the brief's preset shape (8 experts, top-2, SwiGLU experts)
and its expected logits from a float64 NumPy forward written from gemma-architecture.md §2.3-2.5
(not from the C++ code). transformers' Gemma 4 has no SwiGLU-expert option, hence NumPy.
The GGUF marks the experts' activation with g4's own key `gemma4.expert_activation = "silu"`
(absent = GELU-tanh, as in Google's models). Regenerate with:
    .venv/bin/python scripts/gen_tiny_moe_swiglu.py --outdir tests/golden/tiny_gemma4
"""
import argparse
import json
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

ap = argparse.ArgumentParser()
ap.add_argument("--outdir", required=True)
args = ap.parse_args()
out = Path(args.outdir)
out.mkdir(parents=True, exist_ok=True)
COMMAND = ".venv/bin/python scripts/gen_tiny_moe_swiglu.py --outdir tests/golden/tiny_gemma4"

V, L, d, H, KVS, KVG, HS, HG, FF, E, K, FE, W = 272, 4, 32, 4, 2, 1, 16, 32, 24, 8, 2, 16, 8
SLIDING = [True, True, True, False]
ROT_G = 8  # rotated pairs on global layers: int(0.25 * 32 / 2)
SOFTCAP = 30.0
EPS = 1e-6
rng = np.random.default_rng(7)


def mat(o, i):
    return (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)


def normw(n):
    return (1 + 0.2 * rng.standard_normal(n)).astype(np.float32)


w = {"token_embd.weight": (rng.standard_normal((V, d)) * 0.5).astype(np.float32),
     "output_norm.weight": normw(d),
     "rope_freqs.weight": np.array([1.0] * ROT_G + [1e30] * (HG // 2 - ROT_G), np.float32)}
for l in range(L):
    b = f"blk.{l}."
    hd, kvh = (HS, KVS) if SLIDING[l] else (HG, KVG)
    w[b + "attn_norm.weight"] = normw(d)
    w[b + "attn_q.weight"] = mat(H * hd, d)
    w[b + "attn_k.weight"] = mat(kvh * hd, d)
    if SLIDING[l]:
        w[b + "attn_v.weight"] = mat(kvh * hd, d)  # global layers: K=V
    w[b + "attn_output.weight"] = mat(d, H * hd)
    w[b + "attn_q_norm.weight"] = normw(hd)
    w[b + "attn_k_norm.weight"] = normw(hd)
    for n in ["post_attention_norm", "ffn_norm", "post_ffw_norm", "pre_ffw_norm_2",
              "post_ffw_norm_1", "post_ffw_norm_2"]:
        w[b + n + ".weight"] = normw(d)
    w[b + "ffn_gate.weight"] = mat(FF, d)
    w[b + "ffn_up.weight"] = mat(FF, d)
    w[b + "ffn_down.weight"] = mat(d, FF)
    w[b + "ffn_gate_inp.weight"] = mat(E, d)
    w[b + "ffn_gate_inp.scale"] = (0.5 + rng.random(d)).astype(np.float32)
    w[b + "ffn_gate_up_exps.weight"] = np.stack([mat(2 * FE, d) for _ in range(E)])
    w[b + "ffn_down_exps.weight"] = np.stack([mat(d, FE) for _ in range(E)])
    w[b + "ffn_down_exps.scale"] = (0.5 + rng.random(E)).astype(np.float32)
    w[b + "layer_output_scale.weight"] = (0.6 + 0.8 * rng.random(1)).astype(np.float32)

g = GGUFWriter(str(out / "tiny_moe_swiglu.gguf"), "gemma4")
a = "gemma4."
g.add_name("tiny_moe_swiglu")
for k, v in [("context_length", 256), ("embedding_length", d), ("block_count", L),
             ("feed_forward_length", FF), ("attention.head_count", H),
             ("attention.key_length", HG), ("attention.value_length", HG),
             ("attention.key_length_swa", HS), ("attention.value_length_swa", HS),
             ("attention.sliding_window", W), ("attention.shared_kv_layers", 0),
             ("embedding_length_per_layer_input", 0), ("rope.dimension_count", HG),
             ("rope.dimension_count_swa", HS), ("expert_count", E), ("expert_used_count", K),
             ("expert_feed_forward_length", FE)]:
    g.add_uint32(a + k, v)
g.add_array(a + "attention.head_count_kv", [KVS if s else KVG for s in SLIDING])
g.add_array(a + "attention.sliding_window_pattern", SLIDING)
g.add_float32(a + "attention.layer_norm_rms_epsilon", EPS)
g.add_float32(a + "rope.freq_base", 1e6)
g.add_float32(a + "rope.freq_base_swa", 1e4)
g.add_float32(a + "final_logit_softcapping", SOFTCAP)
g.add_string(a + "expert_activation", "silu")
toks = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"<0x{b:02X}>" for b in range(256)]
toks += [f"piece{i}" for i in range(len(toks), V)]
g.add_tokenizer_model("llama")
g.add_token_list(toks)
g.add_token_scores([0.0] * V)
g.add_token_types([3, 3, 3, 2] + [6] * 256 + [1] * (V - 260))
g.add_bos_token_id(2)
g.add_eos_token_id(1)
for k, v in w.items():
    g.add_tensor(k, v)
g.write_header_to_file()
g.write_kv_data_to_file()
g.write_tensors_to_file()
g.close()

W64 = {k: v.astype(np.float64) for k, v in w.items()}


def rms(x, wt=None):
    y = x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS)
    return y if wt is None else y * wt


def gelu(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1 + np.exp(-x))


def rope(x, pos, sliding):
    hd = x.shape[-1]
    half = hd // 2
    if sliding:
        inv = 1e4 ** (-np.arange(half) * 2.0 / hd)
    else:  # proportional: first ROT_G pairs with exponent over the full head, rest frozen
        inv = np.where(np.arange(half) < ROT_G, 1e6 ** (-np.arange(half) * 2.0 / hd), 0.0)
    th = pos[:, None] * inv[None, :]
    c, s = np.cos(th)[:, None, :], np.sin(th)[:, None, :]
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], -1)


def forward(ids):
    n = len(ids)
    pos = np.arange(n, dtype=np.float64)
    x = W64["token_embd.weight"][ids] * np.float64(np.float32(np.sqrt(d)))
    for l in range(L):
        b = f"blk.{l}."
        sl = SLIDING[l]
        hd, kvh = (HS, KVS) if sl else (HG, KVG)
        h = rms(x, W64[b + "attn_norm.weight"])
        q = rope(rms((h @ W64[b + "attn_q.weight"].T).reshape(n, H, hd),
                     W64[b + "attn_q_norm.weight"]), pos, sl)
        kraw = (h @ W64[b + "attn_k.weight"].T).reshape(n, kvh, hd)
        vraw = (h @ W64[b + "attn_v.weight"].T).reshape(n, kvh, hd) if sl else kraw
        k = rope(rms(kraw, W64[b + "attn_k_norm.weight"]), pos, sl)
        v = rms(vraw)
        att = np.zeros((n, H, hd))
        i, j = np.arange(n)[:, None], np.arange(n)[None, :]
        mask = (j <= i) & ((i - j < W) if sl else True)
        for hh in range(H):
            kv = hh // (H // kvh)
            s = np.where(mask, q[:, hh, :] @ k[:, kv, :].T, -np.inf)  # scale 1.0
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            att[:, hh, :] = s @ v[:, kv, :]
        x = x + rms(att.reshape(n, H * hd) @ W64[b + "attn_output.weight"].T,
                    W64[b + "post_attention_norm.weight"])
        hin = rms(x, W64[b + "ffn_norm.weight"])
        m1 = (gelu(hin @ W64[b + "ffn_gate.weight"].T) * (hin @ W64[b + "ffn_up.weight"].T)) \
            @ W64[b + "ffn_down.weight"].T
        m1 = rms(m1, W64[b + "post_ffw_norm_1.weight"])
        r = (rms(x) * W64[b + "ffn_gate_inp.scale"] * d ** -0.5) @ W64[b + "ffn_gate_inp.weight"].T
        p = np.exp(r - r.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        x2 = rms(x, W64[b + "pre_ffw_norm_2.weight"])
        m2 = np.zeros_like(x)
        for t in range(n):
            top = np.argsort(-p[t], kind="stable")[:K]
            wts = p[t, top] / p[t, top].sum()
            for e, we in zip(top, wts):
                gu = W64[b + "ffn_gate_up_exps.weight"][e] @ x2[t]
                y = W64[b + "ffn_down_exps.weight"][e] @ (silu(gu[:FE]) * gu[FE:])
                m2[t] += we * W64[b + "ffn_down_exps.scale"][e] * y
        m2 = rms(m2, W64[b + "post_ffw_norm_2.weight"])
        x = x + rms(m1 + m2, W64[b + "post_ffw_norm.weight"])
        x = x * W64[b + "layer_output_scale.weight"][0]
    z = rms(x, W64["output_norm.weight"]) @ W64["token_embd.weight"].T
    return SOFTCAP * np.tanh(z / SOFTCAP)


prompts = [[2] + [int(t) for t in rng.integers(4, V, n)] for n in (6, 27)]
fx = {"command": COMMAND, "file": "tiny_moe_swiglu.gguf", "vocab_size": V, "prompts": []}
for ids in prompts:
    lg = forward(ids)
    fx["prompts"].append({"ids": ids, "logits": [[float(f"{v:.7g}") for v in r] for r in lg]})
    print(f"prompt len {len(ids)}: max|logit| {np.abs(lg).max():.3f}")
with open(out / "tiny_moe_swiglu.json", "w") as f:
    json.dump(fx, f, separators=(",", ":"))
