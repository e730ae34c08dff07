"""llama.cpp (llama-cpp-python, .venv) loads what `g4 convert` writes from the tiny HF fixtures
(tests/golden/tiny_hf, made by scripts/gen_tiny_hf.py) and computes the same function:

  - its tokenizer on the converted GGUF gives the ids the `tokenizers` package gives on the
    fixture's tokenizer.json (expected.json "tokens"): exact;
  - its logits on the converted GGUF equal its logits on the GGUF that gguf-py wrote from the
    same weights (scripts/gen_tiny_gemma4.py, scripts/gen_tiny_gemma3.py): max |diff| <= 1e-6
    (same tensors, same program; only metadata layout differs). The 26B-like reference stores
    f16 matrices, so that one is compared with `g4 convert --type f16`;
  - its logits are within 0.1 of transformers' float32 logits and of g4's on the same file:
    llama.cpp's CPU GELU goes through an fp16 table and these random toys amplify it (measured
    up to 2.8e-2, see scripts/check_tiny_gemma4_llamacpp.py); `g4 logits --exact` keeps K/V in
    f32 (within 7e-5 of transformers), so llama.cpp's distance to g4 is its distance to
    transformers; measured 2026-11-29: vs transformers 2.8e-2 / 4.1e-3 / 9.9e-3 / 3.5e-3
    (e2b / 31b / 26b / gemma3), vs g4 2.77e-2 on e2b on 2026-12-06 (6.3e-2 while g4 logits
    kept K/V in f16), vs the reference GGUF exactly 0. A layout mistake (wrong tensor, swapped halves, wrong KV donor)
    moves logits by O(1).
Run by ctest as `convert.llamacpp` (G4_BIN = the g4 binary). numpy and llama_cpp come from
scripts/requirements-test.txt (scripts/setup.sh); without them the run fails, never skips: this
is the only independent check that llama.cpp loads what g4 writes.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest

try:
    import numpy as np
    import llama_cpp
except ImportError as e:
    raise ImportError(f"{e} (scripts/setup.sh installs numpy and llama-cpp-python into .venv)") from e

ROOT = Path(__file__).resolve().parent.parent.parent
HF = ROOT / "tests/golden/tiny_hf"
G4 = os.environ.get("G4_BIN", str(ROOT / "build/release/g4"))
CASES = [  # fixture, reference GGUF, --type that matches the reference's storage
    ("gemma4_e2b_like", "tiny_gemma4/tiny_e2b_like.gguf", "f32"),
    ("gemma4_31b_like", "tiny_gemma4/tiny_31b_like.gguf", "f32"),
    ("gemma4_26b_like", "tiny_gemma4/tiny_26b_like.gguf", "f16"),
    ("gemma3_4b_like", "tiny/tiny_4b_like.gguf", "f32"),
    # Gemma 2 (scripts/gen_tiny_gemma2.py; reference written in convert_hf_to_gguf.py's gemma2
    # layout). Its sibling gemma2_qpas holds what llama.cpp's gemma2 graph cannot express
    # (query_pre_attn_scalar != head_dim), so it is only checked against transformers (g4 tests).
    ("gemma2_2b_like", "tiny_gemma2/gemma2_2b_like.gguf", "f32"),
]


def llama_logits(path, prompts):
    m = llama_cpp.Llama(str(path), n_ctx=64, n_batch=64, logits_all=True, verbose=False,
                        n_threads=2, type_k=0, type_v=0, flash_attn=False)
    out = []
    for ids in prompts:
        m.reset()
        m.eval(ids)
        out.append(np.array(m.scores[: len(ids)], dtype=np.float64))
    return m, out


def g4_logits(path, ids):
    r = subprocess.run([G4, "logits", str(path), "--ids", ",".join(map(str, ids)),
                        "--all-positions", "--top", "272", "--exact", "--embed-scale", "exact",
                        "-t", "2"], check=True, capture_output=True, text=True)
    rows = np.zeros((len(ids), 272))
    for p in json.loads(r.stdout)["positions"]:
        for t in p["top"]:
            rows[p["pos"], t["id"]] = t["logit"]
    return rows


@pytest.mark.parametrize("sub,ref,typ", CASES, ids=[c[0] for c in CASES])
def test_llamacpp_loads_g4_convert(sub, ref, typ, tmp_path):
    fx = json.loads((HF / sub / "expected.json").read_text())
    prompts = [p["ids"] for p in fx["prompts"]]
    worst = {}
    for t in sorted({"f32", typ}):
        out = tmp_path / f"{sub}.{t}.gguf"
        subprocess.run([G4, "convert", str(HF / sub), str(out), "--type", t], check=True,
                       capture_output=True)
        m, got = llama_logits(out, prompts)
        if t == "f32":
            for case in fx["tokens"]:
                assert m.tokenize(case["text"].encode(), add_bos=False, special=False) == \
                    case["ids"], case["text"]
            want = [np.array(p["logits"]) for p in fx["prompts"]]
            worst["transformers"] = max(np.abs(a - b).max() for a, b in zip(got, want))
            worst["g4"] = max(np.abs(a - g4_logits(out, ids)).max()
                              for a, ids in zip(got, prompts))
        if t == typ:
            _, base = llama_logits(ROOT / "tests/golden" / ref, prompts)
            worst["reference gguf"] = max(np.abs(a - b).max() for a, b in zip(got, base))
    print(sub, {k: f"{v:.2e}" for k, v in worst.items()})
    assert worst["reference gguf"] <= 1e-6
    assert worst["transformers"] < 0.1
    assert worst["g4"] < 0.1
