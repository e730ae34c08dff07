"""Shape models: random-weight GGUFs with the real dimensions of Gemma 3 1B/4B/12B/27B and Gemma 4
E2B/E4B/31B/26B-A4B, quantized by llama.cpp's own llama-quantize, and a side-by-side speed table of
g4 bench against llama-bench on them (issue 13). Weights are random, so only speed means anything.

    # writes ~/.cache/g4/shapes/<shape>-{q4_k_m,q8_0}.gguf (needs gguf-py: the fixture venv)
    /work/venv-hf/bin/python bench/shape_models.py make [--shapes g3-1b,g4-e2b] [--quants q4_k_m,q8_0]
    # the table (g4 bench and llama-bench alternating in one run; any python3, no gguf needed)
    python3 bench/shape_models.py bench [--shapes ...] [--quants q4_k_m] [--reps 2] [-t 2] [--avx2]
    python3 bench/shape_models.py list

`make` writes an F16 source (random normal, std 0.02, norms and scalars 1.0, F32 where llama.cpp's
converter keeps F32), runs `llama-quantize` on it (built by
`LLAMA_EXTRA_TARGETS=llama-quantize scripts/build_llama_server.sh`), deletes the F16 source, and
checks that both engines load each result (a 1-token `g4 bench` and `llama-bench`). Shapes whose
F16 source would be far beyond this machine (2 cores, 24 GiB, shared) keep the real per-layer
dimensions and vocabulary but only the first N layers of the real layer pattern; the table says
so ("6/62 layers"). Tokenizers: Gemma 3 files carry the real 262144-piece vocabulary (copied from
the pulled gemma-3-270m GGUF, padded with [PAD<id>] to the 262208 embedding rows of 4B+ as the
converter does); Gemma 4 files carry the gemma4 BPE test vocabulary of
tests/golden/gemma4_tok/tokenizer.gguf padded with <unusedN> pieces to 262144, so that the
vocabulary size equals the embedding rows (llama.cpp insists on it).

`--avx2` runs both engines without AVX-512: g4 with G4_ISA=avx2, llama-bench from
`scripts/build_llama_server.sh --avx2` (GGML_AVX512=OFF), for the table of CPUs without it.
`bench` follows bench/compare_llamacpp.py (same commands, -r 1 per process, alternating engines
each repetition, peak RSS from wait4, the plain read loop of build/release/g4_read_bandwidth after
each repetition, huge pages, same thread count). Decode's weight traffic: the bytes a token must
read, i.e. every tensor once (the tied embedding is the LM head), except the per-layer embedding
table of E2B/E4B (one row gathered: counted as one row) and, for MoE, 8 of 128 experts' stacks.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
HOME = Path(os.environ.get("G4_HOME", Path.home() / ".cache/g4"))
SHAPES_DIR = HOME / "shapes"
LLAMA_BIN = HOME / "llama.cpp/bin"
G4 = root / "build/release/g4"
BW_TOOL = root / "build/release/g4_read_bandwidth"
G3_VOCAB_SRC = HOME / "models/gemma-3-270m-q4_k_m.gguf"
G4_VOCAB_SRC = root / "tests/golden/gemma4_tok/tokenizer.gguf"
QTYPES = {"q4_k_m": "Q4_K_M", "q8_0": "Q8_0"}

# Real hyperparameters: ../shared/docs/gemma-architecture.md §1. "layers" = how many of the real
# layer pattern this file keeps (F16 source of the full 12B/27B/31B/26B-A4B would be 24-52 GB).
SHAPES = {
    "g3-1b": dict(arch="gemma3", label="Gemma 3 1B", L=26, layers=26, d=1152, H=4, Hkv=1, hd=256,
                  ff=6912, vocab=262144, W=512, rope_scale=None),
    "g3-4b": dict(arch="gemma3", label="Gemma 3 4B", L=34, layers=34, d=2560, H=8, Hkv=4, hd=256,
                  ff=10240, vocab=262208, W=1024, rope_scale=8.0),
    "g3-12b": dict(arch="gemma3", label="Gemma 3 12B", L=48, layers=12, d=3840, H=16, Hkv=8, hd=256,
                   ff=15360, vocab=262208, W=1024, rope_scale=8.0),
    "g3-27b": dict(arch="gemma3", label="Gemma 3 27B", L=62, layers=6, d=5376, H=32, Hkv=16, hd=128,
                   ff=21504, vocab=262208, W=1024, rope_scale=8.0),
    "g4-e2b": dict(arch="gemma4", label="Gemma 4 E2B", L=35, layers=35, d=1536, H=8, Hkv=1, Hkv_g=1,
                   ff=6144, ff_shared=12288, vocab=262144, W=512, period=5, P=256, kv_shared=20,
                   k_eq_v=False),
    "g4-e4b": dict(arch="gemma4", label="Gemma 4 E4B", L=42, layers=42, d=2560, H=8, Hkv=2, Hkv_g=2,
                   ff=10240, ff_shared=10240, vocab=262144, W=512, period=6, P=256, kv_shared=18,
                   k_eq_v=False),
    "g4-31b": dict(arch="gemma4", label="Gemma 4 31B", L=60, layers=6, d=5376, H=32, Hkv=16, Hkv_g=4,
                   ff=21504, vocab=262144, W=1024, period=6, P=0, kv_shared=0, k_eq_v=True),
    "g4-26b-a4b": dict(arch="gemma4", label="Gemma 4 26B-A4B", L=30, layers=8, d=2816, H=16, Hkv=8,
                       Hkv_g=2, ff=2112, vocab=262144, W=1024, period=6, P=0, kv_shared=0,
                       k_eq_v=True, experts=128, top_k=8, exp_ff=704),
}
ORDER = list(SHAPES)


# ---------------------------------------------------------------------------------------------
# make

def g4_layer_is_sliding(s, i):
    if i == s["L"] - 1:
        return False  # HF forces the last (real) layer global
    return (i + 1) % s["period"] != 0


def tensor_plan(s):
    """[(name, numpy shape (outermost first), kind)] with kind 'w' (F16 random), 'norm' (F32 ones),
    'f32' (F32 random: router), 'one' (F32 ones: scalars/scales), 'rope' (rope_freqs)."""
    d, V, n = s["d"], s["vocab"], s["layers"]
    t = [("token_embd.weight", (V, d), "w")]
    if s["arch"] == "gemma3":
        for i in range(n):
            b = f"blk.{i}."
            q, kv = s["H"] * s["hd"], s["Hkv"] * s["hd"]
            t += [(b + "attn_norm.weight", (d,), "norm"), (b + "attn_q.weight", (q, d), "w"),
                  (b + "attn_k.weight", (kv, d), "w"), (b + "attn_v.weight", (kv, d), "w"),
                  (b + "attn_q_norm.weight", (s["hd"],), "norm"),
                  (b + "attn_k_norm.weight", (s["hd"],), "norm"),
                  (b + "attn_output.weight", (d, q), "w"),
                  (b + "post_attention_norm.weight", (d,), "norm"),
                  (b + "ffn_norm.weight", (d,), "norm"), (b + "ffn_gate.weight", (s["ff"], d), "w"),
                  (b + "ffn_up.weight", (s["ff"], d), "w"), (b + "ffn_down.weight", (d, s["ff"]), "w"),
                  (b + "post_ffw_norm.weight", (d,), "norm")]
        t.append(("output_norm.weight", (d,), "norm"))
        return t
    t.append(("rope_freqs.weight", (256,), "rope"))
    P = s["P"]
    if P:
        t += [("per_layer_token_embd.weight", (V, s["L"] * P), "w"),
              ("per_layer_model_proj.weight", (s["L"] * P, d), "w"),
              ("per_layer_proj_norm.weight", (P,), "norm")]
    first_shared = s["L"] - s["kv_shared"]
    for i in range(n):
        b = f"blk.{i}."
        sl = g4_layer_is_sliding(s, i)
        hd = 256 if sl else 512
        hkv = s["Hkv"] if sl else s["Hkv_g"]
        q, kv = s["H"] * hd, hkv * hd
        ff = s["ff"] if i < first_shared or not s.get("ff_shared") else s["ff_shared"]
        t += [(b + "attn_norm.weight", (d,), "norm"), (b + "attn_q.weight", (q, d), "w"),
              (b + "attn_q_norm.weight", (hd,), "norm")]
        if i < first_shared:
            t += [(b + "attn_k.weight", (kv, d), "w"), (b + "attn_k_norm.weight", (hd,), "norm")]
            if sl or not s["k_eq_v"]:
                t.append((b + "attn_v.weight", (kv, d), "w"))
        t += [(b + "attn_output.weight", (d, q), "w"),
              (b + "post_attention_norm.weight", (d,), "norm"),
              (b + "ffn_norm.weight", (d,), "norm"), (b + "ffn_gate.weight", (ff, d), "w"),
              (b + "ffn_up.weight", (ff, d), "w"), (b + "ffn_down.weight", (d, ff), "w"),
              (b + "post_ffw_norm.weight", (d,), "norm")]
        if s.get("experts"):
            E, f = s["experts"], s["exp_ff"]
            t += [(b + "ffn_gate_inp.weight", (E, d), "f32"), (b + "ffn_gate_inp.scale", (d,), "one"),
                  (b + "pre_ffw_norm_2.weight", (d,), "norm"),
                  (b + "post_ffw_norm_1.weight", (d,), "norm"),
                  (b + "post_ffw_norm_2.weight", (d,), "norm"),
                  (b + "ffn_gate_up_exps.weight", (E, 2 * f, d), "w"),
                  (b + "ffn_down_exps.weight", (E, d, f), "w"),
                  (b + "ffn_down_exps.scale", (E,), "one")]
        if P:
            t += [(b + "inp_gate.weight", (P, d), "w"), (b + "proj.weight", (d, P), "w"),
                  (b + "post_norm.weight", (d,), "norm")]
        t.append((b + "layer_output_scale.weight", (1,), "one"))
    t.append(("output_norm.weight", (d,), "norm"))
    return t


def numel(shape):
    n = 1
    for x in shape:
        n *= x
    return n


def f16_bytes(s):
    return sum(numel(sh) * (2 if k == "w" else 4) for _, sh, k in tensor_plan(s))


def vocab_for(s):
    """(model, pre, tokens, scores, types, merges, bos, eos) with exactly s['vocab'] tokens."""
    from gguf import GGUFReader

    def arr(r, k):
        return r.fields[k].contents()

    if s["arch"] == "gemma3":
        r = GGUFReader(str(G3_VOCAB_SRC))
        toks, scores, types = arr(r, "tokenizer.ggml.tokens"), arr(r, "tokenizer.ggml.scores"), \
            arr(r, "tokenizer.ggml.token_type")
        for i in range(len(toks), s["vocab"]):  # the converter's padding of 4B+ (262208 rows)
            toks.append(f"[PAD{i}]")
            scores.append(-1000.0)
            types.append(5)
        return "llama", "default", toks, scores, types, None
    r = GGUFReader(str(G4_VOCAB_SRC))
    toks, scores, types = arr(r, "tokenizer.ggml.tokens"), arr(r, "tokenizer.ggml.scores"), \
        arr(r, "tokenizer.ggml.token_type")
    merges = arr(r, "tokenizer.ggml.merges")
    pre = r.fields["tokenizer.ggml.pre"].contents()
    have, k = set(toks), 0
    while len(toks) < s["vocab"]:  # token texts must stay unique (both engines check)
        k += 1
        if f"<unused{k}>" in have:
            continue
        toks.append(f"<unused{k}>")
        scores.append(0.0)
        types.append(5)
    return "gemma4", pre, toks, scores, types, merges


def write_f16(s, path, seed=13):
    import numpy as np
    from gguf import GGUFWriter, RopeScalingType

    arch, d, n = s["arch"], s["d"], s["layers"]
    g = GGUFWriter(str(path), arch)
    a = arch + "."
    g.add_name(f"{s['label']} shape model (random weights, {n}/{s['L']} layers)")
    g.add_uint32(a + "context_length", 32768 if s["d"] == 1152 else 131072)
    g.add_uint32(a + "embedding_length", d)
    g.add_uint32(a + "block_count", n)
    g.add_uint32(a + "attention.head_count", s["H"])
    g.add_float32(a + "attention.layer_norm_rms_epsilon", 1e-6)
    g.add_uint32(a + "attention.sliding_window", s["W"])
    g.add_float32(a + "rope.freq_base", 1e6)
    if arch == "gemma3":
        g.add_uint32(a + "feed_forward_length", s["ff"])
        g.add_uint32(a + "attention.head_count_kv", s["Hkv"])
        g.add_uint32(a + "attention.key_length", s["hd"])
        g.add_uint32(a + "attention.value_length", s["hd"])
        if s["rope_scale"]:
            g.add_rope_scaling_type(RopeScalingType.LINEAR)
            g.add_rope_scaling_factor(s["rope_scale"])
    else:
        first_shared = s["L"] - s["kv_shared"]
        sliding = [g4_layer_is_sliding(s, i) for i in range(n)]
        ff = [s["ff"] if i < first_shared or not s.get("ff_shared") else s["ff_shared"]
              for i in range(n)]
        if len(set(ff)) == 1:
            g.add_uint32(a + "feed_forward_length", ff[0])
        else:
            g.add_array(a + "feed_forward_length", ff)
        kvh = [s["Hkv"] if sl else s["Hkv_g"] for sl in sliding]
        if len(set(kvh)) == 1 and s["Hkv"] == s["Hkv_g"]:
            g.add_uint32(a + "attention.head_count_kv", kvh[0])
        else:
            g.add_array(a + "attention.head_count_kv", kvh)
        g.add_uint32(a + "attention.key_length", 512)
        g.add_uint32(a + "attention.value_length", 512)
        g.add_uint32(a + "attention.key_length_swa", 256)
        g.add_uint32(a + "attention.value_length_swa", 256)
        g.add_array(a + "attention.sliding_window_pattern", sliding)
        g.add_uint32(a + "attention.shared_kv_layers", s["kv_shared"])
        g.add_uint32(a + "embedding_length_per_layer_input", s["P"])
        g.add_float32(a + "rope.freq_base_swa", 1e4)
        g.add_uint32(a + "rope.dimension_count", 512)
        g.add_uint32(a + "rope.dimension_count_swa", 256)
        g.add_float32(a + "final_logit_softcapping", 30.0)
        if s.get("experts"):
            g.add_uint32(a + "expert_count", s["experts"])
            g.add_uint32(a + "expert_used_count", s["top_k"])
            g.add_uint32(a + "expert_feed_forward_length", s["exp_ff"])
    model, pre, toks, scores, types, merges = vocab_for(s)
    g.add_tokenizer_model(model)
    g.add_tokenizer_pre(pre)
    g.add_token_list(toks)
    g.add_token_scores(scores)
    g.add_token_types(types)
    if merges:
        g.add_token_merges(merges)
    g.add_bos_token_id(2)
    g.add_eos_token_id(1)
    g.add_unk_token_id(3)
    g.add_pad_token_id(0)
    g.add_add_bos_token(True)
    g.add_add_space_prefix(False)
    g.add_file_type(1)  # MOSTLY_F16

    plan = tensor_plan(s)
    for name, shape, kind in plan:
        dt = np.float16 if kind == "w" else np.float32
        g.add_tensor_info(name, shape, np.dtype(dt), numel(shape) * np.dtype(dt).itemsize)
    g.write_header_to_file()
    g.write_kv_data_to_file()
    g.write_ti_data_to_file()
    # Tensor data streamed in chunks (the PLE table and expert stacks are GBs): slices of one
    # random pool at random offsets. Values do not matter for speed; they only need to keep the
    # forward finite (RMSNorm everywhere, std 0.02 as HF's init).
    rng = np.random.default_rng(seed)
    chunk = 1 << 24
    pool = (rng.standard_normal(2 * chunk, dtype=np.float32) * 0.02).astype(np.float16)
    fout = g.fout[0]
    for name, shape, kind in plan:
        g.write_padding(fout, fout.tell())
        cnt = numel(shape)
        if kind == "w":
            left = cnt
            while left:
                m = min(left, chunk)
                off = int(rng.integers(0, chunk))
                pool[off:off + m].tofile(fout)
                left -= m
        elif kind == "f32":
            (rng.standard_normal(cnt, dtype=np.float32) * 0.02).tofile(fout)
        elif kind == "rope":  # llama.cpp's converter: 1.0 for the 64 rotated pairs, 1e30 after
            np.array([1.0] * 64 + [1e30] * 192, dtype=np.float32).tofile(fout)
        else:
            np.ones(cnt, dtype=np.float32).tofile(fout)
        g.write_padding(fout, cnt * (2 if kind == "w" else 4))
    g.close()


def run(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr, flush=True)
    return subprocess.run([str(c) for c in cmd], errors="replace", **kw)


def load_check(path):
    """(g4 ok, llama.cpp ok, errors): a 1-token prefill + 1-token decode in each engine."""
    errs = []
    r = run([G4, "bench", path, "-p", 8, "-n", 2, "-r", 1, "-t", 2, "--json"], capture_output=True,
            text=True)
    g4_ok = r.returncode == 0
    if not g4_ok:
        errs.append("g4: " + (r.stderr.strip().splitlines() or ["?"])[-1])
    r = run([LLAMA_BIN / "llama-bench", "-m", path, "-p", 8, "-n", 2, "-r", 1, "-t", 2, "-o", "json",
             "--no-warmup"], capture_output=True, text=True)
    ll_ok = r.returncode == 0 and r.stdout.strip().startswith("[")
    if not ll_ok:
        errs.append("llama.cpp: " + " | ".join(r.stderr.strip().splitlines()[-3:]))
    return g4_ok, ll_ok, errs


def cmd_make(a):
    SHAPES_DIR.mkdir(parents=True, exist_ok=True)
    quant = LLAMA_BIN / "llama-quantize"
    if not quant.exists():
        raise SystemExit(f"{quant} missing: LLAMA_EXTRA_TARGETS=llama-quantize "
                         "scripts/build_llama_server.sh")
    status = {}
    sf = SHAPES_DIR / "status.json"
    if sf.exists():
        status = json.loads(sf.read_text())
    for key in a.shapes:
        s = SHAPES[key]
        outs = {q: SHAPES_DIR / f"{key}-{q}.gguf" for q in a.quants}
        todo = [q for q, p in outs.items() if a.force or not p.exists()]
        src = SHAPES_DIR / f"{key}-f16.gguf"
        if todo:
            t0 = time.time()
            print(f"{key}: writing F16 source ({f16_bytes(s) / 1e9:.1f} GB, {s['layers']}/{s['L']} "
                  "layers)", file=sys.stderr, flush=True)
            write_f16(s, src)
            print(f"{key}: F16 written in {time.time() - t0:.0f} s", file=sys.stderr)
            for q in todo:
                t0 = time.time()
                r = run(["nice", "-n", "19", quant, src, outs[q], QTYPES[q], a.threads],
                        capture_output=True, text=True)
                if r.returncode != 0:
                    print(r.stdout[-3000:], r.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"llama-quantize failed on {key} {q}")
                print(f"{key}: {q} in {time.time() - t0:.0f} s, "
                      f"{outs[q].stat().st_size / 1e9:.2f} GB", file=sys.stderr)
            if not a.keep_f16:
                src.unlink()
        for q, p in outs.items():
            g4_ok, ll_ok, errs = load_check(p)
            status[p.name] = {"g4": g4_ok, "llama.cpp": ll_ok, "errors": errs}
            print(f"{p.name}: g4 {'loads' if g4_ok else 'FAILS'}, llama.cpp "
                  f"{'loads' if ll_ok else 'FAILS'} {' '.join(errs)}", file=sys.stderr)
            sf.write_text(json.dumps(status, indent=1))


# ---------------------------------------------------------------------------------------------
# bench

def tensor_table(path):
    """[(name, type, shape list, bytes)] from `g4 inspect --all` (no gguf-py needed here)."""
    out = subprocess.run([str(G4), "inspect", "--all", str(path)], capture_output=True, text=True,
                         check=True).stdout
    rows, on = [], False
    for line in out.splitlines():
        if line.startswith("tensors:"):
            on = True
            continue
        m = re.match(r"\s+(\S+)\s+(\S+)\s+\{([\d, ]+)\}\s+(\d+)$", line) if on else None
        if m:
            rows.append((m[1], m[2], [int(x) for x in m[3].split(",")], int(m[4])))
    return rows


def bytes_per_token(s, rows):
    total = 0
    for name, _typ, shape, nb in rows:
        if name == "per_layer_token_embd.weight":
            total += nb // shape[1]  # one row gathered per token
        elif "_exps." in name and name.endswith(".weight"):
            total += nb * s["top_k"] // s["experts"]
        else:
            total += nb
    return total


def proc_stat():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(v), v[3] + v[4]  # total jiffies, idle + iowait


def run_rss_wait4(cmd, env=None):
    """stdout, peak RSS (MiB) of one child process (as bench/compare_llamacpp.py) and the cores
    the rest of the machine used meanwhile (all busy cores minus the child's own CPU time)."""
    t0, i0 = proc_stat()
    w0 = time.time()
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, env=env)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    t1, i1 = proc_stat()
    wall = time.time() - w0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with {p.returncode}")
    busy = os.cpu_count() * (1 - (i1 - i0) / max(1, t1 - t0))
    others = max(0.0, busy - (ru.ru_utime + ru.ru_stime) / wall)
    return out, ru.ru_maxrss / 1024.0, others


def read_bandwidth(threads):
    """GB/s of the plain read loop with huge pages and with 4 KiB pages, `threads` threads."""
    if not BW_TOOL.exists() or threads not in (1, 2):
        return None, None
    out = subprocess.run([str(BW_TOOL)], capture_output=True, text=True).stdout
    got = {}
    for line in out.splitlines():
        for kind in ("huge pages", "4 KiB pages"):
            if line.startswith(f"{kind}, {threads} thread"):
                got[kind] = float(line.split(":")[1].split()[0])
    return got.get("huge pages"), got.get("4 KiB pages")


def load1():
    return os.getloadavg()[0]


def busy_cores(window=2.0):
    """CPU cores in use over `window` seconds (from /proc/stat). Called between the engine runs,
    when this script runs nothing, so it is the other users' load."""
    t0, i0 = proc_stat()
    time.sleep(window)
    t1, i1 = proc_stat()
    return os.cpu_count() * (1 - (i1 - i0) / max(1, t1 - t0))


def quiet_gate(a):
    """Wait (up to --wait-quiet s) until the others use < --max-busy cores; returns what was seen
    last, so a row measured under load can be marked."""
    t_end = time.time() + a.wait_quiet
    while True:
        b = busy_cores()
        if b < a.max_busy or time.time() > t_end:
            return b
        print(f"  waiting: {b:.2f} cores busy (load {load1():.2f})", file=sys.stderr, flush=True)
        time.sleep(8)


def cmd_bench(a):
    results = []
    # --avx2: both engines without AVX-512 (g4's kernels chosen by G4_ISA, llama.cpp built with
    # GGML_AVX512=OFF by scripts/build_llama_server.sh --avx2), as on CPUs that lack it.
    g4_env = dict(os.environ, G4_ISA="avx2") if a.avx2 else None
    llama_bench = (LLAMA_BIN.parent / "bin-avx2" if a.avx2 else LLAMA_BIN) / "llama-bench"
    if not llama_bench.exists():
        raise SystemExit(f"{llama_bench} missing: scripts/build_llama_server.sh"
                         + (" --avx2" if a.avx2 else ""))
    for key in a.shapes:
        s = SHAPES[key]
        for q in a.quants:
            path = SHAPES_DIR / f"{key}-{q}.gguf"
            if not path.exists():
                print(f"skip {path.name}: not made", file=sys.stderr)
                continue
            p = a.p
            n = a.n if a.n else (128 if path.stat().st_size < 3e9 else 64)
            rows = tensor_table(path)
            bpt = bytes_per_token(s, rows)
            g4_pp, g4_tg, ll_pp, ll_tg, g4_rss, ll_rss, bw_h, bw_4k, loads, during = (
                [] for _ in range(10))
            for r in range(a.reps):
                loads.append(quiet_gate(a))
                out, rss, oth = run_rss_wait4([G4, "bench", path, "-p", p, "-n", n, "-r", 1, "-t",
                                          a.threads, "--json"], env=g4_env)
                g = json.loads(out)
                isa = g.get("isa")
                during.append(oth)
                g4_pp.append(g["pp"]["tokens_per_s"])
                g4_tg.append(g["tg"]["tokens_per_s"])
                g4_rss.append(rss)
                loads.append(quiet_gate(a))
                out, rss, oth2 = run_rss_wait4([llama_bench, "-m", path, "-p", p, "-n", n,
                                          "-r", 1, "-t", a.threads, "-o", "json"])
                lr = json.loads(out)
                during.append(oth2)
                ll_pp += [x["avg_ts"] for x in lr if x["n_prompt"] > 0 and x["n_gen"] == 0]
                ll_tg += [x["avg_ts"] for x in lr if x["n_gen"] > 0 and x["n_prompt"] == 0]
                ll_rss.append(rss)
                h, k4 = read_bandwidth(a.threads)
                if h:
                    bw_h.append(h)
                    bw_4k.append(k4)
                print(f"{path.name} rep {r + 1}/{a.reps}: g4 pp {g4_pp[-1]:.1f} tg {g4_tg[-1]:.2f} | "
                      f"llama.cpp pp {ll_pp[-1]:.1f} tg {ll_tg[-1]:.2f} | read loop {h} / {k4} GB/s "
                      f"| others busy before {loads[-2]:.2f}/{loads[-1]:.2f}, during {during[-2]:.2f}/"
                      f"{during[-1]:.2f} cores", file=sys.stderr, flush=True)
            res = dict(shape=key, label=s["label"], layers=s["layers"], L=s["L"], quant=q,
                       file_bytes=path.stat().st_size, bytes_per_token=bpt, p=p, n=n,
                       g4_pp=g4_pp, g4_tg=g4_tg, ll_pp=ll_pp, ll_tg=ll_tg,
                       g4_rss_mib=max(g4_rss), ll_rss_mib=max(ll_rss), bw_huge=bw_h, bw_4k=bw_4k,
                       busy_max=max(loads), busy_during_max=max(during), reps=a.reps, threads=a.threads,
                       g4_isa=isa, llama_avx512=not a.avx2)
            results.append(res)
            if a.json_out:
                Path(a.json_out).write_text(json.dumps(results, indent=1))
    print_table(results, a.stat)


def print_table(results, stat="mean"):
    # "max": the best repetition of each engine, less sensitive to other users on a shared VM
    # (llama.cpp's decode in particular collapses when a core is taken away from its spin barrier)
    mean = statistics.mean if stat == "mean" else max
    isa = results[0].get("g4_isa") if results else None
    if results and not results[0].get("llama_avx512", True):
        print(f"\nAVX2 only: g4 kernels {isa} (G4_ISA=avx2), llama-bench built without AVX-512")
    print(f"\n{len(results)} files; tok/s = {stat} over the repetitions; "
          "g4 bench and llama-bench alternating, -r 1 each, "
          f"{results[0]['reps'] if results else '?'} reps, {results[0]['threads'] if results else '?'}"
          " threads; read loop = build/release/g4_read_bandwidth after each rep (huge pages / 4 KiB "
          "pages, median); decode % = tok/s x bytes a token must read / read loop (huge pages)\n")
    print("| shape | quant | file GB | GB read / token | pp g4 | pp llama.cpp | pp ratio | tg g4 "
          "| tg llama.cpp | tg ratio | decode % of read loop g4 / llama.cpp | read loop GB/s "
          "| peak RSS GiB g4 / llama.cpp |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        lab = r["label"] + ("" if r["layers"] == r["L"] else f" ({r['layers']}/{r['L']} layers)")
        busy = max(r["busy_max"], r.get("busy_during_max", 0))
        if busy >= 0.5:
            lab += f" [under load: up to {busy:.1f} other cores busy]"
        bh = statistics.median(r["bw_huge"]) if r["bw_huge"] else None
        b4 = statistics.median(r["bw_4k"]) if r["bw_4k"] else None
        gt, lt = mean(r["g4_tg"]), mean(r["ll_tg"])
        frac = (f"{100 * gt * r['bytes_per_token'] / 1e9 / bh:.0f}% / "
                f"{100 * lt * r['bytes_per_token'] / 1e9 / bh:.0f}%") if bh else "-"
        print(f"| {lab} | {r['quant'].upper()} | {r['file_bytes'] / 1e9:.2f} | "
              f"{r['bytes_per_token'] / 1e9:.2f} | {mean(r['g4_pp']):.1f} | {mean(r['ll_pp']):.1f} | "
              f"{mean(r['g4_pp']) / mean(r['ll_pp']):.2f}x | {gt:.2f} | {lt:.2f} | {gt / lt:.2f}x | "
              f"{frac} | {f'{bh:.1f}' if bh else '-'} / {f'{b4:.1f}' if b4 else '-'} | "
              f"{r['g4_rss_mib'] / 1024:.2f} / {r['ll_rss_mib'] / 1024:.2f} |")
    if results:
        print(f"\n(pp = pp{results[0]['p']} tok/s; tg = tg{{n}} tok/s with n per file: "
              + ", ".join(f"{r['shape']}-{r['quant']} {r['n']}" for r in results) + ")")


def cmd_list(a):
    for key in a.shapes:
        s = SHAPES[key]
        print(f"{key:12s} {s['label']:18s} layers {s['layers']}/{s['L']}  F16 source "
              f"{f16_bytes(s) / 1e9:.1f} GB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", choices=["make", "bench", "list", "table"])
    ap.add_argument("--shapes", default=",".join(ORDER))
    ap.add_argument("--quants", default="q4_k_m,q8_0")
    ap.add_argument("--threads", "-t", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=0, help="decode tokens (0: 128, 64 for files > 3 GB)")
    ap.add_argument("--force", action="store_true", help="make: rewrite existing files")
    ap.add_argument("--keep-f16", action="store_true")
    ap.add_argument("--max-busy", type=float, default=0.3,
                    help="bench: before each engine run wait until other processes use fewer cores")
    ap.add_argument("--wait-quiet", type=float, default=900, help="bench: give up waiting after s")
    ap.add_argument("--json-out", default=None,
                    help="bench: also write the raw results here; table: comma-separated files to print")
    ap.add_argument("--avx2", action="store_true",
                    help="bench: both engines without AVX-512 (G4_ISA=avx2; llama.cpp's bin-avx2 build)")
    ap.add_argument("--stat", choices=["mean", "max"], default="mean",
                    help="tok/s over the repetitions: mean, or max (best rep; for a loaded machine)")
    a = ap.parse_args()
    a.shapes = [x for x in a.shapes.split(",") if x]
    a.quants = [x for x in a.quants.split(",") if x]
    for k in a.shapes:
        if k not in SHAPES:
            raise SystemExit(f"unknown shape {k}; known: {', '.join(ORDER)}")
    if a.cmd == "make":
        cmd_make(a)
    elif a.cmd == "bench":
        cmd_bench(a)
    elif a.cmd == "table":  # re-print a saved --json-out
        rows = []
        for f in a.json_out.split(","):
            rows += json.loads(Path(f).read_text())
        print_table(rows, a.stat)
    else:
        cmd_list(a)


if __name__ == "__main__":
    main()
