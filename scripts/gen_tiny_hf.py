"""Tiny Hugging Face checkpoint directories (config.json + safetensors, as save_pretrained writes
them) for g4's HF loader, with transformers float32 logits. Regenerate with:
    /work/venv-hf/bin/python scripts/gen_tiny_hf.py --outdir tests/golden/tiny_hf

  gemma4_e2b_like/  Gemma4ForCausalLM, the tiny_e2b_like shape and seed of
                    scripts/gen_tiny_gemma4.py (PLE, KV sharing, double-wide MLP), so the weights
                    are exactly those of tests/golden/tiny_gemma4/tiny_e2b_like.gguf; one
                    model.safetensors. The script checks its logits against that fixture's JSON.
  gemma4_31b_like/  the tiny_31b_like shape and seed of gen_tiny_gemma4.py (K=V global layers with
                    their own KV-head count, 16/32 head sizes); one model.safetensors.
  gemma4_26b_like/  the tiny_26b_like shape and seed (MoE: 16 experts, top-4, shared dense MLP,
                    K=V globals; matrices rounded to f16 values, stored f32); saved in 100 KB
                    shards with model.safetensors.index.json.
  gemma3_4b_like/   Gemma3ForCausalLM holding the weights of
                    tests/golden/tiny/tiny_4b_like.gguf (read with gguf-py; GGUF norm multipliers
                    w become HF's w - 1, exact in float32 for w in [0.5, 2]), GQA, linear x8
                    RoPE scaling on global layers; saved in 100 KB shards with
                    model.safetensors.index.json.
Each directory's expected.json holds transformers float32 logits (eager attention, no cache,
whole prompt in one forward) for three prompts of token ids (Gemma 4: gen_tiny_gemma4.py's
prompts: short, longer than the window 8, and long enough that every layer, the KV-shared ones
included, sees wrapped windows), and "tokens": the ids `tokenizers` gives for a few strings.
Every directory also gets a toy 272-token tokenizer.json (a BPE model made with the
`tokenizers` package in Gemma's configuration: byte fallback, ' ' -> U+2581, Gemma 4 also the
newline-run split; <pad> <eos> <bos> <unk>, 256 <0xXX> byte tokens, 12 learned pieces) and a
tokenizer_config.json, so `g4 convert` has a vocabulary to write.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from gguf import GGUFReader
from tokenizers import Tokenizer
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


SPACE = "\u2581"
PIECES = [SPACE, "t", "h", "e", "a", "n", "th", "the", SPACE + "the", SPACE + "a", SPACE + "an",
          "an"]
# Merge order chosen so that merging by rank (HF BPE) and by score = -rank over all pairs whose
# concatenation is a token (llama.cpp's SentencePiece-style "llama" model) agree.
MERGES = [["t", "h"], ["th", "e"], [SPACE, "the"], [SPACE, "a"], [SPACE + "a", "n"], ["a", "n"]]
TOKEN_TESTS = ["the", " the an than", "then a nan\n\nthe  end", "ha\U0001F600 \u00fcber the\n",
               "\n\n\n a\tb"]


def write_tokenizer(d, gemma4):
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    toks = specials + [f"<0x{b:02X}>" for b in range(256)] + PIECES
    assert len(toks) == VOCAB
    tj = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for i, t in enumerate(specials)],
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
        "pre_tokenizer": ({"type": "Split", "pattern": {"Regex": "\n+"}, "behavior": "Isolated",
                           "invert": False} if gemma4 else None),
        "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(toks)}, "merges": MERGES},
    }
    tok = Tokenizer.from_str(json.dumps(tj))
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<bos>", "eos_token": "<eos>",
        "unk_token": "<unk>", "pad_token": "<pad>", "add_bos_token": True,
        "add_eos_token": False}, indent=1))
    return [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in TOKEN_TESTS]


def save(model, d, prompts, gemma4=True, **kw):
    d.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(d), safe_serialization=True, **kw)
    fx = {"command": COMMAND, "torch": torch.__version__,
          "transformers": __import__("transformers").__version__, "prompts": [],
          "tokens": write_tokenizer(d, gemma4)}
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


def randomise(model, seed, f16=False):  # gen_tiny_gemma4.py's randomise()
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
        if f16 and new.ndim >= 2 and not name.endswith("router.proj.weight"):
            new = new.half().float()  # gen_tiny_gemma4.py's F16_MODELS rounding
        with torch.no_grad():
            t.copy_(new)


# 31B-like and 26B-A4B-like: gen_tiny_gemma4.py's SHAPES entries 1 and 2 (copied; that script
# runs on import), its seeds 100 + i / 1000 + i and its f16 rounding of the 26B-like matrices.
S31 = dict(
    num_hidden_layers=7, hidden_size=32, intermediate_size=64, num_attention_heads=8,
    num_key_value_heads=4, num_global_key_value_heads=2, head_dim=16, global_head_dim=32,
    sliding_window=8, layer_types=["sliding_attention"] * 5 + ["full_attention"] * 2,
    hidden_size_per_layer_input=0, attention_k_eq_v=True, final_logit_softcapping=30.0)
S26 = dict(
    num_hidden_layers=6, hidden_size=32, intermediate_size=24, num_attention_heads=4,
    num_key_value_heads=2, num_global_key_value_heads=1, head_dim=16, global_head_dim=32,
    sliding_window=8, layer_types=["sliding_attention"] * 5 + ["full_attention"],
    hidden_size_per_layer_input=0, attention_k_eq_v=True, enable_moe_block=True,
    num_experts=16, top_k_experts=4, moe_intermediate_size=8, final_logit_softcapping=10.0)


def gemma4_fixture(sub, ref_name, shape, i, f16=False, **kw):
    torch.manual_seed(100 + i)
    c = Gemma4TextConfig(vocab_size=VOCAB, max_position_embeddings=256, rms_norm_eps=1e-6,
                         tie_word_embeddings=True, **shape)
    c._attn_implementation = "eager"
    m = Gemma4ForCausalLM(c).eval()
    randomise(m, 1000 + i, f16)
    ref = json.loads((ROOT / f"tests/golden/tiny_gemma4/{ref_name}.json").read_text())
    fx = save(m, out / sub, [p["ids"] for p in ref["prompts"]], **kw)
    worst = max(np.abs(np.array(a["logits"]) - np.array(b["logits"])).max()
                for a, b in zip(fx["prompts"], ref["prompts"]))
    print(f"{sub}: max |logit - {ref_name}.json| = {worst:.2e}")
    if worst > 1e-4:
        sys.exit(f"weights differ from gen_tiny_gemma4.py's {ref_name}")


gemma4_fixture("gemma4_e2b_like", "tiny_e2b_like", E2B, 0)
gemma4_fixture("gemma4_31b_like", "tiny_31b_like", S31, 1)
gemma4_fixture("gemma4_26b_like", "tiny_26b_like", S26, 2, f16=True, max_shard_size="100KB")

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
save(m3, out / "gemma3_4b_like", p3, gemma4=False, max_shard_size="100KB")
for sub in ("gemma4_e2b_like", "gemma4_31b_like", "gemma4_26b_like", "gemma3_4b_like"):
    for f in sorted((out / sub).iterdir()):
        print(sub, f.name, f.stat().st_size)
