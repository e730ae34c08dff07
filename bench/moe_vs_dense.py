"""Decode speed of a Gemma 4 MoE layer stack against dense stacks of the same active and the
same total FFN width, on synthetic random-weight Q8_0 GGUFs (written here with gguf-py; the
brief's MoE preset shape: 8 experts, top-2, SwiGLU, beside a shared dense MLP).

    .venv/bin/python bench/moe_vs_dense.py [--g4 build/release/g4] [--threads 2] [--reps 5]
                                           [--n-gen 64] [--check]

What it shows: per decoded token an MoE layer reads the shared MLP plus 2 of 8 experts, so it
should decode about as fast as the dense model with the same *active* width and much faster
than the dense model with the same *total* width. Models land in $TMPDIR (~100-300 MB each).

The issue's target: MoE decode time per token <= 1.3x the dense model with the same active
width. On a shared machine wall clock is noisy, so the three models alternate rep by rep
(one `g4 bench -r 1` each) and each model's time is its fastest rep (the run least disturbed
by other processes); the ratio is taken from the same run, and the load average is printed
before and after. --check exits 1 when the ratio is above 1.3.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType
from gguf.quants import quantize

ap = argparse.ArgumentParser()
ap.add_argument("--g4", default="build/release/g4")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--check", action="store_true", help="exit 1 if MoE / dense-active > 1.3")
ap.add_argument("--baseline-g4", help="another g4 binary: its MoE decode joins the same run")
ap.add_argument("--n-gen", type=int, default=64)
ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "g4_moe_bench"))
a = ap.parse_args()
out = Path(a.dir)
out.mkdir(parents=True, exist_ok=True)

D, L, H, HS, HG, W, V = 512, 8, 8, 64, 128, 256, 1024
FF_SHARED, E, K, FE = 512, 8, 2, 1024
SLIDING = [(i + 1) % 6 != 0 for i in range(L)]
SLIDING[-1] = False
rng = np.random.default_rng(0)


def q8(shape):
    x = (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[-1])).astype(np.float32)
    return quantize(x, GGMLQuantizationType.Q8_0)


def write(path, ff, moe):
    g = GGUFWriter(str(path), "gemma4")
    p = "gemma4."
    g.add_name(path.stem)
    for k, v in [("context_length", 4096), ("embedding_length", D), ("block_count", L),
                 ("feed_forward_length", ff), ("attention.head_count", H),
                 ("attention.key_length", HG), ("attention.key_length_swa", HS),
                 ("attention.sliding_window", W), ("rope.dimension_count", HG)]:
        g.add_uint32(p + k, v)
    g.add_array(p + "attention.head_count_kv", [2 if s else 1 for s in SLIDING])
    g.add_array(p + "attention.sliding_window_pattern", SLIDING)
    g.add_float32(p + "final_logit_softcapping", 30.0)
    if moe:
        g.add_uint32(p + "expert_count", E)
        g.add_uint32(p + "expert_used_count", K)
        g.add_uint32(p + "expert_feed_forward_length", FE)
        g.add_string(p + "expert_activation", "silu")
    toks = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"<0x{b:02X}>" for b in range(256)]
    toks += [f"piece{i}" for i in range(len(toks), V)]
    g.add_tokenizer_model("llama")
    g.add_token_list(toks)
    g.add_token_scores([0.0] * V)
    g.add_token_types([3, 3, 3, 2] + [6] * 256 + [1] * (V - 260))
    Q = GGMLQuantizationType.Q8_0

    def mat(name, *shape):
        g.add_tensor(name, q8(shape), raw_dtype=Q)

    def vec(name, n, val=1.0):
        g.add_tensor(name, np.full(n, val, dtype=np.float32))

    mat("token_embd.weight", V, D)
    vec("output_norm.weight", D)
    g.add_tensor("rope_freqs.weight", np.array([1.0] * 16 + [1e30] * (HG // 2 - 16), np.float32))
    for l in range(L):
        b = f"blk.{l}."
        hd, kv = (HS, 2) if SLIDING[l] else (HG, 1)
        mat(b + "attn_q.weight", H * hd, D)
        mat(b + "attn_k.weight", kv * hd, D)
        if SLIDING[l]:
            mat(b + "attn_v.weight", kv * hd, D)
        mat(b + "attn_output.weight", D, H * hd)
        vec(b + "attn_q_norm.weight", hd)
        vec(b + "attn_k_norm.weight", hd)
        for n in ["attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"]:
            vec(b + n + ".weight", D)
        mat(b + "ffn_gate.weight", ff, D)
        mat(b + "ffn_up.weight", ff, D)
        mat(b + "ffn_down.weight", D, ff)
        if moe:
            for n in ["pre_ffw_norm_2", "post_ffw_norm_1", "post_ffw_norm_2"]:
                vec(b + n + ".weight", D)
            g.add_tensor(b + "ffn_gate_inp.weight",
                         (rng.standard_normal((E, D)) / np.sqrt(D)).astype(np.float32))
            vec(b + "ffn_gate_inp.scale", D)
            mat(b + "ffn_gate_up_exps.weight", E, 2 * FE, D)
            mat(b + "ffn_down_exps.weight", E, D, FE)
            vec(b + "ffn_down_exps.scale", E)
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


models = {
    f"moe {E}x{FE} top-{K} + shared {FF_SHARED}": ("moe.gguf", FF_SHARED, True),
    f"dense, active width {FF_SHARED + K * FE}": ("dense_active.gguf", FF_SHARED + K * FE, False),
    f"dense, total width {FF_SHARED + E * FE}": ("dense_total.gguf", FF_SHARED + E * FE, False),
}
def load_avg():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


for label, (fname, ff, moe) in models.items():
    if not (out / fname).exists():
        write(out / fname, ff, moe)
load_before = load_avg()
binaries = {label: a.g4 for label in models}
if a.baseline_g4:
    base_label = next(iter(models)) + " (baseline binary)"
    models[base_label] = next(iter(models.values()))
    binaries[base_label] = a.baseline_g4
runs = {label: [] for label in models}
for rep in range(a.reps):
    for label, (fname, ff, moe) in models.items():
        r = subprocess.run([binaries[label], "bench", str(out / fname), "-p", "0", "-n", str(a.n_gen), "-r",
                            "1", "-t", str(a.threads), "--json"],
                           check=True, capture_output=True, text=True)
        runs[label].append(1000.0 / json.loads(r.stdout)["tg"]["tokens_per_s"])  # ms/token
load_after = load_avg()
best = {label: min(ms) for label, ms in runs.items()}
moe_label, active_label = list(models)[:2]
print(f"load average (1/5/15 min) before: {load_before}, after: {load_after}")
print(f"| model (d={D}, {L} layers, Q8_0) | file MiB | tg{a.n_gen} ms/token, best of {a.reps} "
      f"({a.threads} threads) | median | vs MoE |")
print("|---|---|---|---|---|")
for label, (fname, _, _) in models.items():
    ms = sorted(runs[label])
    print(f"| {label} | {(out / fname).stat().st_size / 2**20:.0f} | {best[label]:.3f} "
          f"({1000 / best[label]:.0f} tok/s) | {ms[len(ms) // 2]:.3f} | "
          f"{best[moe_label] / best[label]:.2f}x |")
ratio = best[moe_label] / best[active_label]
print(f"MoE / dense of the same active width, time per token: {ratio:.2f}x (target <= 1.3x): "
      f"{'met' if ratio <= 1.3 else 'NOT met'}")
if a.check and ratio > 1.3:
    sys.exit(1)
