#!/usr/bin/env python3
"""Gemma 4 tokenizer fixtures from the `tokenizers` package (Hugging Face, PyPI).

Trains a small BPE vocabulary with `tokenizers` in Gemma 4's configuration and writes it in
the two forms g4 loads, plus the ids `tokenizers` gives for 600+ test strings:

  tests/golden/gemma4_tok/tokenizer.json   HF form: BPE(byte_fallback) + Replace(' ' -> '▁')
                                           normalizer + newline-run Split pre-tokenizer
  tests/golden/gemma4_tok/tokenizer.gguf   the same vocabulary as llama.cpp's converter writes
                                           a Gemma 4 GGUF (tokenizer.ggml.model = "gemma4",
                                           tokens/scores/token_type/merges), written by gguf-py
  tests/golden/gemma4_tok/cases.json       inputs (hex of UTF-8) and expected ids, no BOS
  tests/fuzz/corpus_tokenizer_json/        fuzz seeds (a cut-down tokenizer.json, chats)

Layout mirrors the real Gemma 4 vocabulary (gemma-architecture.md §4.2): <pad>=0 <eos>=1
<bos>=2 <unk>=3 <mask>=4, tool markers 46-52, <|think|>=98, <|channel>=100, <channel|>=101,
<|turn>=105, <turn|>=106, '\\n'=107, '\\n\\n'=108, byte tokens <0xXX> at 238 + byte, other ids
below 238 are <unusedN>; the learned pieces follow from 494. Training (Gemma-like): digits
never merge, whitespace runs and newline runs get their own pieces; the training-only word
split is not part of the saved tokenizer.json. The alphabet is limited so rare characters
exercise byte fallback. Training text is generated here (multilingual strings and code from
scripts/gen_tokenizer_fixtures.py plus Python stdlib module docstrings); nothing is
downloaded. Test inputs: every valid-UTF-8 input of scripts/gen_tokenizer_fixtures.py (the
Gemma 3 set: 80+ scripts, code, whitespace runs, emoji/ZWJ, digits, special texts), the 46
llama.cpp Gemma 4 vector inputs (../shared/testdata/gemma4) and Gemma 4 chat/tool markup.

Regenerate with exactly (from the repository root):

    .venv/bin/python scripts/gen_gemma4_tokenizer_fixtures.py --out tests/golden/gemma4_tok

This reuses the committed tokenizer.json and rewrites the GGUF and the ids deterministically.
`--retrain` trains a new vocabulary first (it was made that way once; `tokenizers` breaks ties
in training differently from run to run, so a retrained vocabulary differs slightly).

Also checks that llama.cpp (llama-cpp-python, vocab_only) gives the same ids on the GGUF form
when it can load it, and records how many agree.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import sys
from pathlib import Path

import gguf
import tokenizers
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import gen_tokenizer_fixtures as g3  # noqa: E402  (test strings of the Gemma 3 fixture)

COMMAND = ".venv/bin/python scripts/gen_gemma4_tokenizer_fixtures.py --out tests/golden/gemma4_tok"
SPACE = "\u2581"
N_MERGES = 4000
ALPHABET_LIMIT = 700

FIXED = {0: "<pad>", 1: "<eos>", 2: "<bos>", 3: "<unk>", 4: "<mask>",
         46: "<|tool>", 47: "<tool|>", 48: "<|tool_call>", 49: "<tool_call|>",
         50: "<|tool_response>", 51: "<tool_response|>", 52: '<|"|>', 98: "<|think|>",
         100: "<|channel>", 101: "<channel|>", 105: "<|turn>", 106: "<turn|>",
         255: "<|image|>", 256: "<|audio|>", 257: "<|video|>"}
BYTE_BASE = 238
N_RESERVED = BYTE_BASE + 256  # 494
# Chat markers llama.cpp's converter types USER_DEFINED (formats.md §5.1).
USER_DEFINED = {"<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|tool_response>",
                "<tool_response|>", '<|"|>'}

GEMMA4_MARKUP = [
    ("chat_turns", "<bos><|turn>user\nHi there<turn|>\n<|turn>model\nHello!<turn|>\n"),
    ("chat_system_think", "<|turn>system\n<|think|>\nBe brief.<turn|>\n<|turn>user\nWhy?<turn|>\n<|turn>model\n"),
    ("thought_channel", "<|channel>thought\nLet me think about 12 + 30.\n<channel|>The answer is 42.<turn|>"),
    ("empty_thought", "<|turn>model\n<|channel>thought\n<channel|>"),
    ("tool_decl", '<|tool>declaration:get_weather{description:<|"|>Weather<|"|>,parameters:{properties:{city:{type:<|"|>STRING<|"|>}},type:<|"|>OBJECT<|"|>}}<tool|>'),
    ("tool_call", '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>,days:2}<tool_call|><|tool_response>'),
    ("tool_response", '<|tool_response>response:get_weather{value:<|"|>{"temp_c": 15}<|"|>}<tool_response|>'),
    ("markers_in_prose", "Write <|turn> and <turn|> literally, or <|tool_call> and <|\"|>."),
    ("partial_markers", "<|turn <turn| <|tool_call <tool_call|> <|\"| <|\"|>"),
    ("overlapping_markers", "<|turn><turn|><|turn|><turn|turn>"),
    ("media", "Look: <|image|> and <|audio|> and <|video|>"),
    ("unused", "<unused0> <unused1><unused99>"),
    ("newline_markers", "\n<|turn>\n\n<turn|>\n\n\n"),
]


def training_text() -> list[str]:
    texts = [t for _, t in g3.LANGS] + [t for _, t in g3.CODE] + [t for _, t in g3.STRUCTURED]
    texts += g3.ENGLISH_SENTENCES + [t for _, t in g3.PUNCT] + [t for _, t in g3.EMOJI]
    mods = ["argparse", "asyncio", "collections", "csv", "dataclasses", "datetime", "decimal",
            "email", "functools", "heapq", "http.client", "inspect", "itertools", "json",
            "logging", "os", "pathlib", "pickle", "random", "re", "shutil", "socket", "sqlite3",
            "statistics", "string", "subprocess", "tarfile", "textwrap", "threading", "typing",
            "unittest", "urllib.parse", "uuid", "zipfile"]
    for name in mods:
        m = importlib.import_module(name)
        texts.append(m.__doc__ or "")
        for attr in sorted(dir(m)):
            doc = getattr(getattr(m, attr, None), "__doc__", None)
            if isinstance(doc, str) and not attr.startswith("_"):
                texts.append(doc)
    # Indented code, blank-line runs and space runs, so whitespace pieces are learned.
    texts += ["\n".join("    " * (i % 4) + "x = %d" % i for i in range(40)),
              "\n\n\n".join(["para"] * 30), "\n\n".join(["a"] * 30), "a  b   c    d" * 20]
    return texts


def train() -> tuple[list[str], list[tuple[str, str]], list[str]]:
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token=None))
    tok.normalizer = normalizers.Replace(" ", SPACE)
    # Training-only word split: spaces lead a word, digits alone, runs of spaces/newlines.
    tok.pre_tokenizer = pre_tokenizers.Split(
        Regex(SPACE + r"*[^" + SPACE + r"\d\n]+|" + SPACE + r"+|\d|\n+"), "isolated")
    tr = trainers.BpeTrainer(vocab_size=ALPHABET_LIMIT + N_MERGES + 64,
                             limit_alphabet=ALPHABET_LIMIT, show_progress=False,
                             max_token_length=16)
    tok.train_from_iterator(training_text(), trainer=tr)
    d = json.loads(tok.to_str())
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
              for m in d["model"]["merges"]][:N_MERGES]
    learned = [a + b for a, b in merges]
    made = set(learned)
    chars = [t for t, _ in sorted(d["model"]["vocab"].items(), key=lambda kv: kv[1])
             if len(t) == 1 and t not in made]
    return chars, merges, learned


def build() -> tuple[dict, list[str], list[str], dict[int, str]]:
    chars, merges, learned = train()
    vocab: dict[str, int] = {}
    names = dict(FIXED)
    for i in range(N_RESERVED):
        if i >= BYTE_BASE:
            names[i] = "<0x%02X>" % (i - BYTE_BASE)
        elif i not in names and i not in (107, 108):
            names[i] = "<unused%d>" % i
    names[107], names[108] = "\n", "\n\n"
    for i in range(N_RESERVED):
        vocab[names[i]] = i
    nxt = N_RESERVED
    for t in chars + learned:
        if t not in vocab:
            vocab[t] = nxt
            nxt += 1
    for a, b in merges:
        assert a in vocab and b in vocab and a + b in vocab, (a, b)
    added = [i for i in range(N_RESERVED)
             if not (i >= BYTE_BASE or i in (107, 108))]
    return vocab, merges, added, names


def make_tokenizer_json(vocab, merges, added, names) -> str:
    d = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": names[i], "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for i in added],
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\n+"},
                          "behavior": "Isolated", "invert": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [[a, b] for a, b in merges]},
    }
    return json.dumps(d, ensure_ascii=False, indent=1)


def write_gguf(path: Path, vocab, merges, added) -> None:
    toks = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    types = []
    added_set = set(added)
    for i, t in enumerate(toks):
        if BYTE_BASE <= i < N_RESERVED:
            types.append(gguf.TokenType.BYTE)
        elif t in USER_DEFINED:
            types.append(gguf.TokenType.USER_DEFINED)
        elif i in added_set:
            types.append(gguf.TokenType.CONTROL)
        else:
            types.append(gguf.TokenType.NORMAL)
    w = gguf.GGUFWriter(str(path), "gemma4")
    w.add_tokenizer_model("gemma4")
    w.add_tokenizer_pre("gemma4")
    w.add_token_list(toks)
    w.add_token_scores([-1000.0] * len(toks))  # the converter's placeholder (formats.md §5.1)
    w.add_token_types(types)
    w.add_token_merges(["%s %s" % m for m in merges])
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_unk_token_id(3)
    w.add_pad_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_vectors() -> list[tuple[str, str]]:
    p = ROOT.parent / "shared/testdata/gemma4/tokenizer-vectors.inp"
    parts = p.read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    assert len(parts) == 46, len(parts)
    return [("llamacpp_vec/%02d" % i, s) for i, s in enumerate(parts)]


def inputs() -> list[tuple[str, str]]:
    out = []
    for name, data in g3.build_inputs():
        try:
            out.append((name, data.decode("utf-8")))
        except UnicodeDecodeError:
            continue  # tokenizers takes str only; invalid UTF-8 is unit-tested in C++
    out += read_vectors()
    out += [("gemma4/" + n, t) for n, t in GEMMA4_MARKUP]
    # Text around every added marker, so each special id is exercised.
    for t in sorted(FIXED.values()):
        out.append(("marker/" + t, "a " + t + " b" + t + t))
    return out


def write_fuzz_seeds(d: dict, out: Path) -> None:
    """Seeds for tests/fuzz/tokenizer_json_fuzz.cc: the fixture cut down to 60 merges (so
    libFuzzer can mutate it), checked by tokenizers, and two chat message lists."""
    merges = d["model"]["merges"][:60]
    keep = {t for t, i in d["model"]["vocab"].items() if i < N_RESERVED}
    for a, b in merges:
        keep |= {a, b, a + b}
    order = sorted(keep, key=lambda t: d["model"]["vocab"][t])
    vocab = {t: i for i, t in enumerate(order)}
    small = dict(d)
    small["model"] = dict(d["model"], vocab=vocab, merges=merges)
    small["added_tokens"] = [dict(t, id=vocab[t["content"]]) for t in d["added_tokens"]]
    text = json.dumps(small, ensure_ascii=False)
    Tokenizer.from_str(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tiny_tokenizer.json").write_text(text, encoding="utf-8")
    (out / "chat_tools.json").write_text(json.dumps({"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "1", "function": {
            "name": "w", "arguments": {"city": "Paris", "n": [1, 2.5, None, True]}}}]},
        {"role": "tool", "tool_call_id": "1", "content": "ok"}],
        "tools": [{"function": {"name": "w", "description": "d", "parameters": {
            "type": "object", "properties": {"city": {"type": "string", "enum": ["a"]},
                                             "o": {"type": "object", "properties": {}},
                                             "l": {"type": "array", "items": {"type": "string"}}},
            "required": ["city"]}, "response": {"type": "object"}}}]}), encoding="utf-8")
    (out / "chat_plain.json").write_text(json.dumps([
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image"}]},
        {"role": "assistant", "content": "<|channel>x<channel|>yo"}]), encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--retrain", action="store_true",
                    help="train a new vocabulary (tokenizers breaks training ties differently "
                         "from run to run); otherwise reuse OUT/tokenizer.json")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.retrain or not (out / "tokenizer.json").exists():
        vocab, merges, added, names = build()
        tj = make_tokenizer_json(vocab, merges, added, names)
        (out / "tokenizer.json").write_text(tj + "\n", encoding="utf-8")
    tj = (out / "tokenizer.json").read_text(encoding="utf-8")
    d = json.loads(tj)
    vocab = d["model"]["vocab"]
    merges = [tuple(m) for m in d["model"]["merges"]]
    added = [t["id"] for t in d["added_tokens"]]
    tok = Tokenizer.from_str(tj)  # tokenizers validates vocab/merges here
    write_fuzz_seeds(d, ROOT / "tests/fuzz/corpus_tokenizer_json")
    write_gguf(out / "tokenizer.gguf", vocab, merges, added)

    cases = []
    for name, text in inputs():
        enc = tok.encode(text, add_special_tokens=False)
        ids = enc.ids
        dec = tok.decode(ids, skip_special_tokens=False)
        cases.append({"name": name, "hex": text.encode("utf-8").hex(), "ids": ids,
                      "hf_roundtrip": dec == text})
    llama = None
    try:
        import llama_cpp
        llm = llama_cpp.Llama(str(out / "tokenizer.gguf"), vocab_only=True, verbose=False)
        agree = 0
        for c in cases:
            ids = llm.tokenize(bytes.fromhex(c["hex"]), add_bos=False, special=True)
            c["llamacpp_same"] = ids == c["ids"]
            agree += ids == c["ids"]
        llama = "llama-cpp-python %s: %d/%d identical" % (llama_cpp.__version__, agree, len(cases))
    except Exception as e:  # noqa: BLE001  (llama.cpp may refuse a vocab-only gemma4 file)
        llama = "llama-cpp-python could not load the GGUF: %s" % (str(e).splitlines() or ["?"])[0]
    fx = {"generator": "tokenizers %s, gguf-py %s" % (tokenizers.__version__,
                                                     importlib.metadata.version("gguf")),
          "command": COMMAND,
          "llamacpp": llama,
          "vocab_size": len(vocab), "n_merges": len(merges),
          "note": "ids from tokenizers' Tokenizer.encode(text, add_special_tokens=False), which "
                  "always splits added tokens (g4: parse_special = true, no BOS)",
          "cases": cases}
    head = json.dumps({k: v for k, v in fx.items() if k != "cases"}, ensure_ascii=False,
                      indent=1)[:-2]
    body = ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases)
    (out / "cases.json").write_text(head + ',\n "cases": [\n' + body + "\n]}\n",
                                    encoding="utf-8")
    print("%d cases, vocab %d, %d merges; %s" % (len(cases), len(vocab), len(merges), llama))
    return 0


if __name__ == "__main__":
    sys.exit(main())
