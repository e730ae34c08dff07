"""Seed corpus for the safetensors fuzzer (tests/fuzz/safetensors_fuzz.cc), written by the
`safetensors` package (the reference implementation). Regenerate with:
    /work/venv-hf/bin/python scripts/gen_safetensors_seeds.py tests/fuzz/corpus_safetensors
"""
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
g = torch.Generator().manual_seed(0)
save_file({"w": torch.randn(3, 4, generator=g)}, str(out / "one_f32.safetensors"))
save_file({"a.weight": torch.randn(8, generator=g).half(),
           "b.weight": torch.randn(2, 3, generator=g).bfloat16(),
           "c": torch.zeros(0, 5),
           "d": torch.tensor(1.5)},
          str(out / "mixed.safetensors"), metadata={"format": "pt"})
save_file({"model.layers.0.mlp.gate_proj.weight": torch.randn(4, 8, generator=g),
           "model.layers.0.input_layernorm.weight": torch.randn(8, generator=g)},
          str(out / "layer.safetensors"))
for p in sorted(out.iterdir()):
    print(p.name, p.stat().st_size)
