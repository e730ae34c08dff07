"""Tiny Hugging Face checkpoint directories (config.json + safetensors, as save_pretrained writes
them) for g4's HF loader, with transformers float32 logits. Regenerate with:
    /work/venv-hf/bin/python scripts/gen_tiny_hf.py --outdir tests/golden/tiny_hf

  gemma4_e2b_like/  Gemma4ForCausalLM, the tiny_e2b_like shape and seed of
                    scripts/gen_tiny_gemma4.py (PLE, KV sharing, double-wide MLP), so the weights
                    are exactly those of tests/golden/tiny_gemma4/tiny_e2b_like.gguf; one
                    model.safetensors. The script checks its logits against that fixture's JSON.
  gemma3_4b_like/   Gemma3ForCausalLM holding the weights of
                    tests/golden/tiny/tiny_4b_like.gguf (read with gguf-py; GGUF norm multipliers
                    w become HF's w - 1, exact in float32 for w in [0.5, 2]), GQA, linear x8
                    RoPE scaling on global layers; saved in 100 KB shards with
                    model.safetensors.index.json.
Each directory's expected.json holds transformers float32 logits (eager attention, no cache,
whole prompt in one forward) for three prompts of token ids.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from gguf import GGUFReader
from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, Gemma4ForCausalLM,
                          Gemma4TextConfig)

ap = argparse.ArgumentParser()
ap.add_argument("--outdir", required=True)
args = ap.parse_args()
out = Path(args.outdir)
ROOT = Path(__file__).resolve().parent.parent
COMMAND = "/work/venv-hf/bin/python scripts/gen_tiny_hf.py --outdir tests/golden/tiny_hf"
VOCAB = 272


def logits_for(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float().numpy()


def save(model, d, prompts, **kw):
    d.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(d), safe_serialization=True, **kw)
    fx = {"command": COMMAND, "torch": torch.__version__,
          "transformers": __import__("transformers").__version__, "prompts": []}
    for ids in prompts:
        lg = logits_for(model, ids)
        fx["prompts"].append({"ids": ids, "logits": [[float(f"{v:.6g}") for v in r] for r in lg]})
    (d / "expected.json").write_text(json.dumps(fx, separators=(",", ":")))
    return fx


# ---- Gemma 4, E2B-like: same config, seeds and randomisation as gen_tiny_gemma4.py ----
E2B = dict(
    num_hidden_layers=10, hidden_size=32, intermediate_size=48, num_attention_heads=2,
    num_key_value_heads=1, head_dim=16, global_head_dim=32, sliding_window=8,
    layer_types=["sliding_attention"] * 4 + ["full_attention"] + ["sliding_attention"] * 4
    + ["full_attention"],
    hidden_size_per_layer_input=8, vocab_size_per_layer_input=VOCAB, num_kv_shared_layers=5,
    use_double_wide_mlp=True, attention_k_eq_v=False, final_logit_softcapping=30.0)


def randomise(model, seed):  # gen_tiny_gemma4.py's randomise() for f16=False
    g = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        if t.ndim >= 2:
            new = torch.randn(t.shape, generator=g) / t.shape[-1] ** 0.5
            if "embed_tokens" in name:
                new = torch.randn(t.shape, generator=g) * 0.5
        elif name.endswith("layer_scalar"):
            new = 0.6 + 0.8 * torch.rand(t.shape, generator=g)
        elif name.endswith("per_expert_scale") or name.endswith("router.scale"):
            new = 0.5 + torch.rand(t.shape, generator=g)
        else:
            new = 1 + 0.2 * torch.randn(t.shape, generator=g)
        with torch.no_grad():
            t.copy_(new)


torch.manual_seed(100)
cfg = Gemma4TextConfig(vocab_size=VOCAB, max_position_embeddings=256, rms_norm_eps=1e-6,
                       tie_word_embeddings=True, **E2B)
cfg._attn_implementation = "eager"
m4 = Gemma4ForCausalLM(cfg).eval()
randomise(m4, 1000)
ref = json.loads((ROOT / "tests/golden/tiny_gemma4/tiny_e2b_like.json").read_text())
fx = save(m4, out / "gemma4_e2b_like", [p["ids"] for p in ref["prompts"]])
worst = max(np.abs(np.array(a["logits"]) - np.array(b["logits"])).max()
            for a, b in zip(fx["prompts"], ref["prompts"]))
print(f"gemma4_e2b_like: max |logit - tiny_e2b_like.json| = {worst:.2e}")
if worst > 1e-4:
    sys.exit("weights differ from gen_tiny_gemma4.py's tiny_e2b_like")

# ---- Gemma 3, 4B-like: the weights of tiny_4b_like.gguf ----
r = GGUFReader(str(ROOT / "tests/golden/tiny/tiny_4b_like.gguf"))
gw = {t.name: np.array(t.data, dtype=np.float32).reshape([int(x) for x in t.shape[::-1]])
      for t in r.tensors}
L, d, ff, H, Hkv, hd, W = 7, 48, 96, 4, 2, 16, 8
cfg3 = Gemma3TextConfig(
    vocab_size=VOCAB, hidden_size=d, intermediate_size=ff, num_hidden_layers=L,
    num_attention_heads=H, num_key_value_heads=Hkv, head_dim=hd, sliding_window=W,
    max_position_embeddings=256, rms_norm_eps=1e-6, query_pre_attn_scalar=hd,
    layer_types=["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(L)],
    rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                     "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}},
    tie_word_embeddings=True)
cfg3._attn_implementation = "eager"
m3 = Gemma3ForCausalLM(cfg3).eval()
HF = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
      "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
      "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
      "post_attention_norm": "post_attention_layernorm", "ffn_norm": "pre_feedforward_layernorm",
      "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
      "post_ffw_norm": "post_feedforward_layernorm"}
sd = m3.state_dict()
for n, a in gw.items():
    if n == "token_embd.weight":
        hn = "model.embed_tokens.weight"
    elif n == "output_norm.weight":
        hn = "model.norm.weight"
    else:
        _, i, kind, _ = n.split(".")
        hn = f"model.layers.{i}.{HF[kind]}.weight"
    v = torch.from_numpy(a.copy())
    if a.ndim == 1:
        assert np.all((a >= 0.5) & (a <= 2)), n  # w - 1 exact (Sterbenz)
        v = v - 1
    with torch.no_grad():
        sd[hn].copy_(v)
m3.tie_weights()
rng = np.random.default_rng(7)
p3 = [[2] + [int(x) for x in rng.integers(4, VOCAB, n - 1)] for n in (5, W + 7, 3 * W + 2)]
save(m3, out / "gemma3_4b_like", p3, max_shard_size="100KB")
for sub in ("gemma4_e2b_like", "gemma3_4b_like"):
    for f in sorted((out / sub).iterdir()):
        print(sub, f.name, f.stat().st_size)
