"""A tiny random-weight Gemma 4 chat model: a tiny Gemma 4 GGUF of scripts/gen_tiny_gemma4.py
re-vocabularied with the Gemma 4 test tokenizer, so the server can drive real Gemma 4 chat and
tool markup (<|turn>, <turn|>, <|channel>, <channel|>, <|tool_call>, <tool_call|>, <|"|>,
<|tool_response>, ...) through a whole model end to end (tests/server/test_tools_gemma4.py).

Regenerate with exactly (from the repository root; the fixture venv, gguf==0.19.0, see
scripts/requirements-fixtures.txt; not needed by the tests):

    /work/venv-hf/bin/python scripts/gen_tiny_gemma4_chat.py

Inputs (committed):
  tests/golden/tiny_gemma4/tiny_26b_like.gguf   tiny random Gemma 4 (scripts/gen_tiny_gemma4.py),
                                                272-token toy vocab
  tests/golden/gemma4_tok/tokenizer.gguf        the Gemma 4 test tokenizer, 5192 tokens
                                                (scripts/gen_gemma4_tokenizer_fixtures.py)
Output: tests/golden/tiny_gemma4/tiny_gemma4_chat.gguf

Every metadata key and tensor of the base model is copied unchanged, except:
  - tokenizer.*: all of them come from tokenizer.gguf instead, with their GGUF types (tokens
    and merges string arrays, scores float32 array, token_type int32 array, ids uint32, ...);
  - the vocabulary-sized tensors (token_embd; output / per_layer_token_embd where the base has
    them, the tiny models tie their embeddings) are regenerated at the new vocabulary size with
    a fixed-seed numpy RNG: normal with the base tensor's standard deviation, same dtype;
  - general.name is "tiny-gemma4-chat-it" (g4 treats "-it" names as instruction tuned, so chat
    templates apply; the GGUF carries no tokenizer.chat_template, g4 builds Gemma 4 chats itself).
The weights are random, so generated text is meaningless: tests gate on structure only.

Base choice: tiny_31b_like (F32, 32-wide) would need 5192 x 32 x 4 B = 664 KB for token_embd
alone, about 1.4 MB in all; tiny_e2b_like also has a vocab x 80 per-layer embedding (1.7 MB).
tiny_26b_like (MoE, F16 matrices, 32-wide) gives about 0.8 MB, the smallest that fits under 1 MB.
The output is deterministic (fixed seed, key and tensor order of the inputs).
"""
import argparse
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "tests/golden"
COMMAND = "/work/venv-hf/bin/python scripts/gen_tiny_gemma4_chat.py"
NAME = "tiny-gemma4-chat-it"
SEED = 20240412
VOCAB_TENSORS = ("token_embd.weight", "output.weight", "per_layer_token_embd.weight")

ap = argparse.ArgumentParser()
ap.add_argument("--base", default=str(GOLD / "tiny_gemma4/tiny_26b_like.gguf"))
ap.add_argument("--tokenizer", default=str(GOLD / "gemma4_tok/tokenizer.gguf"))
ap.add_argument("--out", default=str(GOLD / "tiny_gemma4/tiny_gemma4_chat.gguf"))
args = ap.parse_args()


def field_value(f):
    """(value, type, sub_type) of a reader field, as GGUFWriter.add_key_value takes them."""
    vtype = f.types[0]
    if vtype == GGUFValueType.ARRAY:
        sub = f.types[-1]
        if sub == GGUFValueType.STRING:
            val = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        else:
            val = [f.parts[i].tolist()[0] for i in f.data]
        return val, vtype, sub
    if vtype == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8"), vtype, None
    return f.parts[f.data[0]].tolist()[0], vtype, None


def copy_fields(reader, writer, keep):
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or not keep(key):
            continue
        val, vtype, sub = field_value(f)
        writer.add_key_value(key, val, vtype, sub)


base = GGUFReader(args.base)
tok = GGUFReader(args.tokenizer)
arch = field_value(base.fields["general.architecture"])[0]
assert arch == "gemma4", arch
assert field_value(tok.fields["tokenizer.ggml.model"])[0] == "gemma4"
old_vocab = len(base.fields["tokenizer.ggml.tokens"].data)
new_vocab = len(tok.fields["tokenizer.ggml.tokens"].data)

w = GGUFWriter(args.out, arch)
w.add_key_value("general.name", NAME, GGUFValueType.STRING)
copy_fields(base, w, lambda k: not k.startswith("tokenizer.") and k != "general.name")
copy_fields(tok, w, lambda k: k.startswith("tokenizer."))

rng = np.random.default_rng(SEED)
for t in base.tensors:
    data = np.asarray(t.data)
    if t.name in VOCAB_TENSORS:
        assert data.shape[0] == old_vocab, (t.name, data.shape)
        std = float(data.astype(np.float64).std())
        new = rng.standard_normal((new_vocab,) + data.shape[1:]) * std
        data = new.astype(data.dtype)
    else:
        assert old_vocab not in data.shape, f"{t.name} {data.shape} looks vocabulary-sized"
    w.add_tensor(t.name, data, raw_dtype=t.tensor_type)

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(f"wrote {args.out} ({Path(args.out).stat().st_size} bytes, vocab {new_vocab})")
