#!/usr/bin/env python3
"""What llama.cpp's own quantizer writes for the default model, per target type: the type and
a hash of the data of every tensor (for Golden.QuantizeMatchesLlamaCpp).

Reference implementation: llama_model_quantize() of libllama from llama-cpp-python (the code
behind llama-quantize), run on the default Q4_K_M file with allow_requantize=True (it
dequantises every tensor to f32 and quantises again, as g4 quantize does), nthread=2, no
importance matrix, for the ftypes g4's types map to: F16 1, BF16 32, Q8_0 7, Q4_0 2,
Q5_0 8, Q6_K 18, and Q4_K_S 14 for q4_k (whose mix promotes 6 tensors of this model to
Q5_1/Q5_K; g4's q4_k does not: the test allows exactly those differences).
Each tensor's data is hashed with SHA-256 (first 16 hex digits are stored).

Regenerate with (from the repository root; ~5 minutes on 2 cores):

    .venv/bin/python scripts/gen_quantize_llamacpp_fixture.py --model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --out tests/golden/quantize_llamacpp.json
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import gguf
import llama_cpp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_logit_fixtures import sha256_file  # noqa: E402

COMMAND = (".venv/bin/python scripts/gen_quantize_llamacpp_fixture.py --model "
           "~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --out tests/golden/quantize_llamacpp.json")
FTYPES = {"f16": 1, "bf16": 32, "q8_0": 7, "q4_0": 2, "q5_0": 8, "q6_k": 18, "q4_k": 14}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf"))
    ap.add_argument("--out", default="tests/golden/quantize_llamacpp.json")
    args = ap.parse_args()
    model = os.path.expanduser(args.model)
    fx = {"generator": "llama-cpp-python %s (llama_model_quantize)" % llama_cpp.__version__,
          "command": COMMAND, "model_sha256": sha256_file(model), "types": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, ftype in FTYPES.items():
            p = llama_cpp.llama_model_quantize_default_params()
            p.nthread = 2
            p.ftype = ftype
            p.allow_requantize = True
            out = os.path.join(tmp, name + ".gguf")
            rc = llama_cpp.llama_model_quantize(model.encode(), out.encode(), p)
            assert rc == 0, (name, rc)
            r = gguf.GGUFReader(out)
            tensors = []
            for t in r.tensors:
                h = hashlib.sha256(np.asarray(t.data).view(np.uint8).tobytes()).hexdigest()
                tensors.append([t.name, t.tensor_type.name, h[:16]])
            fx["types"][name] = {"ftype": ftype,
                                 "file_type": int(r.fields["general.file_type"].parts[-1][0]),
                                 "tensors": tensors}
            print("%s: %d tensors" % (name, len(tensors)), file=sys.stderr)
            del r
            os.remove(out)
    with open(args.out, "w") as f:
        json.dump(fx, f, separators=(",", ":"))
        f.write("\n")
    print("wrote %s (%d bytes)" % (args.out, os.path.getsize(args.out)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
