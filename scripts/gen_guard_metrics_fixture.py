"""scikit-learn reference for `g4 eval guard`'s metrics (src/eval/guard_eval.h): for fixed
scores (float32 values) and 0/1 labels, precision, recall and F1 at thresholds (flagged when
score >= threshold), average_precision_score, and the lowest roc_curve threshold whose FPR
meets a target. Writes tests/unit/data/guard_metrics_sklearn.json, read by
tests/unit/guard_eval_test.cc (GuardEvalMetrics.MatchesScikitLearn). Regenerate with:
    .venv/bin/python scripts/gen_guard_metrics_fixture.py
(scikit-learn from scripts/requirements-dev.txt, `scripts/setup.sh --dev`)
"""
import json
from pathlib import Path

import numpy as np
import sklearn
from sklearn.metrics import (average_precision_score, f1_score, precision_score, recall_score,
                             roc_curve)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/unit/data/guard_metrics_sklearn.json"
COMMAND = ".venv/bin/python scripts/gen_guard_metrics_fixture.py"
THRESHOLDS = [0.0, 0.3, 0.5, 0.8, 1.0]
TARGETS = [0.0, 0.01, 0.05, 0.1, 0.29, 0.5, 1.0]


def case(name, scores, labels):
    s = np.asarray(scores, dtype=np.float32).astype(np.float64)  # exactly the C++ floats
    y = np.asarray(labels, dtype=np.int64)
    at = []
    for t in THRESHOLDS:
        pred = (s >= t).astype(np.int64)
        at.append({"threshold": t,
                   "precision": float(precision_score(y, pred, zero_division=0)),
                   "recall": float(recall_score(y, pred, zero_division=0)),
                   "f1": float(f1_score(y, pred, zero_division=0))})
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    fpr_rows = []
    for target in TARGETS:
        ok = [i for i in range(len(thr)) if fpr[i] <= target]
        i = min(ok, key=lambda k: thr[k])  # lowest threshold meeting the target
        reachable = bool(np.isfinite(thr[i]))
        fpr_rows.append({"target": target, "reachable": reachable,
                         "threshold": float(thr[i]) if reachable else 1.0,
                         "tpr": float(tpr[i]), "fpr": float(fpr[i])})
    return {"name": name, "scores": [float(v) for v in s], "labels": [int(v) for v in y],
            "average_precision": float(average_precision_score(y, s)), "at": at,
            "fpr_thresholds": fpr_rows}


def main():
    rng = np.random.RandomState(20261207)
    cases = []
    # Informative scores: positives drawn higher.
    y = (rng.rand(200) < 0.3).astype(int)
    s = np.clip(rng.beta(2, 5, 200) + 0.45 * y * rng.rand(200), 0, 1)
    cases.append(case("random_200", s, y))
    # Many ties (one decimal), ties across classes.
    y = (rng.rand(120) < 0.5).astype(int)
    s = np.round(np.clip(0.3 * y + 0.7 * rng.rand(120), 0, 1), 1)
    cases.append(case("ties_120", s, y))
    # The top score is a negative's: low targets need +inf (unreachable).
    cases.append(case("top_negative", [0.99, 0.9, 0.8, 0.7, 0.2, 0.1],
                      [0, 1, 1, 0, 1, 0]))
    # Perfect separation, and a near-constant classifier (ShieldGemma on a base model).
    cases.append(case("separable", [0.9, 0.8, 0.7, 0.3, 0.2, 0.1], [1, 1, 1, 0, 0, 0]))
    s = 0.88 + 0.02 * rng.rand(60)
    y = (rng.rand(60) < 0.4).astype(int)
    cases.append(case("near_constant_60", s, y))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"generator": f"scikit-learn {sklearn.__version__}",
                               "command": COMMAND, "cases": cases}, indent=0) + "\n")
    print("wrote", OUT.relative_to(ROOT), [c["average_precision"] for c in cases])


if __name__ == "__main__":
    main()
