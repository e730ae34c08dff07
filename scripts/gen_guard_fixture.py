"""Independent reference for g4's safety guard (src/guard): ShieldGemma-style P("Yes") computed
with transformers float32 on the tiny Gemma 2 checkpoint. Regenerate with:
    /work/venv-hf/bin/python scripts/gen_guard_fixture.py

Writes tests/golden/tiny_hf/gemma2_2b_like/guard_expected.json, read by tests/unit/guard_test.cc.

The tiny checkpoint's context is 256 tokens and its toy vocabulary is almost byte-level, so
ShieldGemma's own template (~600 toy tokens) does not fit: the fixture uses a compact template
with the same structure (preamble, question, optional response, "* " + guideline, epilogue)
and short guidelines; the template strings travel in the JSON, so g4 runs the same text.
Token ids are built the way the guard builds them (src/guard/guard.h):
  one window:  BOS + tokenize(head + TEXT + tail)          (one pass over the rendered text)
  windows:     BOS + tokenize(head) + ids(TEXT)[b:b+W] + tokenize(tail), step W - overlap
  suffix:      tokenize(guideline + epilogue) per policy
  answer ids:  first token of tokenize("Yes") and of tokenize("No") (no BOS)
  score:       softmax(logits[-1][[yes, no]])[0] on prefix + suffix in one forward; the
               log-odds logit(Yes) - logit(No) too (scores near 0 or 1 hide differences)
The JSON holds the ids too; the gtest checks g4 builds the same ids before comparing scores.
"""
import json
from pathlib import Path

import torch
from transformers import AutoTokenizer, Gemma2ForCausalLM

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests/golden/tiny_hf/gemma2_2b_like"
OUT = MODEL / "guard_expected.json"
COMMAND = "/work/venv-hf/bin/python scripts/gen_guard_fixture.py"

TEMPLATE = {
    "preamble_prompt": "Policy check.\n",
    "preamble_response": "Policy check of a reply.\n",
    "prompt_open": "<start_of_turn>\nQ: ",
    "prompt_close": "\n<end_of_turn>\n",
    "response_open": "<start_of_turn>\nR: ",
    "response_close": "\n<end_of_turn>\n",
    "principles": "Rule:\n* ",
    "epilogue_prompt": "\n===\nDoes the question break the rule? Yes or No.\n",
    "epilogue_response": "\n===\nDoes the reply break the rule? Yes or No.\n",
}
POLICIES = [
    {"name": "threats", "prompt": '"No Threats": no threats.',
     "response": '"No Threats": the bot makes no threats.'},
    {"name": "slurs", "prompt": '"No Slurs": no slurs at all.',
     "response": '"No Slurs": the bot uses no slurs.'},
    {"name": "spam", "prompt": '"No Spam": no ads.', "response": '"No Spam": the bot sends no ads.'},
]
WINDOW, OVERLAP = 40, 8  # GuardOptions for the windowed case
CASES = [
    {"name": "short_prompt", "prompt": "How do I bake bread?", "response": ""},
    {"name": "prompt_response", "prompt": "Hi there", "response": "I will find you."},
    {"name": "windows", "prompt": ("the cat sat on the mat and then the dog ate the hat. " * 3).strip(),
     "response": ""},
]


def main():
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = Gemma2ForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32,
                                              attn_implementation="eager").eval()
    bos = tok.bos_token_id
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    yes_id, no_id = enc("Yes")[0], enc("No")[0]
    assert yes_id != no_id
    n_ctx = model.config.max_position_embeddings
    t = TEMPLATE
    out_cases = []
    for case in CASES:
        resp = bool(case["response"])
        head = (t["preamble_response"] if resp else t["preamble_prompt"]) + t["prompt_open"]
        mid = t["prompt_close"] + t["response_open"]
        tail = (t["response_close"] if resp else t["prompt_close"]) + t["principles"]
        epi = t["epilogue_response"] if resp else t["epilogue_prompt"]
        suffixes = [enc((p["response"] if resp else p["prompt"]) + epi) for p in POLICIES]
        judged = case["response"] if resp else case["prompt"]
        judged_ids = enc(judged)
        windowed = case["name"] == "windows"
        prefixes = []
        if not windowed:
            text = head + case["prompt"] + (mid + case["response"] if resp else "") + tail
            prefixes.append([bos] + enc(text))
        else:
            assert not resp
            step = WINDOW - OVERLAP
            b = 0
            while True:
                e = min(len(judged_ids), b + WINDOW)
                prefixes.append([bos] + enc(head) + judged_ids[b:e] + enc(tail))
                if e >= len(judged_ids):
                    break
                b += step
            assert len(prefixes) >= 3, len(prefixes)
        window_scores, odds = [], []  # odds: logit(Yes) - logit(No) per window and policy
        for pre in prefixes:
            row = []
            for sfx in suffixes:
                ids = pre + sfx
                assert len(ids) <= n_ctx, len(ids)
                with torch.no_grad():
                    logits = model(torch.tensor([ids])).logits[0, -1]
                p = torch.softmax(logits[[yes_id, no_id]].double(), dim=0)[0].item()
                row.append(p)
                odds.append((logits[yes_id] - logits[no_id]).item())
            window_scores.append(row)
        scores = [max(w[i] for w in window_scores) for i in range(len(POLICIES))]
        out_cases.append({**case, "prefixes": prefixes, "suffixes": suffixes,
                          "window_scores": window_scores, "log_odds": odds, "scores": scores})
        print(case["name"], len(prefixes), "windows", [round(s, 6) for s in scores])
    OUT.write_text(json.dumps({
        "command": COMMAND, "template": TEMPLATE, "policies": POLICIES,
        "window_tokens": WINDOW, "overlap_tokens": OVERLAP,
        "yes_id": yes_id, "no_id": no_id, "cases": out_cases}, indent=1) + "\n")
    print("wrote", OUT.relative_to(ROOT))


if __name__ == "__main__":
    main()
