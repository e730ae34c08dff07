"""llama.cpp side of bench/compare_llamacpp.py: pp (prefill N tokens in one eval, fresh
context) and tg (decode M tokens one at a time after a one-token prompt) through
llama-cpp-python, mirroring `g4 bench`. Prints one JSON line."""
import argparse
import json
import time

from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("-p", type=int, default=512)
ap.add_argument("-n", type=int, default=128)
ap.add_argument("-t", type=int, default=2)
ap.add_argument("-r", type=int, default=1)
a = ap.parse_args()

llm = Llama(a.model, n_ctx=max(a.p, a.n + 1) + 16, n_batch=512, n_ubatch=512, n_threads=a.t,
            n_threads_batch=a.t, verbose=False)
vocab = llm.n_vocab()
ids, x = [], 88172645463325252
for _ in range(max(a.p, a.n + 1)):
    x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 7
    x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
    ids.append(1000 + x % (min(vocab, 200000) - 1000))
ids[0] = llm.token_bos()

def pp():
    llm.reset()
    llm._ctx.memory_clear(True) if hasattr(llm._ctx, "memory_clear") else None
    t0 = time.perf_counter()
    llm.eval(ids[: a.p])
    return a.p / (time.perf_counter() - t0)

def tg():
    llm.reset()
    llm._ctx.memory_clear(True) if hasattr(llm._ctx, "memory_clear") else None
    llm.eval(ids[:1])
    t0 = time.perf_counter()
    for i in range(1, a.n + 1):
        llm.eval([ids[i]])
    return a.n / (time.perf_counter() - t0)

if a.p:
    pp()  # warm-up
out = {"pp": [], "tg": []}
for _ in range(a.r):
    if a.p:
        out["pp"].append(pp())
    if a.n:
        out["tg"].append(tg())
print(json.dumps(out))
