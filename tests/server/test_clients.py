"""Official client libraries, unchanged, against `g4 serve` with the real default model."""
import json
import subprocess

import pytest

from conftest import G4_BIN, MODEL, MODEL_ID, SANITIZED

pytestmark = pytest.mark.skipif(SANITIZED, reason="client round trips run in the Release build")

MSGS = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."}]


def test_openai_chat_and_stream(server):
    import openai
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    r = c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=8, temperature=0)
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.completion_tokens >= 1 and r.usage.prompt_tokens > 0
    text = ""
    usage = None
    for chunk in c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=8,
                                           temperature=0, stream=True,
                                           stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            text += ch.delta.content or ""
    assert text == r.choices[0].message.content  # greedy: streamed == non-streamed
    assert usage.completion_tokens == r.usage.completion_tokens
    models = c.models.list()
    assert [m.id for m in models.data] == [MODEL_ID]


def test_openai_completions_logprobs_n(server):
    import openai
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    r = c.completions.create(model=MODEL_ID, prompt="The capital of France is", max_tokens=6,
                             temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == r.usage.completion_tokens == len(lp.token_logprobs)
    assert all(x <= 0 for x in lp.token_logprobs)
    assert all(len(t) == 3 for t in lp.top_logprobs)
    # greedy: the chosen token is the most likely one
    for tok, lpv, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert abs(max(top.values()) - lpv) < 1e-6
    r = c.chat.completions.create(model=MODEL_ID, messages=MSGS, max_tokens=5, n=3, seed=7,
                                  temperature=1.0, logprobs=True, top_logprobs=2)
    assert sorted(ch.index for ch in r.choices) == [0, 1, 2]
    for ch in r.choices:
        assert len(ch.logprobs.content) >= 1
        assert len(ch.logprobs.content[0].top_logprobs) == 2


def token_id(text):
    """The single token id `g4 tokenize` gives for `text` (the default model's vocabulary)."""
    out = subprocess.run([G4_BIN, "tokenize", text, "--json", "--no-bos", "-m", MODEL],
                         check=True, capture_output=True, text=True).stdout
    ids = json.loads(out)
    assert len(ids) == 1, (text, ids)
    return ids[0]


def test_openai_logit_bias(server):
    """logit_bias bans the greedy choice (-100) and forces another token (+100), as OpenAI
    defines it (values added to the logits)."""
    import openai
    c = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    ask = dict(model=MODEL_ID, prompt="The capital of France is", max_tokens=1, temperature=0,
               logprobs=2)
    first = c.completions.create(**ask).choices[0].logprobs
    top = sorted(first.top_logprobs[0].items(), key=lambda kv: -kv[1])
    assert first.tokens[0] == top[0][0]
    banned = c.completions.create(**ask, logit_bias={str(token_id(top[0][0])): -100})
    assert banned.choices[0].logprobs.tokens[0] == top[1][0]
    # logprobs still describe the model's own distribution, not the biased one
    assert abs(banned.choices[0].logprobs.token_logprobs[0] - top[1][1]) < 1e-4
    forced = c.completions.create(**ask, logit_bias={str(token_id(" banana")): 100})
    assert forced.choices[0].text == " banana"


def test_ollama_client(server):
    import ollama
    c = ollama.Client(host=server.url)
    r = c.chat(model=MODEL_ID, messages=MSGS, options={"num_predict": 8, "temperature": 0})
    assert r.message.role == "assistant" and r.message.content
    assert r.done and r.eval_count >= 1
    parts = [p.message.content for p in c.chat(model=MODEL_ID, messages=MSGS, stream=True,
                                                options={"num_predict": 8, "temperature": 0})]
    assert "".join(parts) == r.message.content
    g = c.generate(model=MODEL_ID, prompt="Once upon a time", options={"num_predict": 6, "temperature": 0})
    assert g.response and g.done
    gs = "".join(p.response for p in c.generate(model=MODEL_ID, prompt="Once upon a time", stream=True,
                                                 options={"num_predict": 6, "temperature": 0}))
    assert gs == g.response
    tags = c.list()
    assert [m.model for m in tags.models] == [MODEL_ID]
    show = c.show(MODEL_ID)
    assert show.details.family == "gemma3"


def test_langchain_chat_openai(server):
    from langchain_openai import ChatOpenAI
    llm = ChatOpenAI(base_url=server.url + "/v1", api_key="unused", model=MODEL_ID,
                     temperature=0, max_tokens=8)
    msg = llm.invoke([("system", "You are terse."), ("human", "Name a colour.")])
    assert isinstance(msg.content, str) and msg.content
    streamed = "".join(chunk.content for chunk in llm.stream(
        [("system", "You are terse."), ("human", "Name a colour.")]))
    assert streamed == msg.content
