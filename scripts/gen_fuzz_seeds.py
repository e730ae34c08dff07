"""Seed corpus for the GGUF fuzzer (tests/fuzz/gguf_fuzz.cc), written by gguf-py, an
independent GGUF writer. Regenerate with:
    .venv/bin/python scripts/gen_fuzz_seeds.py tests/fuzz/corpus
"""
import sys
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType
from gguf.quants import quantize

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)

def tiny(path, n_vocab=8, with_tensors=True):
    w = GGUFWriter(str(path), "gemma3")
    w.add_name("fuzz seed")
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_block_count(1)
    w.add_feed_forward_length(64)
    w.add_head_count(1)
    w.add_head_count_kv(1)
    w.add_key_length(32)
    w.add_value_length(32)
    w.add_sliding_window(16)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("llama")
    toks = ["<pad>", "<eos>", "<bos>", "<unk>", "\u2581a", "b", "<0x41>", "<start_of_turn>"][:n_vocab]
    w.add_token_list(toks)
    w.add_token_scores([0.0] * len(toks))
    w.add_token_types([3, 3, 3, 2, 1, 1, 6, 3][:len(toks)])
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_array("t.nested", [1, 2, 3])
    if with_tensors:
        rng = np.random.default_rng(0)
        w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
        emb = rng.standard_normal((n_vocab, 32)).astype(np.float32)
        w.add_tensor("token_embd.weight", quantize(emb, GGMLQuantizationType.Q8_0),
                     raw_dtype=GGMLQuantizationType.Q8_0)
        w.add_tensor("blk.0.attn_q.weight", rng.standard_normal((32, 32)).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

def tiny_gemma4(path):
    """Every gemma4 tensor kind at toy size: PLE, a K=V global layer, a KV-shared layer, MoE."""
    L, d, H, hs, hg, ff, P, E, fe, V = 3, 8, 2, 4, 8, 8, 2, 2, 4, 8
    sliding = [True, False, False]
    w = GGUFWriter(str(path), "gemma4")
    a = "gemma4."
    w.add_name("fuzz seed gemma4")
    for k, v in [("context_length", 64), ("embedding_length", d), ("block_count", L),
                 ("attention.head_count", H), ("attention.key_length", hg),
                 ("attention.key_length_swa", hs), ("attention.sliding_window", 4),
                 ("attention.shared_kv_layers", 1), ("embedding_length_per_layer_input", P),
                 ("rope.dimension_count", hg), ("expert_count", E), ("expert_used_count", 1),
                 ("expert_feed_forward_length", fe)]:
        w.add_uint32(a + k, v)
    w.add_array(a + "feed_forward_length", [ff, ff, 2 * ff])
    w.add_array(a + "attention.head_count_kv", [1, 1, 1])
    w.add_array(a + "attention.sliding_window_pattern", sliding)
    w.add_float32(a + "final_logit_softcapping", 30.0)
    w.add_tokenizer_model("llama")
    toks = ["<pad>", "<eos>", "<bos>", "<unk>", "\u2581a", "b", "<0x41>", "<start_of_turn>"]
    w.add_token_list(toks)
    w.add_token_scores([0.0] * V)
    w.add_token_types([3, 3, 3, 2, 1, 1, 6, 3])
    rng = np.random.default_rng(1)
    def t(name, *shape):
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    t("token_embd.weight", V, d)
    t("output_norm.weight", d)
    w.add_tensor("rope_freqs.weight", np.array([1.0, 1.0, 1e30, 1e30], dtype=np.float32))
    t("per_layer_token_embd.weight", V, L * P)
    t("per_layer_model_proj.weight", L * P, d)
    t("per_layer_proj_norm.weight", P)
    for l in range(L):
        b = f"blk.{l}."
        hd = hs if sliding[l] else hg
        for n in ["attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm", "post_norm",
                  "pre_ffw_norm_2", "post_ffw_norm_1", "post_ffw_norm_2"]:
            t(b + n + ".weight", d)
        t(b + "attn_q.weight", H * hd, d)
        t(b + "attn_q_norm.weight", hd)
        t(b + "attn_output.weight", d, H * hd)
        if l < 2:
            t(b + "attn_k.weight", hd, d)
            t(b + "attn_k_norm.weight", hd)
            if sliding[l]:
                t(b + "attn_v.weight", hd, d)
        f = 2 * ff if l == 2 else ff
        t(b + "ffn_gate.weight", f, d)
        t(b + "ffn_up.weight", f, d)
        t(b + "ffn_down.weight", d, f)
        t(b + "ffn_gate_inp.weight", E, d)
        t(b + "ffn_gate_inp.scale", d)
        t(b + "ffn_gate_up_exps.weight", E, 2 * fe, d)
        t(b + "ffn_down_exps.weight", E, d, fe)
        t(b + "ffn_down_exps.scale", E)
        t(b + "inp_gate.weight", P, d)
        t(b + "proj.weight", d, P)
        t(b + "layer_output_scale.weight", 1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

tiny(out / "tiny_model.gguf")
tiny(out / "tiny_vocab_only.gguf", with_tensors=False)
tiny_gemma4(out / "tiny_gemma4.gguf")
print("wrote", sorted(p.name for p in out.iterdir()))
