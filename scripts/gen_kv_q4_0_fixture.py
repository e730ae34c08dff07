#!/usr/bin/env python3
"""Fixture for g4's q4_0 and bf16 KV cache (src/runtime/kv_cache.cc, src/kernels/attention.cc):
K/V rows shaped as Gemma's caches (head dims 256 and 512) and what an independent
implementation makes of them.

Reference: gguf-py's NumPy quantisers (gguf.quants.quantize / dequantize, Q4_0 and BF16),
written from ggml's block format, not from g4. For each case C (hd256: 2 KV heads x 256,
hd512: 1 KV head x 512) the file holds, per position row:
  in.C.k, in.C.v     F32  (positions x n_kv_heads*head_dim) the rows the model would store
  q4_0.C.k, q4_0.C.v Q4_0 gguf-py's bytes for them
  deq.C.k, deq.C.v   F32  gguf-py's dequantisation of those bytes
  bf16.C.k, bf16.C.v BF16 gguf-py's bytes
Rows: Gaussian keys/values at a few scales (post-norm keys are O(1)), a zero row, a row with
one outlier per 32-block, a constant row and +a/-a ties.

Regenerate with (from the repository root):

    /work/venv-hf/bin/python scripts/gen_kv_q4_0_fixture.py --out tests/unit/data/kv_q4_0.gguf
"""
import argparse
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf.quants import quantize as gguf_quantize, dequantize as gguf_dequantize

COMMAND = "/work/venv-hf/bin/python scripts/gen_kv_q4_0_fixture.py --out tests/unit/data/kv_q4_0.gguf"
POSITIONS = 12


def rows(rng, n):
    x = rng.standard_normal((POSITIONS, n)) * np.exp(rng.uniform(-2, 2, (POSITIONS, 1)))
    x[1] = 0.0
    x[2] = rng.standard_normal(n) * 0.05
    x[2, ::32] = 3.0  # one outlier per block
    x[3] = -0.75  # constant
    x[4] = rng.choice([-1.0, 1.0], n)  # ties for the max magnitude
    return x.astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/unit/data/kv_q4_0.gguf")
    args = ap.parse_args()
    rng = np.random.default_rng(20261207)
    w = gguf.GGUFWriter(args.out, "fixture")
    w.add_string("fixture.command", COMMAND)
    w.add_string("fixture.generator", "gguf-py %s (gguf.quants Q4_0, BF16)" %
                 getattr(gguf, "__version__", "?"))
    for case, (hkv, hd) in {"hd256": (2, 256), "hd512": (1, 512)}.items():
        w.add_uint32("fixture.%s.n_kv_heads" % case, hkv)
        w.add_uint32("fixture.%s.head_dim" % case, hd)
        for kv in ("k", "v"):
            x = rows(rng, hkv * hd)
            q = gguf_quantize(x, QT.Q4_0)
            d = gguf_dequantize(q, QT.Q4_0).astype(np.float32).reshape(x.shape)
            b = gguf_quantize(x, QT.BF16)
            name = "%s.%s" % (case, kv)
            w.add_tensor("in." + name, x)
            w.add_tensor("q4_0." + name, q, raw_dtype=QT.Q4_0)
            w.add_tensor("deq." + name, d)
            w.add_tensor("bf16." + name, b, raw_dtype=QT.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote %s (%d bytes)" % (args.out, os.path.getsize(args.out)))


if __name__ == "__main__":
    sys.exit(main())
