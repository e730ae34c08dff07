"""Tiny random-weight Gemma 4 checkpoints built with transformers' own Gemma4ForCausalLM, their
float32 logits, and the same weights as GGUF (gemma4 conventions of gemma-architecture.md §3).

Regenerate with (separate venv, see scripts/requirements-fixtures.txt; not needed by the tests):
    /work/venv-hf/bin/python scripts/gen_tiny_gemma4.py --outdir tests/golden/tiny_gemma4

Three shapes, every Gemma 4 feature at toy widths:
  tiny_e2b_like  PLE, KV sharing (last 5 of 10 layers read layers 3/4), period-5 sliding/global
                 pattern, double-wide MLP on KV-shared layers, 256/512-style head sizes 16/32
  tiny_31b_like  K=V global layers with their own KV-head count (global 2 vs sliding 4 heads),
                 head sizes 16/32, period 6
  tiny_26b_like  MoE: 16 experts, top-4, GeGLU experts beside the shared dense MLP, K=V globals;
                 F16 matrices and expert stacks (router, norms, scalars F32)
  tiny_26b_r16   the same MoE block at widths whose every expert slice starts on a 16-row
                 group (d 64, expert ff 32, shared ff 48): the expert stacks get g4's R16
                 copies on AVX-512 VNNI CPUs, so the packed expert kernels are tested
                 (`--only tiny_26b_r16` writes this one alone)
All: proportional partial RoPE (factor 0.25) on global layers, V-norm, attention scale 1.0,
QK-norm, learned layer_scalar, final logit softcap, tied embeddings.

For each model and prompt the JSON holds two float32 logit sets from transformers (eager
attention, no cache, whole prompt in one forward):
  "logits":       plain float32;
  "logits_kv16":  the same, but keys and values rounded to float16 right before attention,
                  which is how g4 stores its KV cache. Comparing against this isolates every
                  other part of the engine.
The GGUF carries a toy 272-token SentencePiece-style vocab ("llama") only so the engine loads
it; tests feed token ids.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
from gguf import GGUFWriter
from transformers import Gemma4ForCausalLM, Gemma4TextConfig
from transformers.models.gemma4 import modeling_gemma4 as mg

ap = argparse.ArgumentParser()
ap.add_argument("--outdir", required=True)
ap.add_argument("--only", default=None, help="write only this shape (the others keep their files)")
args = ap.parse_args()
out = Path(args.outdir)
out.mkdir(parents=True, exist_ok=True)

VOCAB = 272
COMMAND = "/work/venv-hf/bin/python scripts/gen_tiny_gemma4.py --outdir tests/golden/tiny_gemma4"


def toy_vocab():
    toks = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [3, 3, 3, 2] + [6] * 256
    while len(toks) < VOCAB:
        toks.append(f"piece{len(toks)}")
        types.append(1)
    return toks, types


SHAPES = {
    "tiny_e2b_like": dict(
        num_hidden_layers=10, hidden_size=32, intermediate_size=48, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, global_head_dim=32, sliding_window=8,
        layer_types=["sliding_attention"] * 4 + ["full_attention"] + ["sliding_attention"] * 4
        + ["full_attention"],
        hidden_size_per_layer_input=8, vocab_size_per_layer_input=VOCAB, num_kv_shared_layers=5,
        use_double_wide_mlp=True, attention_k_eq_v=False, final_logit_softcapping=30.0),
    "tiny_31b_like": dict(
        num_hidden_layers=7, hidden_size=32, intermediate_size=64, num_attention_heads=8,
        num_key_value_heads=4, num_global_key_value_heads=2, head_dim=16, global_head_dim=32,
        sliding_window=8,
        layer_types=["sliding_attention"] * 5 + ["full_attention"] * 2,
        hidden_size_per_layer_input=0, attention_k_eq_v=True, final_logit_softcapping=30.0),
    "tiny_26b_like": dict(
        num_hidden_layers=6, hidden_size=32, intermediate_size=24, num_attention_heads=4,
        num_key_value_heads=2, num_global_key_value_heads=1, head_dim=16, global_head_dim=32,
        sliding_window=8, layer_types=["sliding_attention"] * 5 + ["full_attention"],
        hidden_size_per_layer_input=0, attention_k_eq_v=True, enable_moe_block=True,
        num_experts=16, top_k_experts=4, moe_intermediate_size=8, final_logit_softcapping=10.0),
    "tiny_26b_r16": dict(
        num_hidden_layers=3, hidden_size=64, intermediate_size=48, num_attention_heads=4,
        num_key_value_heads=2, num_global_key_value_heads=1, head_dim=16, global_head_dim=32,
        sliding_window=8, layer_types=["sliding_attention"] * 2 + ["full_attention"],
        hidden_size_per_layer_input=0, attention_k_eq_v=True, enable_moe_block=True,
        num_experts=8, top_k_experts=2, moe_intermediate_size=32, final_logit_softcapping=30.0),
}
# Stored as F16 in the GGUF (matrices and expert stacks; router, norms and scalars stay F32 as
# llama.cpp's converter keeps them). The transformers model gets the same f16-rounded values,
# so both compute the same function and the 1e-3 bound still applies.
F16_MODELS = {"tiny_26b_like", "tiny_26b_r16"}

# Prompts (token ids, BOS first): short; longer than the window 8 several times over (ring
# buffer wrap); and one long enough that every layer, shared ones included, sees wrapped windows.
rng_p = np.random.default_rng(4)
PROMPTS = [
    [2] + [int(x) for x in rng_p.integers(4, VOCAB, 6)],
    [2] + [int(x) for x in rng_p.integers(4, VOCAB, 28)],
    [2] + [int(x) for x in rng_p.integers(4, VOCAB, 19)],
]

# HF name (inside model.) -> GGUF name, spec §3.3.
def gguf_name(n):
    n = n.replace("model.", "", 1)
    if n == "embed_tokens.weight":
        return "token_embd.weight"
    if n == "norm.weight":
        return "output_norm.weight"
    if n == "embed_tokens_per_layer.weight":
        return "per_layer_token_embd.weight"
    if n == "per_layer_model_projection.weight":
        return "per_layer_model_proj.weight"
    if n == "per_layer_projection_norm.weight":
        return "per_layer_proj_norm.weight"
    assert n.startswith("layers."), n
    _, i, rest = n.split(".", 2)
    m = {
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "self_attn.q_norm.weight": "attn_q_norm.weight",
        "self_attn.k_norm.weight": "attn_k_norm.weight",
        "post_attention_layernorm.weight": "post_attention_norm.weight",
        "pre_feedforward_layernorm.weight": "ffn_norm.weight",
        "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
        "post_feedforward_layernorm_1.weight": "post_ffw_norm_1.weight",
        "post_feedforward_layernorm_2.weight": "post_ffw_norm_2.weight",
        "pre_feedforward_layernorm_2.weight": "pre_ffw_norm_2.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
        "router.proj.weight": "ffn_gate_inp.weight",
        "router.scale": "ffn_gate_inp.scale",
        "router.per_expert_scale": "ffn_down_exps.scale",
        "experts.gate_up_proj": "ffn_gate_up_exps.weight",
        "experts.down_proj": "ffn_down_exps.weight",
        "layer_scalar": "layer_output_scale.weight",
        "per_layer_input_gate.weight": "inp_gate.weight",
        "per_layer_projection.weight": "proj.weight",
        "post_per_layer_input_norm.weight": "post_norm.weight",
    }
    return f"blk.{i}.{m[rest]}"


def keep_f32(gguf_tensor_name, arr):
    return arr.ndim < 2 or gguf_tensor_name.endswith("ffn_gate_inp.weight")


def randomise(model, seed, f16):
    """Weights with O(1) activations (HF's 0.02 init would make every logit ~0)."""
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    for name, t in sd.items():
        if name == "lm_head.weight":
            continue  # tied to embed_tokens
        short = name.split(".")[-1] if "." in name else name
        if t.ndim >= 2:
            fan_in = t.shape[-1]
            new = torch.randn(t.shape, generator=g) / fan_in ** 0.5
            if "embed_tokens" in name:
                new = torch.randn(t.shape, generator=g) * 0.5
        elif name.endswith("layer_scalar"):
            new = 0.6 + 0.8 * torch.rand(t.shape, generator=g)
        elif name.endswith("per_expert_scale") or name.endswith("router.scale"):
            new = 0.5 + torch.rand(t.shape, generator=g)
        else:  # norm weights: plain multipliers for Gemma 4 (no +1), spec §2.1
            new = 1 + 0.2 * torch.randn(t.shape, generator=g)
        if f16 and not keep_f32(gguf_name(name), new):
            new = new.half().float()
        with torch.no_grad():
            t.copy_(new)
    return sd


def fp16_kv_eager(orig):
    def f(module, query, key, value, attention_mask, **kw):
        return orig(module, query, key.half().float(), value.half().float(), attention_mask, **kw)
    return f


def logits_for(model, ids, kv16):
    orig = mg.eager_attention_forward
    if kv16:
        mg.eager_attention_forward = fp16_kv_eager(orig)
    try:
        with torch.no_grad():
            r = model(input_ids=torch.tensor([ids]), use_cache=False)
    finally:
        mg.eager_attention_forward = orig
    return r.logits[0].float().numpy()


def write_gguf(path, name, cfg, sd):
    L = cfg.num_hidden_layers
    g = GGUFWriter(str(path), "gemma4")
    a = "gemma4."
    g.add_name(name)
    g.add_uint32(a + "context_length", 256)
    g.add_uint32(a + "embedding_length", cfg.hidden_size)
    g.add_uint32(a + "block_count", L)
    ff = [sd[f"model.layers.{l}.mlp.gate_proj.weight"].shape[0] for l in range(L)]
    if len(set(ff)) == 1:
        g.add_uint32(a + "feed_forward_length", ff[0])
    else:
        g.add_array(a + "feed_forward_length", ff)
    g.add_uint32(a + "attention.head_count", cfg.num_attention_heads)
    kvh = [cfg.per_layer_config[l].num_key_value_heads for l in range(L)]
    if len(set(kvh)) == 1:
        g.add_uint32(a + "attention.head_count_kv", kvh[0])
    else:
        g.add_array(a + "attention.head_count_kv", kvh)
    hd_g = cfg.per_layer_config["full_attention"].head_dim
    hd_s = cfg.per_layer_config["sliding_attention"].head_dim
    g.add_uint32(a + "attention.key_length", hd_g)
    g.add_uint32(a + "attention.value_length", hd_g)
    g.add_uint32(a + "attention.key_length_swa", hd_s)
    g.add_uint32(a + "attention.value_length_swa", hd_s)
    g.add_float32(a + "attention.layer_norm_rms_epsilon", cfg.rms_norm_eps)
    g.add_uint32(a + "attention.sliding_window", cfg.sliding_window)
    g.add_array(a + "attention.sliding_window_pattern",
                [t == "sliding_attention" for t in cfg.layer_types])
    g.add_uint32(a + "attention.shared_kv_layers", cfg.num_kv_shared_layers)
    g.add_uint32(a + "embedding_length_per_layer_input", cfg.hidden_size_per_layer_input)
    g.add_float32(a + "rope.freq_base", cfg.rope_parameters["full_attention"]["rope_theta"])
    g.add_float32(a + "rope.freq_base_swa", cfg.rope_parameters["sliding_attention"]["rope_theta"])
    g.add_uint32(a + "rope.dimension_count", hd_g)
    g.add_uint32(a + "rope.dimension_count_swa", hd_s)
    g.add_float32(a + "final_logit_softcapping", cfg.final_logit_softcapping)
    if cfg.enable_moe_block:
        g.add_uint32(a + "expert_count", cfg.num_experts)
        g.add_uint32(a + "expert_used_count", cfg.top_k_experts)
        g.add_uint32(a + "expert_feed_forward_length", cfg.moe_intermediate_size)
    toks, types = toy_vocab()
    g.add_tokenizer_model("llama")
    g.add_token_list(toks)
    g.add_token_scores([0.0] * len(toks))
    g.add_token_types(types)
    g.add_bos_token_id(2)
    g.add_eos_token_id(1)
    g.add_add_bos_token(True)
    # rope_freqs as llama.cpp's converter writes it: 1.0 for the rotated pairs, 1e30 after.
    part = cfg.rope_parameters["full_attention"]["partial_rotary_factor"]
    n_rot = int(part * hd_g // 2)
    g.add_tensor("rope_freqs.weight",
                 np.array([1.0] * n_rot + [1e30] * (hd_g // 2 - n_rot), dtype=np.float32))
    for n, t in sd.items():
        if n == "lm_head.weight":
            continue
        arr = t.detach().float().numpy().astype(np.float32)
        if name in F16_MODELS and not keep_f32(gguf_name(n), arr):
            arr = arr.astype(np.float16)
        # gguf-py takes numpy shapes (outermost first): [out, in] / [E, out, in] map to ggml
        # {in, out} / {in, out, E}, i.e. nn.Linear layout as is (spec notation).
        g.add_tensor(gguf_name(n), np.ascontiguousarray(arr))
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


for i, (name, shape) in enumerate(SHAPES.items()):
    if args.only is not None and name != args.only:
        continue
    torch.manual_seed(100 + i)
    cfg = Gemma4TextConfig(vocab_size=VOCAB, max_position_embeddings=256, rms_norm_eps=1e-6,
                           tie_word_embeddings=True, **shape)
    cfg._attn_implementation = "eager"
    model = Gemma4ForCausalLM(cfg).eval()
    sd = randomise(model, 1000 + i, name in F16_MODELS)
    # KV-shared layers own no k/v weights in HF (and the converter emits none).
    write_gguf(out / f"{name}.gguf", name, cfg, sd)
    fx = {"command": COMMAND, "file": f"{name}.gguf",
          "torch": torch.__version__, "transformers": __import__("transformers").__version__,
          "vocab_size": VOCAB, "prompts": []}
    for ids in PROMPTS:
        l32 = logits_for(model, ids, False)
        l16 = logits_for(model, ids, True)
        fx["prompts"].append({
            "ids": ids,
            "logits": [[float(f"{v:.6g}") for v in row] for row in l32],
            "logits_kv16": [[float(f"{v:.6g}") for v in row] for row in l16],
        })
        print(f"{name} prompt len {len(ids)}: max|logit| {np.abs(l32).max():.3f}, "
              f"max|f32 - kv16| {np.abs(l32 - l16).max():.2e}")
    with open(out / f"{name}.json", "w") as f:
        json.dump(fx, f, separators=(",", ":"))
    print(name, "gguf", (out / f"{name}.gguf").stat().st_size, "json",
          (out / f"{name}.json").stat().st_size)
