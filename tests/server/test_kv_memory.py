"""Paged KV memory in the server: memory follows what sequences hold (not slots x context),
the block accounting in /metrics adds up, and a pool too small for the load preempts and
recomputes sequences without changing any answer."""
import concurrent.futures as cf

from conftest import MODEL_ID, SANITIZED, Server, post

def complete(url, prompt, max_tokens):
    s, body, _ = post(url + "/v1/completions", {"model": MODEL_ID, "prompt": prompt,
                                                "max_tokens": max_tokens, "temperature": 0,
                                                "logprobs": 1, "ignore_eos": True})
    assert s == 200, body
    ch = body["choices"][0]
    return ch["text"], ch["logprobs"]["tokens"], ch["logprobs"]["token_logprobs"]


def blocks(s):
    return {k: s.metric("g4_kv_cache_blocks_" + k) for k in ("total", "used", "free", "shared")}


def test_many_long_slots_start_with_no_global_kv():
    # 8 slots x 32K tokens: the Gemma 3 270M global layers alone would reserve
    # 8 x 32768 x 3 layers x 256 x 2 (K, V) x 2 bytes = 768 MiB if every slot held its context.
    s = Server("--parallel", "8", "--ctx", "32768")
    try:
        b = blocks(s)
        assert b["total"] == 8 * 32768 / 256 and b["used"] == 0 and b["free"] == b["total"]
        if not SANITIZED:  # sanitizer shadow memory makes RSS meaningless
            rss_mib = s.rss_kib() / 1024
            assert rss_mib < 768, rss_mib  # weights + rings + scratch, no reserved global KV
        complete(s.url, "The quick brown fox", max_tokens=4)
        b = blocks(s)
        assert b["used"] == 1 and b["free"] == b["total"] - 1  # one block holds the short text
    finally:
        assert s.stop() == 0


def test_exhausted_pool_preempts_without_changing_answers():
    # 4 slots share a pool of 1024 positions (4 blocks of 256). Four 238-token prompts take a
    # block each; 40 tokens later every one needs a second block, which only preempting
    # (and later recomputing) the youngest sequences can give.
    prompts = [f"Story {i}: " + ("the cat sat on the mat and looked at the sky. " * 19)
               + f"Then number {i} said" for i in range(4)]
    ref = Server("--parallel", "1", "--ctx", "1024")
    try:
        alone = [complete(ref.url, p, max_tokens=40) for p in prompts]
    finally:
        assert ref.stop() == 0
    s = Server("--parallel", "4", "--ctx", "1024", "--kv-pool", "1024")
    try:
        assert blocks(s)["total"] == 4
        with cf.ThreadPoolExecutor(4) as ex:
            together = list(ex.map(lambda p: complete(s.url, p, max_tokens=40), prompts))
        for a, b in zip(alone, together):
            assert a[1] == b[1]  # same tokens
            assert a[2] == b[2]  # bit-identical logprobs: recomputed K/V equals the original
        assert s.metric("g4_kv_preemptions_total") > 0
        b = blocks(s)
        assert b["used"] + b["free"] == b["total"]
    finally:
        assert s.stop() == 0
