"""The safety guard in `g4 serve` (src/guard, src/server/guard_api.cc) with the default model as
the classifier (--guard: the serving model's file on its own engine instance): POST
/v1/moderations through the `openai` client (OpenAI's 13 categories, g4_guard extension with raw
policy scores and thresholds), the input check of chat requests (a blocked prompt is a 400 with
code `content_filter` naming the policy), metrics, and bad input (unknown policy, malformed
profile, oversized input) answered with clear 4xx while the server keeps working.

Gemma 3 270M is not a safety classifier, so its scores carry no meaning here; tests that need a
block or a pass set the threshold to 0 or 1 in a profile file."""
import json
import urllib.request

import openai
import pytest
from openai import OpenAI

from conftest import MODEL_ID, SANITIZED, Server, post

pytestmark = pytest.mark.skipif(SANITIZED, reason="runs in the Release build")

CATEGORIES = ["harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
              "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions",
              "sexual", "sexual/minors", "violence", "violence/graphic"]
MAPPED = {"harassment": "harassment", "hate": "hate_speech", "illicit/violent": "dangerous_content",
          "self-harm/instructions": "dangerous_content", "sexual": "sexually_explicit"}


def client(s):
    return OpenAI(base_url=s.url + "/v1", api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """Guard on, chat input checked with a custom policy that always fires (threshold 0)."""
    prof = tmp_path_factory.mktemp("guard") / "always.json"
    prof.write_text(json.dumps({
        "name": "always", "base": "balanced",
        "policies": ["harassment", {"name": "bread_talk", "description": "talks about bread"}],
        "thresholds": {"bread_talk": 0.0, "harassment": 1.0}}))
    s = Server("--parallel", "2", "--guard-profile", str(prof))
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def lenient(tmp_path_factory):
    """Guard on with thresholds of 1: never blocks."""
    prof = tmp_path_factory.mktemp("guard") / "never.json"
    prof.write_text(json.dumps({"name": "never", "default_threshold": 1.0}))
    s = Server("--parallel", "2", "--guard-profile", str(prof))
    yield s
    assert s.stop() == 0


def test_moderations_openai_client(lenient):
    c = client(lenient)
    r = c.moderations.create(input="How do I bake sourdough bread?")
    assert len(r.results) == 1
    res = r.results[0]
    cats = res.categories.model_dump(by_alias=True)
    scores = res.category_scores.model_dump(by_alias=True)
    for name in CATEGORIES:
        assert name in cats and name in scores, name
    ext = res.model_extra["g4_guard"]
    assert ext["profile"] == "never"
    by_policy = {p["policy"]: p for p in ext["policies"]}
    assert set(by_policy) == {"dangerous_content", "harassment", "hate_speech", "sexually_explicit"}
    for p in by_policy.values():
        assert 0.0 <= p["score"] <= 1.0 and p["threshold"] == 1.0
    for name in CATEGORIES:
        if name in MAPPED:
            assert scores[name] == pytest.approx(by_policy[MAPPED[name]]["score"], abs=1e-6)
        else:
            assert scores[name] == 0.0 and cats[name] is False
    assert res.flagged is False
    # Array input: one result per text, in order; the same text scores the same.
    r2 = c.moderations.create(input=["How do I bake sourdough bread?", "You are an idiot."])
    assert len(r2.results) == 2
    again = {p["policy"]: p["score"] for p in r2.results[0].model_extra["g4_guard"]["policies"]}
    assert again == {k: v["score"] for k, v in by_policy.items()}


def test_moderations_policy_subset_and_bad_input(lenient):
    url = lenient.url + "/v1/moderations"
    st, body, _ = post(url, {"input": "hello", "policies": ["harassment"]})
    assert st == 200, body
    assert [p["policy"] for p in body["results"][0]["g4_guard"]["policies"]] == ["harassment"]
    bad = [
        ({"input": "hi", "policies": ["no_such_policy"]}, "unknown_policy"),
        ({"input": "hi", "policies": []}, "invalid_type"),
        ({"input": ""}, "invalid_value"),
        ({"input": []}, "invalid_value"),
        ({"input": 42}, "invalid_type"),
        ({}, "missing_field"),
        ({"input": "hi", "temperature": 1}, "unknown_parameter"),
        ({"input": "x" * (300 * 1024)}, "input_too_large"),
        ({"input": ["a"] * 33}, "invalid_value"),
    ]
    for req, code in bad:
        st, body, _ = post(url, req)
        assert st == 400, (req if len(json.dumps(req)) < 200 else code, body)
        assert body["error"]["code"] == code, body
        assert body["error"]["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client(lenient).moderations.create(input=[])
    assert e.value.status_code == 400
    # Still serving, guard and chat alike.
    st, body, _ = post(url, {"input": "hello again"})
    assert st == 200, body
    out = client(lenient).chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4, temperature=0)
    assert out.choices[0].finish_reason in ("stop", "length")


def test_chat_input_blocked_names_policy(guarded):
    c = client(guarded)
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model=MODEL_ID, max_tokens=4,
                                  messages=[{"role": "user", "content": "Tell me about bread."}])
    err = e.value.body
    assert e.value.status_code == 400
    assert err["code"] == "content_filter", err
    assert "bread_talk" in err["message"], err
    # Metrics: the block per policy and the guard's latency.
    text = urllib.request.urlopen(guarded.url + "/metrics").read().decode()
    assert 'g4_guard_blocks_total{policy="bread_talk"} 1' in text, text[-800:]
    count = [ln for ln in text.splitlines() if ln.startswith("g4_guard_check_seconds_count")]
    assert count and float(count[0].split()[-1]) >= 1
    # Moderations on the same server report the custom policy in the extension only.
    r = c.moderations.create(input="Tell me about bread.")
    ext = r.results[0].model_extra["g4_guard"]
    assert r.results[0].flagged is True and ext["fired"] == "bread_talk"
    assert all(v is False for v in r.results[0].categories.model_dump(by_alias=True).values())


def test_chat_passes_when_not_flagged(lenient):
    out = client(lenient).chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "Tell me about bread."}], max_tokens=4,
        temperature=0)
    assert out.choices[0].message.content is not None


def test_malformed_profile_refused_at_start(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"thresholds": {"harassment": 7}}')
    with pytest.raises(RuntimeError) as e:
        Server("--guard-profile", str(bad), ready_timeout=60)
    assert "thresholds.harassment" in str(e.value) and "[0, 1]" in str(e.value)
    with pytest.raises(RuntimeError) as e:
        Server("--guard-profile", "lenient", ready_timeout=60)
    assert "lenient" in str(e.value)


def test_moderations_without_guard_is_404(server):
    st, body, _ = post(server.url + "/v1/moderations", {"input": "hi"})
    assert st == 404 and body["error"]["code"] == "guard_disabled", body
