"""The Gemma 3 vocabulary `g4 convert` writes from the published tokenizer.json, checked with
llama.cpp against the GGUF vocabulary llama.cpp's converter wrote from tokenizer.model (the
default model, ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf). Builds a throwaway HF directory:
/work/shared/testdata/gemma3/{tokenizer.json,tokenizer_config.json}, a one-layer config and a
zero embedding (only the tokenizer metadata matters), converts it with g4, then compares the
metadata and llama.cpp's tokenization (llama-cpp-python, vocab_only) of every string of
tests/golden/tokenizer_gemma3.json, with and without special-token parsing:

    .venv/bin/python scripts/check_gemma3_vocab_llamacpp.py --g4 build/release/g4

Result 2026-11-29: token texts identical; scores identical for every merged piece (the 19225
single characters differ; they are never a merge result, so the SPM tokenizer never reads
them); 6245 types differ (non-special added tokens such as <unusedN>/<mask> that
tokenizer.model marks CONTROL are USER_DEFINED from tokenizer.json, <start_of_image>/
<end_of_image> the reverse); tokenization identical on 1328 of 1346 cases, the 18 others are
those special texts written in plain text with special parsing off.
"""
import argparse
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("--g4", default="build/release/g4")
ap.add_argument("--ref", default=str(Path.home() / ".cache/g4/models/gemma-3-270m-q4_k_m.gguf"))
args = ap.parse_args()
ROOT = Path(__file__).resolve().parent.parent
SRC = Path("/work/shared/testdata/gemma3")

with tempfile.TemporaryDirectory() as tmp:
    d = Path(tmp) / "g3"
    d.mkdir()
    for f in ["tokenizer.json", "tokenizer_config.json"]:
        (d / f).write_bytes((SRC / f).read_bytes())
    tj = json.loads((d / "tokenizer.json").read_text())
    n = 1 + max(max(tj["model"]["vocab"].values()), max(a["id"] for a in tj["added_tokens"]))
    (d / "config.json").write_text(json.dumps({
        "model_type": "gemma3_text", "vocab_size": n, "hidden_size": 4, "num_hidden_layers": 1,
        "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": 4,
        "intermediate_size": 4, "layer_types": ["full_attention"], "query_pre_attn_scalar": 4}))
    data = np.zeros((n, 4), np.float32).tobytes()
    hdr = json.dumps({"model.embed_tokens.weight": {"dtype": "F32", "shape": [n, 4],
                                                    "data_offsets": [0, len(data)]}}).encode()
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(hdr)) + hdr + data)
    out = Path(tmp) / "g3.gguf"
    subprocess.run([args.g4, "convert", str(d), str(out), "--type", "f32"], check=True,
                   capture_output=True)
    a, b = GGUFReader(str(out)), GGUFReader(args.ref)
    for k in ["tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"]:
        x, y = a.fields[k].contents(), b.fields[k].contents()
        m = min(len(x), len(y))
        print(f"{k}: {len(x)} vs {len(y)} entries, {sum(x[i] != y[i] for i in range(m))} differ")
    la = Llama(str(out), vocab_only=True, verbose=False)
    lb = Llama(args.ref, vocab_only=True, verbose=False)
    cases = json.loads((ROOT / "tests/golden/tokenizer_gemma3.json").read_text())["cases"]
    same, diff = 0, []
    for c in cases:
        t = bytes.fromhex(c["hex"]) if "hex" in c else c["text"].encode()
        for sp in (False, True):
            if la.tokenize(t, add_bos=False, special=sp) == lb.tokenize(t, add_bos=False,
                                                                         special=sp):
                same += 1
            else:
                diff.append((t[:30].decode("utf-8", "replace"), sp))
    print(f"tokenization identical on {same} of {same + len(diff)}; differing: {diff}")
sys.exit(0)
