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

tiny(out / "tiny_model.gguf")
tiny(out / "tiny_vocab_only.gguf", with_tensors=False)
print("wrote", sorted(p.name for p in out.iterdir()))
