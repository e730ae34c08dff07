#!/usr/bin/env python3
"""Fixture for g4's reference quantisers (src/kernels/quantize_ref.cc): f32 input rows and
the bytes ggml's own quantisers produce for them.

Reference implementation: libggml-base from llama-cpp-python (its bundled shared library),
called through ctypes: ggml_quantize_chunk(type, src, dst, 0, nrows, n_per_row, NULL), which
without an importance matrix runs quantize_row_*_ref (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K),
ggml_fp32_to_fp16_row (F16) and ggml_fp32_to_bf16_row_ref (BF16). Where gguf-py's NumPy
quantisers exist (Q8_0, Q4_0, Q5_0, BF16) the script also checks they give the same bytes.

Regenerate with (from the repository root, needs the default model for the real-weight rows):

    .venv/bin/python scripts/gen_quant_row_fixtures.py --model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --out tests/unit/data/quant_rows.gguf

Output: a GGUF file (so the C++ test reads it with g4's own reader) holding, for each case C,
the F32 tensor "in.C" (rows x n) and for each type T the tensor "T.C" with ggml's bytes;
metadata "fixture.command" and "fixture.generator".
Cases: Gaussian rows at several scales, zeros, constants, one outlier per block, all-positive
/ all-negative rows, +a/-a ties, huge (beyond fp16 range) and tiny (subnormal) magnitudes,
and 8 rows of the real blk.0.attn_output.weight (Q4_K in the model, dequantised by gguf-py).
"""
import argparse
import ctypes
import glob
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf.quants import quantize as gguf_quantize, dequantize as gguf_dequantize

COMMAND = (".venv/bin/python scripts/gen_quant_row_fixtures.py --model "
           "~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --out tests/unit/data/quant_rows.gguf")
TYPES = {"f16": QT.F16, "bf16": QT.BF16, "q8_0": QT.Q8_0, "q4_0": QT.Q4_0, "q5_0": QT.Q5_0,
         "q4_k": QT.Q4_K, "q6_k": QT.Q6_K}
GGUF_PY_TYPES = {"bf16", "q8_0", "q4_0", "q5_0"}


def load_ggml():
    import llama_cpp
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    lib = ctypes.CDLL(sorted(glob.glob(os.path.join(libdir, "libggml-base.so*")))[0])
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_void_p]
    return lib, llama_cpp.__version__


def ggml_quantize(lib, qt, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, n = x.shape
    bs, ts = gguf.GGML_QUANT_SIZES[qt]
    out = np.zeros((rows, n // bs * ts), dtype=np.uint8)
    got = lib.ggml_quantize_chunk(int(qt), x.ctypes.data, out.ctypes.data, 0, rows, n, None)
    assert got == out.nbytes, (qt, got, out.nbytes)
    return out


def cases(rng, model):
    n = 256
    c = {}
    c["gauss"] = rng.standard_normal((16, n))
    c["weights"] = rng.standard_normal((16, n)) * 0.02
    c["wide_range"] = rng.standard_normal((8, n)) * np.exp(rng.uniform(-8, 8, (8, 1)))
    special = np.zeros((24, n))
    special[1] = 0.5  # constants
    special[2] = -3.0
    special[3] = rng.standard_normal(n) * 0.01
    special[3, ::32] = 4.0  # one outlier per 32-block
    special[4] = np.abs(rng.standard_normal(n)) + 1.0  # all positive, min > 0
    special[5] = -np.abs(rng.standard_normal(n)) - 1.0  # all negative
    special[6] = rng.choice([-1.0, 1.0], n)  # +a / -a ties for the max
    special[7] = rng.integers(-8, 8, n).astype(np.float64)  # exactly representable grid
    special[8] = rng.standard_normal(n) * 1e4  # large
    special[9] = rng.standard_normal(n) * 7e4  # beyond fp16 range
    special[10] = rng.standard_normal(n) * 1e-20  # tiny
    special[11] = rng.standard_normal(n) * 1e-39  # fp32 subnormals
    special[12] = rng.standard_normal(n) * 1e-7  # fp16 subnormal scales
    special[13] = np.where(rng.random(n) < 0.9, 0.0, rng.standard_normal(n))  # sparse
    special[14, :16] = 1.0  # half of a 32-block nonzero, rest zero
    special[15] = np.linspace(-1, 1, n)
    special[16] = np.linspace(0, 1, n)
    special[17] = rng.standard_normal(n) ** 3
    special[18, 100] = 1.0  # a single nonzero
    special[19] = rng.standard_normal(n) * 1e-4 + 0.05  # offset, small spread
    special[20] = rng.laplace(size=n)
    special[21] = rng.standard_normal(n) * 60000
    special[22] = rng.uniform(-1, 1, n) * 2.0 ** rng.integers(-20, 20, n)
    special[23] = -special[22]
    c["special"] = special
    r = gguf.GGUFReader(model)
    t = next(t for t in r.tensors if t.name == "blk.0.attn_output.weight")
    w = gguf_dequantize(np.asarray(t.data)[:8], t.tensor_type)
    c["real_attn_output"] = w.reshape(8, -1)
    return {k: np.asarray(v, dtype=np.float32) for k, v in c.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--out", default="tests/unit/data/quant_rows.gguf")
    args = ap.parse_args()
    lib, ver = load_ggml()
    rng = np.random.default_rng(20261129)
    cs = cases(rng, os.path.expanduser(args.model))
    w = gguf.GGUFWriter(args.out, "fixture")
    w.add_string("fixture.command", COMMAND)
    w.add_string("fixture.generator", "libggml-base from llama-cpp-python %s (ggml_quantize_chunk)"
                 % ver)
    for name, x in cs.items():
        w.add_tensor("in." + name, x)
        for tname, qt in TYPES.items():
            q = ggml_quantize(lib, qt, x)
            if tname in GGUF_PY_TYPES:
                ref = gguf_quantize(x, qt).reshape(q.shape)
                same = np.array_equal(ref, q)
                print("%-16s %-5s gguf-py %s ggml" % (name, tname, "==" if same else "!="))
            w.add_tensor(tname + "." + name, q, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote %s (%d bytes)" % (args.out, os.path.getsize(args.out)))


if __name__ == "__main__":
    sys.exit(main())
