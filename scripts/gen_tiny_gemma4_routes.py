"""Expected MoE routing for the tiny 26B-A4B-like fixture, from transformers' own Gemma 4 router.

Regenerate with (the transformers venv of scripts/requirements-fixtures.txt):
    /work/venv-hf/bin/python scripts/gen_tiny_gemma4_routes.py \
        --fixture tests/golden/tiny_gemma4/tiny_26b_like

Rebuilds Gemma4ForCausalLM from the committed GGUF's weights (read with gguf-py, names mapped
back to Hugging Face's), checks that its float32 logits reproduce the fixture's "logits" (so the
rebuilt model is the one the fixture was made from), and records, for every prompt of the
fixture and every layer, the top-k experts that Gemma4TextRouter picks for each token and the
resulting per-expert token counts. A forward hook on each layer's router captures torch.topk's
indices; nothing comes from g4.

"margin" is the smallest gap, over the prompt's tokens, between the k-th and the (k+1)-th
router probability. To know how far a float32 router that sums in another order (g4's) can be
from this one, the same model also runs in float64: "p_err" is the largest |p32 - p64| over all
router probabilities of the prompt. The script refuses a prompt whose margin is not at least
20 * p_err (a choice could then flip) and checks that float64 picks the same experts, so the
counts of any float32 implementation of the same function must agree exactly.
"""
import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
from gguf import GGUFReader
from transformers import Gemma4ForCausalLM, Gemma4TextConfig

ap = argparse.ArgumentParser()
ap.add_argument("--fixture", required=True, help="path without extension (.gguf and .json)")
args = ap.parse_args()
base = Path(args.fixture)
COMMAND = ("/work/venv-hf/bin/python scripts/gen_tiny_gemma4_routes.py --fixture "
           "tests/golden/tiny_gemma4/" + base.name)
fx = json.loads(base.with_suffix(".json").read_text())
reader = GGUFReader(str(base.with_suffix(".gguf")))


def meta(key):
    f = reader.fields["gemma4." + key]
    vals = [f.parts[i].tolist() for i in f.data]
    vals = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in vals]
    return vals if len(vals) > 1 else vals[0]


L = meta("block_count")
pattern = meta("attention.sliding_window_pattern")
kvh = meta("attention.head_count_kv")
kvh = kvh if isinstance(kvh, list) else [kvh] * L
n_heads = meta("attention.head_count")
global_kv = [k for k, s in zip(kvh, pattern) if not s]
sliding_kv = [k for k, s in zip(kvh, pattern) if s]
hd_g = meta("attention.key_length")
rope_freqs = reader.get_tensor(
    [i for i, t in enumerate(reader.tensors) if t.name == "rope_freqs.weight"][0]).data
n_rot = int((rope_freqs < 1e29).sum())
cfg = Gemma4TextConfig(
    vocab_size=fx["vocab_size"], max_position_embeddings=256,
    rms_norm_eps=meta("attention.layer_norm_rms_epsilon"), tie_word_embeddings=True,
    num_hidden_layers=L, hidden_size=meta("embedding_length"),
    intermediate_size=meta("feed_forward_length"), num_attention_heads=n_heads,
    num_key_value_heads=sliding_kv[0], num_global_key_value_heads=global_kv[0],
    head_dim=meta("attention.key_length_swa"), global_head_dim=hd_g,
    sliding_window=meta("attention.sliding_window"),
    layer_types=["sliding_attention" if s else "full_attention" for s in pattern],
    hidden_size_per_layer_input=0, attention_k_eq_v=True, enable_moe_block=True,
    num_experts=meta("expert_count"), top_k_experts=meta("expert_used_count"),
    moe_intermediate_size=meta("expert_feed_forward_length"),
    final_logit_softcapping=meta("final_logit_softcapping"))
cfg._attn_implementation = "eager"
assert abs(cfg.rope_parameters["full_attention"]["partial_rotary_factor"] * hd_g / 2 - n_rot) < 1e-6

# GGUF name -> HF name (inverse of scripts/gen_tiny_gemma4.py's gguf_name).
LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "post_attention_norm.weight": "post_attention_layernorm.weight",
    "ffn_norm.weight": "pre_feedforward_layernorm.weight",
    "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
    "post_ffw_norm_1.weight": "post_feedforward_layernorm_1.weight",
    "post_ffw_norm_2.weight": "post_feedforward_layernorm_2.weight",
    "pre_ffw_norm_2.weight": "pre_feedforward_layernorm_2.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    "ffn_gate_inp.weight": "router.proj.weight",
    "ffn_gate_inp.scale": "router.scale",
    "ffn_down_exps.scale": "router.per_expert_scale",
    "ffn_gate_up_exps.weight": "experts.gate_up_proj",
    "ffn_down_exps.weight": "experts.down_proj",
    "layer_output_scale.weight": "layer_scalar",
}


def hf_name(n):
    if n == "token_embd.weight":
        return "model.embed_tokens.weight"
    if n == "output_norm.weight":
        return "model.norm.weight"
    _, i, rest = n.split(".", 2)
    return f"model.layers.{i}.{LAYER[rest]}"


model = Gemma4ForCausalLM(cfg).eval()
sd = model.state_dict()
loaded = set()
for t in reader.tensors:
    if t.name == "rope_freqs.weight":
        continue
    name = hf_name(t.name)
    arr = np.array(t.data, dtype=np.float32).reshape(sd[name].shape)
    with torch.no_grad():
        sd[name].copy_(torch.from_numpy(arr))
    loaded.add(name)
missing = [n for n in sd if n not in loaded and n != "lm_head.weight"]
assert not missing, missing

cfg64 = copy.deepcopy(cfg)
cfg64._experts_implementation = "eager"  # torch's grouped_mm has no float64
model64 = Gemma4ForCausalLM(cfg64).eval()
model64.load_state_dict(model.state_dict())
model64 = model64.double()
routes = []  # filled by the hooks: one (probabilities, top-k indices) per layer call


def hook(module, inputs, output):
    probs, _, idx = output
    routes.append((probs.detach().float().numpy(), idx.detach().numpy()))


for layer in list(model.model.layers) + list(model64.model.layers):
    layer.router.register_forward_hook(hook)

E, K = cfg.num_experts, cfg.top_k_experts
out = {"command": COMMAND, "file": base.name + ".gguf", "torch": torch.__version__,
       "transformers": __import__("transformers").__version__, "n_layers": L, "n_experts": E,
       "n_experts_used": K, "prompts": []}
for p in fx["prompts"]:
    ids = p["ids"]
    routes.clear()
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float().numpy()
    diff = float(np.abs(logits - np.array(p["logits"], dtype=np.float32)).max())
    assert diff < 1e-4, f"rebuilt model does not reproduce the fixture: {diff}"
    assert len(routes) == L
    with torch.no_grad():
        model64(input_ids=torch.tensor([ids]), use_cache=False)
    assert len(routes) == 2 * L
    layers = []
    margin, p_err = 1.0, 0.0
    for (probs, idx), (probs64, idx64) in zip(routes[:L], routes[L:]):
        srt = np.sort(probs, axis=-1)[:, ::-1]
        margin = min(margin, float((srt[:, K - 1] - srt[:, K]).min()))
        p_err = max(p_err, float(np.abs(probs.astype(np.float64) - probs64).max()))
        assert (np.sort(idx, axis=-1) == np.sort(idx64, axis=-1)).all()
        counts = np.bincount(idx.reshape(-1), minlength=E)
        layers.append({"experts": idx.tolist(), "counts": counts.tolist()})
    assert margin >= 20 * p_err, f"near-tie in the router (gap {margin}, error {p_err})"
    out["prompts"].append({"ids": ids, "margin": margin, "p_err": p_err, "layers": layers})
    print(f"prompt of {len(ids)} tokens: logits reproduce the fixture within {diff:.1e}, "
          f"smallest top-{K} probability gap {margin:.2e}, float32 router error {p_err:.1e}")
dst = base.parent / (base.name + "_routes.json")
dst.write_text(json.dumps(out, separators=(",", ":")) + "\n")
print("wrote", dst)
