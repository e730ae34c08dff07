"""Compares `g4 convert` with llama.cpp's own converter (convert_hf_to_gguf.py) on the tiny
Gemma 4 HF fixtures (tests/golden/tiny_hf/gemma4_*): both are run at --outtype f32, f16 and bf16 and
the two GGUFs must hold the same tensors (names, shapes, types, bytes) and the same metadata,
tokenizer included, except the cosmetic keys llama.cpp derives from the directory name and
parameter count (general.name, general.size_label, general.type). Needs torch + transformers
(the fixture venv, scripts/requirements-fixtures.txt) and a llama.cpp source tree (the one
scripts/build_llama_server.sh unpacks from llama-cpp-python's sdist):

    /work/venv-hf/bin/python scripts/check_convert_vs_llamacpp.py \
        --llama-src ~/.cache/g4/llama.cpp/src-0.3.36 --g4 build/release/g4

The Gemma 3 fixture is not compared: llama.cpp converts a Gemma 3 tokenizer only from
tokenizer.model (SentencePiece), which the fixture does not have (g4 reads tokenizer.json).
Result 2026-11-29 (llama.cpp of llama-cpp-python 0.3.36): identical at f32, f16 and bf16 for all
three fixtures apart from the cosmetic keys.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--llama-src", required=True)
ap.add_argument("--g4", default="build/release/g4")
args = ap.parse_args()
src = Path(args.llama_src).expanduser()
sys.path.insert(0, str(src / "gguf-py"))
from gguf import GGUFReader  # noqa: E402  (llama.cpp's own gguf-py)

ROOT = Path(__file__).resolve().parent.parent
COSMETIC = {"general.name", "general.size_label", "general.type"}


def kv(r):
    return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}


bad = 0
with tempfile.TemporaryDirectory() as tmp:
    for sub in ["gemma4_e2b_like", "gemma4_31b_like", "gemma4_26b_like"]:
        d = ROOT / "tests/golden/tiny_hf" / sub
        for t in ["f32", "f16", "bf16"]:
            mine, theirs = Path(tmp) / f"{sub}.{t}.g4.gguf", Path(tmp) / f"{sub}.{t}.llama.gguf"
            subprocess.run([args.g4, "convert", str(d), str(mine), "--type", t], check=True,
                           capture_output=True)
            subprocess.run([sys.executable, str(src / "convert_hf_to_gguf.py"), str(d),
                            "--outtype", t, "--outfile", str(theirs)], check=True,
                           capture_output=True)
            a, b = GGUFReader(str(mine)), GGUFReader(str(theirs))
            diffs = []
            ka, kb = kv(a), kv(b)
            for k in sorted(set(ka) | set(kb)):
                if k in COSMETIC:
                    continue
                va, vb = ka.get(k, "<absent>"), kb.get(k, "<absent>")
                if va != vb:
                    diffs.append(f"key {k}: g4 {str(va)[:60]} llama.cpp {str(vb)[:60]}")
            ta, tb = {x.name: x for x in a.tensors}, {x.name: x for x in b.tensors}
            for n in sorted(set(ta) | set(tb)):
                if n not in ta or n not in tb:
                    diffs.append(f"tensor {n} only in {'g4' if n in ta else 'llama.cpp'}")
                elif (list(ta[n].shape) != list(tb[n].shape)
                      or ta[n].tensor_type != tb[n].tensor_type):
                    diffs.append(f"tensor {n}: g4 {ta[n].tensor_type.name} {list(ta[n].shape)}"
                                 f" llama.cpp {tb[n].tensor_type.name} {list(tb[n].shape)}")
                elif not np.array_equal(np.asarray(ta[n].data), np.asarray(tb[n].data)):
                    diffs.append(f"tensor {n}: data differs")
            bad += len(diffs)
            print(f"{sub} {t}: {len(ta)} tensors, {len(ka)} keys, "
                  f"{'identical' if not diffs else f'{len(diffs)} differences'}")
            for x in diffs[:20]:
                print("   ", x)
sys.exit(1 if bad else 0)
