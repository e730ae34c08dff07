"""Config-fuzzing fixtures: random valid Gemma4TextConfig / Gemma3TextConfig checkpoints and their
transformers float32 logits at every position, for tests/unit/config_fuzz_test.cc. Regenerate with:
    /work/venv-hf/bin/python scripts/gen_config_fuzz.py --outdir tests/golden/config_fuzz
(the larger sweep by hand: add --gemma4 200 --gemma3 100 --outdir /tmp/fuzz, then run
 `G4_CONFIG_FUZZ_DIR=/tmp/fuzz build/release/g4_tests --gtest_filter='ConfigFuzz.*'`).

Each case is drawn from a seeded Python RNG over every field the config class accepts, within
ranges that keep the model tiny (hidden 16..64, 1..8 layers, vocabulary 272..300 so the toy
272-token tokenizer of scripts/gen_tiny_hf.py fits). The config is built by transformers
(`Gemma4TextConfig(**fields)`, which validates it) and written by `save_pretrained`, so
config.json is exactly what a user's checkpoint holds (e.g. an empty `per_layer_config` and no
`global_head_dim` when the global head size equals the sliding one). A config the class rejects
is redrawn.

Weights are not stored: every tensor of the model's state dict (the tied lm_head left out, as
save_pretrained does) is filled from a counter-based generator that the C++ test reimplements:
    key   = fnv1a64(tensor name) ^ (seed * 0x9E3779B97F4A7C15)            (mod 2^64)
    z_i   = splitmix64 finaliser of key + (i + 1) * 0x9E3779B97F4A7C15     (element i, row-major)
    u_i   = (z_i >> 40) / 2^24                                            in [0, 1)
    value = float32(center + half * (2 u_i - 1))                          (double arithmetic)
with (center, half) per tensor recorded in cases.json (matrices: half = sqrt(3 / fan_in), unit
variance activations; norms around 1 for Gemma 4, around 0 for Gemma 3's 1 + w).

A few cases set a field to a value g4 declares unsupported (listed in UNSUPPORTED below, e.g.
`attention_bias: true`, which adds bias tensors g4 has no place for); those record the field's
name in "expect_error" and no logits: the test checks that g4 refuses them with an error that
names the field, never an answer.

Outputs: cases.json (configs, tensor lists, prompt ids, offsets) and logits.bin (float32
little-endian, [positions, vocab] per case).
"""
import argparse
import json
import math
import random
import struct
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, Gemma4ForCausalLM,
                          Gemma4TextConfig)

ap = argparse.ArgumentParser()
ap.add_argument("--outdir", required=True)
ap.add_argument("--gemma4", type=int, default=24)
ap.add_argument("--gemma3", type=int, default=12)
ap.add_argument("--seed", type=int, default=20261206)
args = ap.parse_args()
COMMAND = "/work/venv-hf/bin/python scripts/gen_config_fuzz.py --outdir tests/golden/config_fuzz"

GOLD = 0x9E3779B97F4A7C15
M64 = (1 << 64) - 1


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def fill(name, seed, shape, center, half):
    n = int(np.prod(shape)) if shape else 1
    key = np.uint64(fnv1a64(name) ^ ((seed * GOLD) & M64))
    with np.errstate(over="ignore"):
        z = key + (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GOLD))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)
    return (center + half * (2.0 * u - 1.0)).astype(np.float32).reshape(shape)


def tensor_scale(name, shape, gemma4):
    if len(shape) >= 2:
        if "embed_tokens" in name:
            return 0.0, 0.5 * math.sqrt(3)
        return 0.0, math.sqrt(3.0 / shape[-1])
    if name.endswith("layer_scalar"):
        return 1.0, 0.4
    if name.endswith("per_expert_scale") or name.endswith("router.scale"):
        return 1.0, 0.5
    # norm weights: plain multipliers for Gemma 4, 1 + w for Gemma 3 (spec §2.1)
    return (1.0, 0.35) if gemma4 else (0.0, 0.35)


def pick_layer_types(r, L):
    if r.random() < 0.3:
        period = r.randint(2, 6)
        return [("full_attention" if (i + 1) % period == 0 else "sliding_attention")
                for i in range(L)]
    return [r.choice(["sliding_attention", "full_attention"]) for _ in range(L)]


def gemma4_fields(r):
    L = r.randint(1, 8)
    H = r.choice([1, 2, 4])
    kv = r.choice([k for k in (1, 2, 4) if H % k == 0])
    hd = r.choice([8, 16, 32])
    f = {
        "vocab_size": r.choice([272, 272, 288, 300]),
        "hidden_size": r.choice([16, 24, 32, 48, 64]),
        "intermediate_size": r.choice([16, 24, 40, 64, 96]),
        "num_hidden_layers": L,
        "num_attention_heads": H,
        "num_key_value_heads": kv,
        "head_dim": hd,
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": r.choice([64, 256, 4096]),
        "rms_norm_eps": r.choice([1e-6, 1e-5, 1e-4]),
        "tie_word_embeddings": r.random() < 0.6,
        "attention_bias": False,
        "attention_dropout": r.choice([0.0, 0.1]),
        "sliding_window": r.randint(2, 12),
        "layer_types": pick_layer_types(r, L),
        "final_logit_softcapping": r.choice([None, 30.0, 15.0, 50.0]),
        "use_bidirectional_attention": r.choice([None, None, "vision"]),
        "hidden_size_per_layer_input": r.choice([0, 0, 4, 8]),
        "attention_k_eq_v": r.random() < 0.3,
        "enable_moe_block": r.random() < 0.3,
        "use_double_wide_mlp": r.random() < 0.3,
        "initializer_range": r.choice([0.02, 0.01]),
        "use_cache": r.random() < 0.8,
    }
    f["vocab_size_per_layer_input"] = f["vocab_size"]
    f["layer_types"][-1] = "full_attention"  # transformers forces it; draw it so
    full = {"rope_type": r.choice(["proportional", "proportional", "default"]),
            "rope_theta": r.choice([1e6, 1e4, 5e5])}
    if full["rope_type"] == "proportional":
        full["partial_rotary_factor"] = r.choice([0.25, 0.5, 1.0])
    f["rope_parameters"] = {"full_attention": full,
                            "sliding_attention": {"rope_type": "default",
                                                  "rope_theta": r.choice([1e4, 1e5])}}
    # global head size: the class's global_head_dim kwarg (incl. equal to head_dim, which
    # save_pretrained writes as an empty per_layer_config), or an explicit per_layer_config
    mode = r.choice(["kwarg", "kwarg", "equal", "explicit", "default"])
    if mode == "kwarg":
        f["global_head_dim"] = r.choice([16, 32, 64])
    elif mode == "equal":
        f["global_head_dim"] = hd
    elif mode == "explicit":
        ghd = r.choice([hd, 2 * hd])
        f["per_layer_config"] = {str(i): {"head_dim": ghd}
                                 for i, t in enumerate(f["layer_types"]) if t == "full_attention"}
        if r.random() < 0.5:  # a per-layer KV-head count on some layer
            i = r.randrange(L)
            f["per_layer_config"].setdefault(str(i), {})["num_key_value_heads"] = \
                r.choice([k for k in (1, 2, 4) if H % k == 0])
    if f["attention_k_eq_v"] and r.random() < 0.7:
        f["num_global_key_value_heads"] = r.choice([k for k in (1, 2, 4) if H % k == 0])
    if f["enable_moe_block"]:
        E = r.choice([2, 4, 8])
        f["num_experts"] = E
        f["top_k_experts"] = r.randint(1, E)
        f["moe_intermediate_size"] = r.choice([8, 16, 24])
    # KV sharing: the shared tail must leave a producer of every layer type before it
    types = f["layer_types"]
    ok = [n for n in range(0, L) if set(types[:L - n]) == set(types)]
    f["num_kv_shared_layers"] = r.choice(ok) if r.random() < 0.4 else 0
    if r.random() < 0.25:
        f["attn_logit_softcapping"] = r.choice([50.0, 20.0])  # transformers ignores it here
    return f


def gemma3_fields(r):
    L = r.randint(1, 8)
    H = r.choice([1, 2, 4])
    kv = r.choice([k for k in (1, 2, 4) if H % k == 0])
    hd = r.choice([8, 16, 32])
    d = r.choice([16, 32, 48, 64])
    while d % H:
        d += 16
    full = {"rope_type": r.choice(["default", "default", "linear"]),
            "rope_theta": r.choice([1e6, 1e4])}
    if full["rope_type"] == "linear":
        full["factor"] = r.choice([2.0, 8.0])
    f = {
        "vocab_size": r.choice([272, 272, 300]),
        "hidden_size": d,
        "intermediate_size": r.choice([16, 40, 64]),
        "num_hidden_layers": L,
        "num_attention_heads": H,
        "num_key_value_heads": kv,
        "head_dim": hd,
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": r.choice([64, 4096]),
        "rms_norm_eps": r.choice([1e-6, 1e-5]),
        "tie_word_embeddings": r.random() < 0.6,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "query_pre_attn_scalar": r.choice([hd, hd, 2 * hd, d // H]),
        "sliding_window": r.randint(2, 12),
        "layer_types": pick_layer_types(r, L),
        "final_logit_softcapping": r.choice([None, 30.0]),
        "attn_logit_softcapping": r.choice([None, None, 50.0, 10.0]),
        "use_bidirectional_attention": False,
        "rope_parameters": {"full_attention": full,
                            "sliding_attention": {"rope_type": "default",
                                                  "rope_theta": r.choice([1e4, 1e5])}},
    }
    return f


# Fields g4 refuses, with a value transformers accepts; the error must name the field.
UNSUPPORTED = {
    "gemma4": [("attention_bias", True), ("hidden_activation", "silu"),
               ("use_bidirectional_attention", "all")],
    "gemma3": [("attention_bias", True), ("hidden_activation", "gelu"),
               ("use_bidirectional_attention", True)],
}


def build(arch, fields):
    f = dict(fields)
    extra = {k: f.pop(k) for k in ("attn_logit_softcapping",) if arch == "gemma4" and k in f}
    cls, mcls = ((Gemma4TextConfig, Gemma4ForCausalLM) if arch == "gemma4"
                 else (Gemma3TextConfig, Gemma3ForCausalLM))
    cfg = cls(**f)
    cfg._attn_implementation = "eager"
    model = mcls(cfg).eval()
    with tempfile.TemporaryDirectory() as t:
        cfg.save_pretrained(t)
        saved = json.loads((Path(t) / "config.json").read_text())
    saved.update(extra)  # as a hand-edited or foreign config.json would carry it
    saved.pop("transformers_version", None)
    return model, saved


def make_case(arch, idx, r, unsupported=None):
    while True:
        fields = gemma4_fields(r) if arch == "gemma4" else gemma3_fields(r)
        if unsupported:
            fields[unsupported[0]] = unsupported[1]
        try:
            model, saved = build(arch, fields)
            break
        except (ValueError, TypeError, KeyError, AssertionError) as e:
            print(f"  redraw {arch} #{idx}: {type(e).__name__}: {str(e)[:120]}")
    seed = r.randrange(1 << 31)
    sd = model.state_dict()
    tied = saved.get("tie_word_embeddings", True)
    tensors = []
    for name in sorted(sd):
        if name == "lm_head.weight" and tied:
            continue
        shape = list(sd[name].shape)
        c, h = tensor_scale(name, shape, arch == "gemma4")
        tensors.append([name, shape, c, h])
        with torch.no_grad():
            sd[name].copy_(torch.from_numpy(fill(name, seed, shape, c, h)))
    if tied:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    T = r.randint(6, 16)
    ids = [2] + [r.randrange(4, 272) for _ in range(T - 1)]
    case = {"name": f"{arch}_{idx:03d}", "arch": arch, "seed": seed, "config": saved,
            "tensors": tensors, "ids": ids}
    if unsupported:
        case["expect_error"] = unsupported[0]
        return case, None
    with torch.no_grad():
        # logits_to_keep as a slice: transformers 5.24's integer path slices per_layer_inputs
        # before KV-shared layers and fails when the model has none (no PLE)
        logits = model(input_ids=torch.tensor([ids]), use_cache=False,
                       logits_to_keep=slice(0, None)).logits[0].float().numpy()
    assert np.isfinite(logits).all()
    case["vocab"] = int(logits.shape[1])
    return case, logits.astype("<f4")


def main():
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    r = random.Random(args.seed)
    torch.manual_seed(0)
    cases, blobs, off = [], [], 0
    plan = ([("gemma4", None)] * args.gemma4 + [("gemma3", None)] * args.gemma3 +
            [(a, u) for a in ("gemma4", "gemma3") for u in UNSUPPORTED[a]])
    for i, (arch, unsup) in enumerate(plan):
        case, logits = make_case(arch, i, r, unsup)
        if logits is not None:
            case["logits_offset"] = off
            blobs.append(logits.tobytes())
            off += logits.size
        cases.append(case)
        print(f"{case['name']}: {case.get('expect_error') or 'L=%d d=%d' % (case['config']['num_hidden_layers'], case['config']['hidden_size'])}")
    (out / "logits.bin").write_bytes(b"".join(blobs))
    doc = {"command": COMMAND, "generator": "scripts/gen_config_fuzz.py",
           "transformers": __import__("transformers").__version__,
           "torch": torch.__version__, "cases": cases}
    (out / "cases.json").write_text(json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
    print(f"{len(cases)} cases, {off * 4} bytes of logits")


main()
