"""`g4 eval guard` end to end with the default model as the classifier (its scores carry no
meaning: Gemma 3 270M is no safety classifier; what is checked is the plumbing): a labelled
JSONL file with a built-in and a custom policy, prompt-only and prompt+response items; the
reported precision / recall / F1 / average precision recomputed here from the per-item scores;
the written profile meets the target FPR, loads in `g4 serve --guard-profile`, and the server's
/v1/moderations gives the same scores and reports the calibrated thresholds; malformed lines are
errors that name the line, before any model is loaded."""
import json
import subprocess
from pathlib import Path

import pytest

from conftest import G4_BIN, MODEL, SANITIZED, Server, post

pytestmark = pytest.mark.skipif(SANITIZED, reason="runs in the Release build")
DATA = Path(__file__).parent / "data/guard_eval_sample.jsonl"


def ap_of(scores, labels):
    """Average precision, step-wise (no interpolation), ties as one step."""
    pairs = sorted(zip(scores, labels), key=lambda p: -p[0])
    P = sum(labels)
    tp = fp = 0
    ap = prev = 0.0
    i = 0
    while i < len(pairs):
        s = pairs[i][0]
        while i < len(pairs) and pairs[i][0] == s:
            tp += pairs[i][1]
            fp += 1 - pairs[i][1]
            i += 1
        ap += (tp / P - prev) * tp / (tp + fp)
        prev = tp / P
    return ap


def test_eval_guard_metrics_and_profile(tmp_path):
    prof = tmp_path / "in.json"
    prof.write_text(json.dumps({
        "base": "balanced", "fail": "open", "thresholds": {"harassment": 0.9},
        "policies": ["harassment", {"name": "bread_talk", "description": "talks about bread"}]}))
    out = tmp_path / "calibrated.json"
    run = subprocess.run([G4_BIN, "eval", "guard", str(DATA), MODEL, "--profile", str(prof),
                          "--target-fpr", "0.25", "--write-profile", str(out), "--json",
                          "-t", "2"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "items" in run.stderr  # progress lines
    rep = json.loads(run.stdout)
    lines = [json.loads(l) for l in DATA.read_text().splitlines() if l.strip()]
    assert len(rep["item_scores"]) == len(lines) == rep["item_scores"][-1]["line"] - 1  # one blank line
    written = json.loads(out.read_text())
    assert written["fail"] == "open" and written["policies"][1]["name"] == "bread_talk"
    for row in rep["policies"]:
        pol = row["policy"]
        sl = [(it["scores"][pol], ln["labels"][pol]) for it, ln in zip(rep["item_scores"], lines)
              if pol in ln["labels"]]
        scores, labels = [s for s, _ in sl], [l for _, l in sl]
        assert row["n"] == len(sl) and row["positives"] == sum(labels)
        t = row["threshold"]
        assert t == pytest.approx(0.9 if pol == "harassment" else 0.5, abs=1e-7)
        tp = sum(1 for s, l in sl if s >= t and l)
        fp = sum(1 for s, l in sl if s >= t and not l)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / sum(labels)
        assert row["precision"] == pytest.approx(prec, abs=1e-12)
        assert row["recall"] == pytest.approx(rec, abs=1e-12)
        assert row["average_precision"] == pytest.approx(ap_of(scores, labels), abs=1e-12)
        # The calibrated threshold: FPR <= target there, and any lower data score exceeds it.
        ct = written["thresholds"][pol]
        assert ct == pytest.approx(row["fpr_threshold"], abs=1e-7)
        neg = [s for s, l in sl if not l]
        assert sum(1 for s in neg if s >= ct) / len(neg) <= 0.25
        lower = [s for s in scores if s < ct - 1e-7]
        if lower:
            t2 = max(lower)
            assert sum(1 for s in neg if s >= t2) / len(neg) > 0.25
    # g4 serve loads the written profile; /v1/moderations scores equal the eval's.
    s = Server("--parallel", "1", "--guard", "--guard-profile", str(out))
    try:
        st, body, _ = post(s.url + "/v1/moderations", {"input": lines[1]["text"]})
        assert st == 200, body
        ext = {p["policy"]: p for p in body["results"][0]["g4_guard"]["policies"]}
        for pol in ("harassment", "bread_talk"):
            assert ext[pol]["score"] == pytest.approx(rep["item_scores"][1]["scores"][pol], abs=1e-6)
            assert ext[pol]["threshold"] == pytest.approx(written["thresholds"][pol], abs=1e-7)
    finally:
        assert s.stop() == 0


@pytest.mark.parametrize("line,msg", [
    ('{"text": "a", "labels": {"harassment": 2}}', "labels.harassment must be 0, 1"),
    ('{"text": "a", "labels": {"no_such": 1}}', "unknown policy 'no_such'"),
    ('{"text": "a"', "not valid JSON"),
    ('{"txt": "a", "labels": {"harassment": 1}}', "unknown key 'txt'"),
])
def test_eval_guard_bad_lines(tmp_path, line, msg):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "fine", "labels": {"harassment": 0}}\n' + line + "\n")
    run = subprocess.run([G4_BIN, "eval", "guard", str(f), "/nonexistent/model.gguf"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert f"{f}:2:" in run.stderr and msg in run.stderr, run.stderr


def test_eval_injection_runs():
    run = subprocess.run([G4_BIN, "eval", "injection", "--benign", "50", "--hostile", "50",
                          "--json"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    rep = json.loads(run.stdout)
    assert [r["split"] for r in rep] == ["dev", "heldout"]
    for r in rep:
        assert r["tp"] + r["fn"] == 50 and r["fp"] + r["tn"] == 50
        assert r["precision"] >= 0.9 and r["recall"] >= 0.9
