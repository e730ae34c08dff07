"""Expected two-sided exact binomial (sign test) p-values for tests/unit/ruler_test.cc.

Computed independently of g4 with scipy.stats.binomtest(k, n, p=0.5, alternative="two-sided").
Regenerate with:

    /work/venv-hf/bin/python tests/unit/data/gen_ruler_stats.py > tests/unit/data/binomtest_p.txt

(scipy 1.17.1). Each line: k n p (p as Python repr, which round-trips the double).
"""
import scipy
from scipy.stats import binomtest

cases = [(0, 1), (1, 1), (0, 2), (1, 2), (0, 5), (1, 5), (2, 5), (3, 5), (0, 6), (3, 6), (1, 8),
         (1, 10), (2, 10), (8, 10), (5, 10), (0, 20), (6, 20), (7, 20), (14, 20), (10, 21),
         (3, 31), (15, 40), (12, 50), (38, 50), (40, 100), (61, 100), (45, 101), (200, 500),
         (260, 500), (950, 2000), (1000, 2000), (0, 1000), (1, 3000)]
print(f"# scipy {scipy.__version__} binomtest(k, n, 0.5).pvalue")
for k, n in cases:
    print(k, n, repr(float(binomtest(k, n, 0.5).pvalue)))
