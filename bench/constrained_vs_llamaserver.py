"""JSON-schema-constrained decode: g4 serve vs llama.cpp's llama-server, same GGUF, same
threads, same chat prompt, same nested schema (bench/constrained_bench.py's SCHEMA) through
OpenAI's response_format json_schema on /v1/chat/completions, streamed, same sampling
(temperature 1, top_k 40, top_p 1, min_p 0, the same seeds). One server at a time, never both:
each round starts g4, measures, stops it, then does the same with llama-server (the order
alternates per round), so machine noise hits both. Both get the same slots (--parallel /
-np) and the same context per slot.

  .venv/bin/python bench/constrained_vs_llamaserver.py [--rounds 5] [--streams 1,8] [--free]
        [--llama-server ~/.cache/g4/llama.cpp/bin/llama-server] [--g4 build/release/g4]

Decode rate per stream = (completion tokens - 1) / (last content chunk - first content chunk),
from the SSE arrival times (prefill and prompt caching are outside that span); with N streams
the figure is the mean per-stream rate x N. Every constrained answer of both engines must parse
as JSON and validate against the schema (jsonschema), or the script says so and exits 1.
--free also measures free text of the same length (ignore_eos, max_tokens = that engine's mean
constrained length) on both, to separate the constraint's cost from the engine's.
llama-server's own decode rate (its `timings.predicted_per_second`) is shown beside ours.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests/server"))
sys.path.insert(0, str(ROOT / "bench"))
from conftest import MODEL, free_port  # noqa: E402
from constrained_bench import SCHEMA  # noqa: E402

G4_HOME = Path(os.environ.get("G4_HOME", Path.home() / ".cache/g4"))
PROMPT = "An order record as JSON."


def stream(url, body, out):
    req = urllib.request.Request(url + "/v1/chat/completions", method="POST",
                                 data=json.dumps(dict(body, stream=True,
                                                      stream_options={"include_usage": True})).encode(),
                                 headers={"Content-Type": "application/json"})
    times, text, usage, finish, timings = [], [], None, None, None
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            ev = json.loads(line[6:])
            if ev.get("usage"):
                usage = ev["usage"]["completion_tokens"]
            if ev.get("timings"):
                timings = ev["timings"]
            for ch in ev.get("choices") or []:
                if ch.get("finish_reason"):
                    finish = ch["finish_reason"]
                c = (ch.get("delta") or {}).get("content")
                if c:
                    times.append(time.perf_counter())
                    text.append(c)
    out.append({"tokens": usage if usage is not None else len(times), "chunks": len(times),
                "times": times, "text": "".join(text), "finish": finish, "timings": timings})


def run(url, body, streams, seed0):
    out, ths = [], []
    for i in range(streams):
        ths.append(threading.Thread(target=stream, args=(url, dict(body, seed=seed0 + i), out)))
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    rates = [(o["tokens"] - 1) / (o["times"][-1] - o["times"][0]) for o in out
             if o["tokens"] > 2 and len(o["times"]) > 1 and o["times"][-1] > o["times"][0]]
    own = [o["timings"]["predicted_per_second"] for o in out
           if o["timings"] and o["timings"].get("predicted_per_second")]
    return {"rate": statistics.mean(rates) * streams if rates else 0.0,
            "own": statistics.mean(own) * streams if own else None,
            "tokens": statistics.mean(o["tokens"] for o in out),
            "chunks": statistics.mean(o["chunks"] for o in out), "outs": out}


def wait_ready(url, proc, log, path="/health", timeout=180):
    t = time.time()
    while time.time() - t < timeout:
        if proc.poll() is not None:
            log.flush()
            sys.exit(f"server exited early: {proc.args}\n{Path(log.name).read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + path, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.3)
    sys.exit(f"server not ready: {proc.args}")


def start(engine, a, slots, log):
    port = free_port()
    if engine == "g4":
        cmd = [a.g4, "serve", "-m", a.model, "--port", str(port), "-t", str(a.threads),
               "--parallel", str(slots), "--ctx", str(a.ctx)]
    else:  # llama-server splits -c across its -np slots: the same context per slot as g4
        cmd = [a.llama_server, "-m", a.model, "--port", str(port), "-t", str(a.threads),
               "-tb", str(a.threads), "-np", str(slots), "-c", str(a.ctx * slots), "--jinja",
               "--no-webui"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, log)
    return proc, url


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def check(outs, engine, bad):
    for o in outs:
        try:
            jsonschema.validate(json.loads(o["text"]), SCHEMA)
        except Exception as e:  # noqa: BLE001 (JSONDecodeError or ValidationError)
            bad.append(f"{engine} (finish {o['finish']}): {str(e).splitlines()[0]}: {o['text'][:200]!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--g4", default=str(ROOT / "build/release/g4"))
    ap.add_argument("--llama-server", default=str(G4_HOME / "llama.cpp/bin/llama-server"))
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--streams", default="1,8")
    ap.add_argument("--ctx", type=int, default=1024, help="context per slot, both engines")
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--max-tokens", type=int, default=600)
    ap.add_argument("--free", action="store_true",
                    help="also free text of the same length on both (the constraint's own cost)")
    a = ap.parse_args()
    levels = [int(x) for x in a.streams.split(",")]
    slots = max(levels)
    base = {"model": "default", "temperature": 1.0, "top_k": a.top_k, "top_p": 1.0, "min_p": 0.0,
            "max_tokens": a.max_tokens, "messages": [{"role": "user", "content": PROMPT}]}
    con = dict(base, response_format={"type": "json_schema", "json_schema": {
        "name": "order", "schema": SCHEMA, "strict": True}})
    engines = ("g4", "llama-server")
    res = {(e, s, k): [] for e in engines for s in levels for k in ("con", "free", "own", "len")}
    bad, total = [], 0
    for rnd in range(a.rounds):
        for e in (engines if rnd % 2 == 0 else engines[::-1]):
            with tempfile.NamedTemporaryFile("w", prefix=f"{e}-", suffix=".log", delete=False) as log:
                proc, url = start(e, a, slots, log)
                try:
                    run(url, dict(con, max_tokens=8), 1, 1)  # warm-up: schema compile, caches
                    for s in levels:
                        seed0 = 1000 * rnd + 100 * s  # the same seeds for both engines
                        r = run(url, con, s, seed0)
                        check(r["outs"], e, bad)
                        total += len(r["outs"])
                        res[(e, s, "con")].append(r["rate"])
                        res[(e, s, "len")].append(r["tokens"])
                        if r["own"] is not None:
                            res[(e, s, "own")].append(r["own"])
                        if a.free:
                            n = max(8, int(r["tokens"]))
                            f = run(url, dict(base, ignore_eos=True, max_tokens=n), s, seed0)
                            res[(e, s, "free")].append(f["rate"])
                        print(f"  round {rnd + 1} {e:12} {s} stream(s): constrained {r['rate']:6.1f} tok/s"
                              + (f" (server's own {r['own']:.1f})" if r["own"] else "")
                              + (f", free {f['rate']:6.1f}" if a.free else "")
                              + f", {r['tokens']:.0f} tokens / {r['chunks']:.0f} chunks per answer"
                              + f", load {os.getloadavg()[0]:.2f}",
                              flush=True)
                finally:
                    stop(proc)
            os.unlink(log.name)
    med = lambda e, s, k: statistics.median(res[(e, s, k)]) if res[(e, s, k)] else float("nan")
    print(f"\nmodel {Path(a.model).name}, {a.threads} threads each, top_k {a.top_k}, temperature 1, "
          f"{a.rounds} rounds (medians), {a.ctx} context per slot, {slots} slots")
    hdr = "| streams | g4 constrained tok/s | llama-server constrained tok/s | g4 / llama-server |"
    sep = "|---|---|---|---|"
    if a.free:
        hdr += " g4 free tok/s | llama-server free tok/s | free ratio | g4 con/free | llama-server con/free |"
        sep += "---|---|---|---|---|"
    print(hdr + "\n" + sep)
    for s in levels:
        g, l = med("g4", s, "con"), med("llama-server", s, "con")
        row = f"| {s} | {g:.1f} | {l:.1f} (own {med('llama-server', s, 'own'):.1f}) | **{g / l:.2f}x** |"
        if a.free:
            gf, lf = med("g4", s, "free"), med("llama-server", s, "free")
            row += f" {gf:.1f} | {lf:.1f} | {gf / lf:.2f}x | {g / gf:.2f} | {l / lf:.2f} |"
        print(row)
    for s in levels:
        print(f"answer length at {s} stream(s), tokens: g4 {statistics.mean(res[('g4', s, 'len')]):.0f}, "
              f"llama-server {statistics.mean(res[('llama-server', s, 'len')]):.0f}")
    print(f"valid: {total - len(bad)} / {total} constrained answers parse and match the schema")
    for b in bad[:10]:
        print("  INVALID", b)
    print(json.dumps({f"{e}/{s}/{k}": v for (e, s, k), v in res.items()}))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
