"""Gemma 3 chat-template goldens: renders conversations with jinja2 using the official HF
chat_template (../shared/testdata/gemma3/tokenizer_config.json) and tokenizes the rendering
with llama.cpp (llama-cpp-python, special=True) on the default model. Regenerate with:
    .venv/bin/python scripts/gen_chat_fixtures.py --model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --out tests/golden/chat_gemma3.json
"""
import argparse
import json
from pathlib import Path

import jinja2
import llama_cpp
from llama_cpp import Llama

root = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--config", default=str(root.parent / "shared/testdata/gemma3/tokenizer_config.json"))
a = ap.parse_args()

cfg = json.loads(Path(a.config).read_text())
env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
def raise_exception(msg):
    raise jinja2.TemplateError(msg)
env.globals["raise_exception"] = raise_exception
tmpl = env.from_string(cfg["chat_template"])

convs = [
    ("single", [{"role": "user", "content": "Why is the sky blue?"}], True),
    ("system", [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}], True),
    ("system_untrimmed", [{"role": "system", "content": "  Be kind.\n"}, {"role": "user", "content": "\n Hello \n"}], True),
    ("multi_turn", [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."},
                    {"role": "user", "content": "Another one."}], True),
    ("no_gen_prompt", [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"}], False),
    ("multilingual", [{"role": "user", "content": "Était-ce 東京? Привет 👋"}], True),
    ("code", [{"role": "user", "content": "def f(x):\n    return x  # ok\n"}], True),
    ("long_history", [{"role": "system", "content": "Sys"}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"} for i in range(7)], True),
]
llm = Llama(a.model, vocab_only=True, verbose=False)
cases = []
for name, msgs, gen in convs:
    text = tmpl.render(messages=msgs, bos_token=cfg.get("bos_token", "<bos>"), add_generation_prompt=gen)
    ids = llm.tokenize(text.encode(), add_bos=False, special=True)
    cases.append({"name": name, "messages": msgs, "add_generation_prompt": gen, "text": text, "ids": ids})
errors = []
for name, msgs in [("bad_order", [{"role": "assistant", "content": "x"}]),
                   ("two_users", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])]:
    try:
        tmpl.render(messages=msgs, bos_token="<bos>", add_generation_prompt=True)
    except jinja2.TemplateError as e:
        errors.append({"name": name, "messages": msgs, "error": str(e)})
out = {"generator": f"jinja2 {jinja2.__version__} + llama-cpp-python {llama_cpp.__version__}",
       "command": ".venv/bin/python scripts/gen_chat_fixtures.py --model ~/.cache/g4/models/gemma-3-270m-q4_k_m.gguf --out tests/golden/chat_gemma3.json",
       "cases": cases, "rejected": errors}
Path(a.out).write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
print(f"{len(cases)} renderings, {len(errors)} rejections")
