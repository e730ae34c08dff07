"""Tiny random Gemma 2 checkpoints (Gemma2ForCausalLM, transformers float32) for g4's gemma2
support, as HF directories and as GGUF files in llama.cpp's `gemma2` layout. Regenerate with:
    /work/venv-hf/bin/python scripts/gen_tiny_gemma2.py

  tests/golden/tiny_hf/gemma2_2b_like/  4 layers (sliding, global, sliding, global: transformers'
        default layer_types, the period 2 llama.cpp assumes), GQA 4 query / 2 KV heads of 16,
        sliding window 8, Gemma 2's soft-caps (attention 50, final 30) with q/k projections
        scaled up so that both caps bite, query_pre_attn_scalar = head_dim (the scale llama.cpp
        derives), rope_theta 10000, tied head. llama.cpp computes this one exactly.
  tests/golden/tiny_hf/gemma2_qpas/     the configuration fields llama.cpp's gemma2 graph cannot
        express: query_pre_attn_scalar 12 != head_dim 16, non-periodic layer_types (global,
        sliding, sliding, global), rope_theta 5000, soft-caps 10 / 15, GQA 4/1, window 6.
  tests/golden/tiny_gemma2/<name>.gguf  the same weights written by gguf-py the way llama.cpp's
        convert_hf_to_gguf.py Gemma2Model does (RMSNorm weights + 1, lm_head dropped, the keys
        it writes: context/embedding/block/feed-forward lengths, head counts, key/value length,
        rms eps, attn_logit_softcapping, final_logit_softcapping, sliding_window); the qpas file
        also carries rope.freq_base, a bool sliding_window_pattern and g4's attention.scale.

Each directory's expected.json holds transformers float32 logits at every position (eager
attention, no cache, the whole prompt in one forward) for three prompts of token ids (5 tokens,
window + 7, 3 * window + 2, so sliding layers drop keys), and "tokens": the toy tokenizer's ids
(the tokenizer.json / tokenizer_config.json of tests/golden/tiny_hf/gemma3_4b_like, made by
scripts/gen_tiny_hf.py, copied so `g4 convert` has a vocabulary to write). The script checks
that each soft-cap and the query scale change the logits by more than 0.05 (so a forward that
ignored one would fail the 1e-3 tests).
"""
import copy
import json
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from gguf import GGUFWriter
from transformers import Gemma2Config, Gemma2ForCausalLM

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "/work/venv-hf/bin/python scripts/gen_tiny_gemma2.py"
TOK_SRC = ROOT / "tests/golden/tiny_hf/gemma3_4b_like"
VOCAB = 272

SHAPES = {
    "gemma2_2b_like": dict(
        num_hidden_layers=4, hidden_size=32, intermediate_size=48, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
        attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    "gemma2_qpas": dict(
        num_hidden_layers=4, hidden_size=32, intermediate_size=32, num_attention_heads=4,
        num_key_value_heads=1, head_dim=16, sliding_window=6, query_pre_attn_scalar=12,
        attn_logit_softcapping=10.0, final_logit_softcapping=15.0,
        layer_types=["full_attention", "sliding_attention", "sliding_attention",
                     "full_attention"],
        rope_parameters={"rope_type": "default", "rope_theta": 5000.0}),
}
QK_GAIN = {"gemma2_2b_like": 6.0, "gemma2_qpas": 3.0}  # attention logits large enough to cap


def randomise(model, seed, qk_gain):
    g = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        if t.ndim >= 2:
            new = torch.randn(t.shape, generator=g) / t.shape[-1] ** 0.5
            if "embed_tokens" in name:
                new = torch.randn(t.shape, generator=g)
            if "q_proj" in name or "k_proj" in name:
                new = new * qk_gain
        else:  # HF Gemma 2 RMSNorm multiplies by (1 + w)
            new = 0.2 * torch.randn(t.shape, generator=g)
        with torch.no_grad():
            t.copy_(new)
    model.tie_weights()


def build(cfg_kw, seed, **override):
    kw = dict(cfg_kw, **override)
    c = Gemma2Config(vocab_size=VOCAB, max_position_embeddings=256, rms_norm_eps=1e-6,
                     tie_word_embeddings=True, **kw)
    c._attn_implementation = "eager"
    torch.manual_seed(seed)
    return Gemma2ForCausalLM(c).eval()


def logits_for(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float().numpy()


def write_gguf(path, name, model, cfg):
    g = GGUFWriter(str(path), "gemma2")
    g.add_name(name)
    g.add_context_length(cfg.max_position_embeddings)
    g.add_embedding_length(cfg.hidden_size)
    g.add_block_count(cfg.num_hidden_layers)
    g.add_feed_forward_length(cfg.intermediate_size)
    g.add_head_count(cfg.num_attention_heads)
    g.add_head_count_kv(cfg.num_key_value_heads)
    g.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    g.add_key_length(cfg.head_dim)
    g.add_value_length(cfg.head_dim)
    g.add_file_type(0)
    g.add_attn_logit_softcapping(cfg.attn_logit_softcapping)
    g.add_final_logit_softcapping(cfg.final_logit_softcapping)
    g.add_sliding_window(cfg.sliding_window)
    if name == "gemma2_qpas":  # what llama.cpp's converter cannot write; g4 reads it
        g.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
        g.add_sliding_window_pattern([t == "sliding_attention" for t in cfg.layer_types])
        g.add_attention_scale(cfg.query_pre_attn_scalar ** -0.5)
    tj = json.loads((TOK_SRC / "tokenizer.json").read_text())
    toks = sorted(tj["model"]["vocab"], key=tj["model"]["vocab"].get)
    g.add_tokenizer_model("llama")
    g.add_token_list(toks)
    g.add_token_scores([0.0] * 260 + [-float(i) for i in range(VOCAB - 260)])
    g.add_token_types([3, 3, 3, 2] + [6] * 256 + [1] * (VOCAB - 260))
    g.add_bos_token_id(2)
    g.add_eos_token_id(1)
    g.add_add_bos_token(True)
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q",
             "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "post_attention_layernorm": "post_attention_norm",
             "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for n, t in model.state_dict().items():
        if n == "lm_head.weight":
            continue  # llama.cpp's converter skips it: the head is the embedding
        a = t.float().numpy().astype(np.float32)
        if n.endswith("norm.weight"):
            a = (a + np.float32(1)).astype(np.float32)  # Gemma2Model.modify_tensors: + 1
        if n == "model.embed_tokens.weight":
            gn = "token_embd.weight"
        elif n == "model.norm.weight":
            gn = "output_norm.weight"
        else:
            _, _, i, rest = n.split(".", 3)
            gn = f"blk.{i}.{names[rest.rsplit('.', 1)[0]]}.weight"
        g.add_tensor(gn, a)
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_tensors_to_file()
    g.close()


def main():
    gguf_dir = ROOT / "tests/golden/tiny_gemma2"
    gguf_dir.mkdir(parents=True, exist_ok=True)
    tokens = json.loads((TOK_SRC / "expected.json").read_text())["tokens"]
    for i, (sub, shape) in enumerate(SHAPES.items()):
        seed = 200 + i
        m = build(shape, seed)
        randomise(m, 2000 + i, QK_GAIN[sub])
        W = shape["sliding_window"]
        rng = np.random.default_rng(17 + i)
        prompts = [[2] + [int(x) for x in rng.integers(4, VOCAB, n - 1)]
                   for n in (5, W + 7, 3 * W + 2)]
        d = ROOT / "tests/golden/tiny_hf" / sub
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        m.save_pretrained(str(d), safe_serialization=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(TOK_SRC / f, d / f)
        fx = {"command": COMMAND, "torch": torch.__version__,
              "transformers": transformers.__version__, "prompts": [], "tokens": tokens}
        for ids in prompts:
            lg = logits_for(m, ids)
            fx["prompts"].append({"ids": ids,
                                  "logits": [[float(f"{v:.6g}") for v in r] for r in lg]})
        (d / "expected.json").write_text(json.dumps(fx, separators=(",", ":")))
        write_gguf(gguf_dir / f"{sub}.gguf", sub, m, m.config)
        # Each feature must matter: the same weights without it move the logits.
        ref = [logits_for(m, ids) for ids in prompts]
        for what, kw in (("attention soft-cap", {"attn_logit_softcapping": None}),
                         ("final soft-cap", {"final_logit_softcapping": None}),
                         ("query_pre_attn_scalar", {"query_pre_attn_scalar": shape["head_dim"]
                                                    if sub == "gemma2_qpas" else 32}),
                         ("sliding window", {"sliding_window": 1000})):
            alt = build(shape, seed, **kw)
            alt.load_state_dict(copy.deepcopy(m.state_dict()))
            delta = max(np.abs(logits_for(alt, ids) - r).max() for ids, r in zip(prompts, ref))
            print(f"{sub}: without {what}: max |delta logit| = {delta:.3g}")
            assert delta > 0.05, (sub, what)
        for f in sorted(d.iterdir()):
            print(sub, f.name, f.stat().st_size)
        print(sub, "gguf", (gguf_dir / f"{sub}.gguf").stat().st_size)


if __name__ == "__main__":
    main()
