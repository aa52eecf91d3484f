"""The real server (uvicorn on 127.0.0.1, a free port, on a thread) over the tiny model and a tiny reward model,
called with the official `openai` client and with plain HTTP (httpx).

What is proven: OpenAI clients work against it; usage counts are the real token counts; greedy answers equal
`model.generate`'s, also when batched with other requests; best-of-N returns what the reward model scores
highest (checked by regenerating with the same seed and re-scoring outside the server); concurrent requests
share one generate call (read from /metrics, not from timing); 25 malformed requests each get a 4xx
with a message naming the problem and the server keeps serving; the API key guards every route but
/health; a request stuck past its timeout gets 504 and a full queue 503, never a hang.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import torch

from tether.data.tokenization import encode_prompt, encode_response, finished_reply
from tether.errors import ConfigError
from tether.models.loading import load_causal_lm, load_tokenizer
from tether.models.scalar_head import ScalarHeadModel
from tether.models.scoring import score_sequences
from tether.models.tiny import make_tiny_model, make_tiny_tokenizer
from tether.sampling.generate import SamplingConfig, cut_at_eos, generate_tokens
from tether.serve.engine import Candidate, Engine, GenerationJob, ServeConfig
from tether.serve.server import ServerThread

LIMITS = dict(max_new_tokens=16, max_prompt_tokens=96, max_n=8, max_batch_size=16, max_body_bytes=20_000,
              max_score_pairs=4, request_timeout_s=60.0, batch_wait_ms=5.0)
USER = [{"role": "user", "content": "What is 12 plus 7?"}]


@pytest.fixture(scope="module")
def rm_dir(tiny_model_dir, tmp_path_factory):
    """A tiny reward model (random head on the tiny Llama's decoder) saved as `tether rm` saves one."""
    tokenizer = load_tokenizer(str(tiny_model_dir))
    out = tmp_path_factory.mktemp("tiny-rm")
    ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tokenizer, seed=1).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def reference(tiny_model_dir, rm_dir):
    """The same policy and reward model loaded outside the server, to check its answers."""
    tokenizer = load_tokenizer(str(tiny_model_dir))
    policy = load_causal_lm(str(tiny_model_dir), tokenizer).eval()
    return policy, tokenizer, ScalarHeadModel.from_pretrained(rm_dir).eval()


def make_engine(tiny_model_dir, rm_dir=None, **overrides) -> Engine:
    return Engine.from_dirs(str(tiny_model_dir), rm_dir, ServeConfig(model_name="tiny", **{**LIMITS, **overrides}))


@pytest.fixture(scope="module")
def server(tiny_model_dir, rm_dir):
    with ServerThread(make_engine(tiny_model_dir, rm_dir)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def metric(server_url: str, name: str, headers: dict | None = None, **labels) -> float:
    """A sample's value from /metrics (0 when absent)."""
    text = httpx.get(f"{server_url}/metrics", headers=headers).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = "^" + re.escape(name + (f"{{{want}}}" if want else "")) + r" (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def greedy_reference(reference, messages, max_new_tokens: int) -> str:
    policy, tokenizer, _ = reference
    ids = torch.tensor([encode_prompt(tokenizer, messages)])
    with torch.no_grad():
        out = policy.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                              do_sample=False, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    tokens, _ = cut_at_eos(out[0, ids.shape[1]:].tolist(), tokenizer.eos_token_id)
    return tokenizer.decode(tokens, skip_special_tokens=True).strip()


def seeded_candidates(reference, messages, samples: int, max_new_tokens: int, temperature: float, seed: int):
    """Regenerate what the server samples for a seeded request (its own batch, torch seeded with the seed) with
    tether's decode loop outside the server (its sampler is tested against hand arithmetic and frequencies in
    tests/unit/sampling), and score it with the reward model loaded here: [(text, score, cut by the token limit)]
    in sampling order."""
    policy, tokenizer, rm = reference
    prompt_ids = encode_prompt(tokenizer, messages)
    torch.manual_seed(seed)
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature)
    rows = generate_tokens(policy, [prompt_ids] * samples, cfg, tokenizer.pad_token_id, tokenizer.eos_token_id)
    responses = [cut_at_eos(row, tokenizer.eos_token_id)[0] for row in rows]
    finished = [finished_reply(r, tokenizer.eos_token_id) for r in responses]
    scores = score_sequences(rm, [prompt_ids] * samples, finished, tokenizer.pad_token_id)  # a cut one read at EOS
    return [(tokenizer.decode(r, skip_special_tokens=True).strip(), s, r[-1:] != [tokenizer.eos_token_id])
            for r, s in zip(responses, scores)]


def rank_key(candidate) -> float:
    """What best_of ranks by: the RM score less the server's default missing-EOS penalty (1.0) for a cut one."""
    _, score, cut = candidate
    return score - (1.0 if cut else 0.0)


# ------------------------------------------------------------------------------- OpenAI client + HTTP
def test_openai_chat_completion_matches_greedy_generate_and_counts_tokens(client, reference):
    _, tokenizer, _ = reference
    out = client.chat.completions.create(model="tiny", messages=USER, temperature=0, max_tokens=12)
    assert out.object == "chat.completion" and out.model == "tiny" and len(out.choices) == 1
    choice = out.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == greedy_reference(reference, USER, 12)
    assert out.usage.prompt_tokens == len(encode_prompt(tokenizer, USER))
    assert 1 <= out.usage.completion_tokens <= 12
    if choice.finish_reason == "length":
        assert out.usage.completion_tokens == 12
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_openai_completions_with_several_prompts_and_n(client, reference):
    _, tokenizer, _ = reference
    prompts = ["The capital of France is", "12 plus 7 is"]
    out = client.completions.create(model="tiny", prompt=prompts, n=2, max_tokens=5, temperature=0.9)
    assert out.object == "text_completion"
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    assert all(c.finish_reason in ("stop", "length") for c in out.choices)
    assert out.usage.prompt_tokens == sum(len(tokenizer(p)["input_ids"]) for p in prompts)
    assert out.usage.completion_tokens <= 4 * 5


def test_openai_models_list_and_retrieve(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.models.retrieve("gpt-4")


def test_seed_makes_a_request_reproducible(client):
    ask = dict(model="tiny", messages=USER, n=3, max_tokens=8, temperature=1.0)
    first = [c.message.content for c in client.chat.completions.create(seed=11, **ask).choices]
    again = [c.message.content for c in client.chat.completions.create(seed=11, **ask).choices]
    other = [c.message.content for c in client.chat.completions.create(seed=12, **ask).choices]
    assert first == again
    assert first != other


def test_stop_string_cuts_the_completion(client):
    full = client.completions.create(model="tiny", prompt="abc", max_tokens=16, temperature=0).choices[0]
    assert len(full.text) >= 2
    stop = full.text[1:3] if full.text[1:3].strip() else full.text[1]
    cut = client.completions.create(model="tiny", prompt="abc", max_tokens=16, temperature=0, stop=[stop]).choices[0]
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.finish_reason == "stop"


# ------------------------------------------------------------------------------------------ best-of-N
def test_generate_best_of_n_is_the_response_the_reward_model_scores_highest(server, reference):
    body = {"prompt": "What is 12 plus 7?", "num_return_sequences": 4, "max_new_tokens": 10, "temperature": 1.0,
            "seed": 5}
    out = httpx.post(f"{server.url}/generate", json=body, timeout=60).json()
    expected = seeded_candidates(reference, USER, 4, 10, 1.0, seed=5)
    assert out["responses"] == [text for text, _, _ in expected]
    assert out["scores"] == pytest.approx([score for _, score, _ in expected], abs=1e-5)  # the RM's own scores
    best = max(range(4), key=lambda i: rank_key(expected[i]))
    assert out["best_index"] == best and out["best"] == expected[best][0]
    assert out["finish_reasons"] == ["length" if cut else "stop" for _, _, cut in expected]


def test_best_of_ranks_a_cut_candidate_down_by_the_missing_eos_penalty():
    from tether.serve.app import _top

    cut = Candidate("a b", [5, 6], "length", 2, score=1.5)
    done = Candidate("a.", [5, 2], "stop", 2, score=0.9)
    assert _top([cut, done], 1, 1.0) == [done]  # 1.5 − 1.0 < 0.9
    assert _top([cut, done], 1, 0.0) == [cut]  # penalty 0: ranked by the raw score
    assert _top([cut, done], 2, 0.5) == [cut, done]  # 1.0 > 0.9
    assert [c.score for c in _top([cut, done], 2, 1.0)] == [0.9, 1.5]  # the scores returned stay the RM's own
    with pytest.raises(ConfigError, match=r"serve\.missing_eos_penalty must be ≥ 0"):
        ServeConfig(missing_eos_penalty=-1.0)


def test_chat_best_of_returns_the_top_n_by_reward(client, reference):
    out = client.chat.completions.create(model="tiny", messages=USER, n=2, max_tokens=8, temperature=1.0, seed=9,
                                         extra_body={"best_of": 5})
    ranked = sorted(seeded_candidates(reference, USER, 5, 8, 1.0, seed=9), key=lambda c: -rank_key(c))[:2]
    assert [c.message.content for c in out.choices] == [text for text, _, _ in ranked]
    assert [c.model_extra["score"] for c in out.choices] == pytest.approx([s for _, s, _ in ranked], abs=1e-5)
    assert out.usage.completion_tokens <= 5 * 8  # every candidate sampled counts


def test_score_route_matches_scoring_outside_the_server(server, reference):
    _, tokenizer, rm = reference
    pairs = [{"prompt": "What is 12 plus 7?", "response": "19."},
             {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital?"}],
              "response": "Paris."}]
    out = httpx.post(f"{server.url}/v1/score", json={"pairs": pairs}, timeout=60).json()
    prompts = [encode_prompt(tokenizer, USER), encode_prompt(tokenizer, pairs[1]["prompt"])]
    responses = [encode_response(tokenizer, "19."), encode_response(tokenizer, "Paris.")]
    assert out["model"] == rm_name(server)
    assert out["scores"] == pytest.approx(score_sequences(rm, prompts, responses, tokenizer.pad_token_id), abs=1e-5)


def rm_name(server) -> str:
    return httpx.get(f"{server.url}/health").json()["reward_model"]


# ---------------------------------------------------------------------------------- malformed requests
CHAT, COMPLETIONS, GENERATE, SCORE = "/v1/chat/completions", "/v1/completions", "/generate", "/v1/score"
OK_CHAT = {"model": "tiny", "messages": USER, "max_tokens": 4}
MALFORMED = [
    # (route, raw body or JSON object, status, words the message must contain)
    (CHAT, b"{not json", 400, ["not valid JSON"]),
    (CHAT, b"", 400, ["body is missing"]),
    (CHAT, b"[1, 2]", 400, ["JSON object", "list"]),
    (CHAT, {"messages": "hello"}, 400, ["messages"]),
    (CHAT, {"messages": []}, 400, ["messages", "at least 1"]),
    (CHAT, {"messages": [{"role": "robot", "content": "x"}]}, 400, ["messages.0.role"]),
    (CHAT, {"messages": [{"role": "user", "content": 5}]}, 400, ["messages.0.content", "a string"]),
    (CHAT, {"messages": [{"role": "user", "content": "  "}]}, 400, ["messages", "empty"]),
    (CHAT, {**OK_CHAT, "max_tokens": -5}, 400, ["max_tokens", "greater than or equal to 1"]),
    (CHAT, {**OK_CHAT, "max_tokens": 10**9}, 400, ["max_tokens", "limit of 16"]),
    (CHAT, {**OK_CHAT, "max_tokens": "8"}, 400, ["max_tokens", "integer"]),
    (CHAT, {**OK_CHAT, "n": 0}, 400, ["n:", "greater than or equal to 1"]),
    (CHAT, {**OK_CHAT, "n": 1.5}, 400, ["n:", "integer"]),
    (CHAT, {**OK_CHAT, "n": 9}, 400, ["n:", "limit of 8"]),
    (CHAT, {**OK_CHAT, "n": 3, "best_of": 2}, 400, ["best_of", "≥ n"]),
    (CHAT, {**OK_CHAT, "temperature": "hot"}, 400, ["temperature"]),
    (CHAT, {**OK_CHAT, "temperature": 3}, 400, ["temperature", "less than or equal to 2"]),
    (CHAT, {**OK_CHAT, "top_p": 0}, 400, ["top_p"]),
    (CHAT, {**OK_CHAT, "model": "gpt-4"}, 404, ["gpt-4", "does not exist"]),
    (CHAT, {**OK_CHAT, "stream": True}, 400, ["stream", "not supported"]),
    (CHAT, {**OK_CHAT, "stop": ["a", "b", "c", "d", "e"]}, 400, ["stop", "at most 4"]),
    (CHAT, {**OK_CHAT, "stop": [""]}, 400, ["stop", "empty"]),
    (CHAT, {**OK_CHAT, "messages": [{"role": "user", "content": "word " * 200}]}, 400, ["messages", "at most 96"]),
    (CHAT, b'{"messages": [{"role": "user", "content": "' + b"x" * 30_000 + b'"}]}', 413, ["bytes", "20000"]),
    (COMPLETIONS, {"model": "tiny", "prompt": ""}, 400, ["prompt", "empty"]),
    (COMPLETIONS, {"model": "tiny", "prompt": [[1, 2, 3]]}, 400, ["prompt"]),
    (COMPLETIONS, {"model": "tiny", "prompt": 5}, 400, ["prompt", "a string"]),
    (GENERATE, {"prompt": "hi", "num_return_sequences": 0}, 400, ["num_return_sequences"]),
    (GENERATE, {"prompt": "hi", "max_new_tokens": 17}, 400, ["max_new_tokens", "limit of 16"]),
    (GENERATE, {"prompt": "hi", "temprature": 0.5}, 400, ["temprature", "Extra inputs"]),
    (GENERATE, {"max_new_tokens": 4}, 400, ["prompt", "required"]),
    (SCORE, {"pairs": []}, 400, ["pairs", "at least 1"]),
    (SCORE, {"pairs": [{"prompt": "q", "response": "a"}] * 5}, 400, ["pairs", "limit of 4"]),
    (SCORE, {"pairs": [{"prompt": "q"}]}, 400, ["pairs.0.response", "required"]),
    ("/v1/chat/complete", dict(OK_CHAT), 404, ["no route"]),
]


@pytest.mark.parametrize(("route", "body", "status", "words"), MALFORMED,
                         ids=[f"{i}-{r.rsplit('/', 1)[-1]}-{s}" for i, (r, _, s, _) in enumerate(MALFORMED)])
def test_malformed_request_gets_a_4xx_with_a_message(server, route, body, status, words):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(f"{server.url}{route}", content=content, headers={"content-type": "application/json"},
                          timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "\n" not in error["message"] and "Traceback" not in error["message"]
    for word in words:
        assert word in error["message"], error
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")


def test_server_keeps_serving_after_malformed_requests(server, client):
    for route, body, _, _ in MALFORMED:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        httpx.post(f"{server.url}{route}", content=content, headers={"content-type": "application/json"}, timeout=60)
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    out = client.chat.completions.create(model="tiny", messages=USER, max_tokens=3)
    assert len(out.choices) == 1 and out.usage.completion_tokens >= 1
    assert metric(server.url, "tether_requests_total", route=CHAT, status=400) >= 20


def test_wrong_method_is_a_405_in_the_error_shape(server):
    response = httpx.get(f"{server.url}/generate")
    assert response.status_code == 405
    assert "not allowed" in response.json()["error"]["message"]


def test_openapi_schema_is_served(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/generate", "/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/score", "/health",
            "/metrics"} <= set(spec["paths"])
    assert "ErrorResponse" in spec["components"]["schemas"]
    assert httpx.get(f"{server.url}/docs").status_code == 200


# ----------------------------------------------------------------------------------------- batching
def test_concurrent_requests_share_one_generate_call(tiny_model_dir, reference):
    """4 requests arrive while the worker waits (a long batch window) for a full batch of 4: one generate runs.
    With temperature 0 each answer must equal the same prompt's greedy answer generated alone (left padding
    inside the batch changes nothing)."""
    engine = make_engine(tiny_model_dir, max_batch_size=4, batch_wait_ms=120_000, request_timeout_s=60)
    asks = [[{"role": "user", "content": q}] for q in ("Hi", "What is 12 plus 7?", "Capital of France?",
                                                       "The opposite of hot is what, please?")]
    with ServerThread(engine) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=90)
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(lambda m: client.chat.completions.create(
                model="tiny", messages=m, max_tokens=10, temperature=0), asks))
        assert metric(server.url, "tether_batches_total", kind="generate") == 1
        assert metric(server.url, "tether_batch_requests_max", kind="generate") == 4
        assert metric(server.url, "tether_batch_sequences_count", kind="generate") == 1
    for messages, out in zip(asks, outs):
        assert out.choices[0].message.content == greedy_reference(reference, messages, 10)


# ------------------------------------------------------------------------------------ API key, timeouts
def test_api_key_guards_every_route_but_health(tiny_model_dir):
    engine = make_engine(tiny_model_dir, api_key="sekret")
    with ServerThread(engine) as server:
        assert httpx.get(f"{server.url}/health").status_code == 200
        for method, path in (("GET", "/v1/models"), ("GET", "/metrics"), ("POST", CHAT), ("POST", GENERATE),
                             ("GET", "/openapi.json")):
            response = httpx.request(method, f"{server.url}{path}", json={"bad": "body"})
            assert response.status_code == 401, path
            assert response.json()["error"]["type"] == "authentication_error"
            assert "Bearer" in response.json()["error"]["message"]
        wrong = httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid API key"
        good = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sekret", max_retries=0, timeout=60)
        assert good.chat.completions.create(model="tiny", messages=USER, max_tokens=2).choices
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0).models.list()
        assert metric(server.url, "tether_requests_total", headers={"Authorization": "Bearer sekret"},
                      route="/v1/models", status=401) == 3


class BlockedGeneration:
    """Wraps an engine's `_sample` so generation waits until `release()` (a stuck model, deterministically)."""

    def __init__(self, engine: Engine):
        self.inner, self.entered, self.gate = engine._sample, threading.Event(), threading.Event()
        engine._sample = self

    def __call__(self, *args, **kwargs):
        self.entered.set()
        self.gate.wait(120)
        return self.inner(*args, **kwargs)

    def release(self):
        self.gate.set()


def test_request_past_its_timeout_gets_504_and_a_queued_one_is_dropped_unrun(tiny_model_dir):
    engine = make_engine(tiny_model_dir, request_timeout_s=1.0)
    blocked = BlockedGeneration(engine)
    with ServerThread(engine) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=60)
        with pytest.raises(openai.APIStatusError) as running:  # claimed by the worker, never finishes in time
            client.chat.completions.create(model="tiny", messages=USER, max_tokens=2)
        assert running.value.status_code == 504 and blocked.entered.is_set()
        assert "not served within 1 s" in running.value.body["message"]
        queued = httpx.post(f"{server.url}{CHAT}", json=OK_CHAT, timeout=60)  # waits behind the stuck one
        assert queued.status_code == 504 and queued.json()["error"]["type"] == "timeout_error"
        blocked.release()
        assert client.chat.completions.create(model="tiny", messages=USER, max_tokens=2).choices
        assert metric(server.url, "tether_timeouts_total") == 2
        assert metric(server.url, "tether_batches_total", kind="generate") == 2  # the queued one never ran


def test_full_queue_gets_503_at_once(tiny_model_dir):
    engine = make_engine(tiny_model_dir, max_queue=1)
    blocked = BlockedGeneration(engine)
    with ServerThread(engine) as server, ThreadPoolExecutor(2) as pool:
        running = pool.submit(httpx.post, f"{server.url}{CHAT}", json=OK_CHAT, timeout=60)
        assert blocked.entered.wait(60)
        queued = pool.submit(httpx.post, f"{server.url}{CHAT}", json=OK_CHAT, timeout=60)
        for _ in range(6000):  # until the second request is in the queue (bounded; no timing is asserted)
            if httpx.get(f"{server.url}/health").json()["queue_depth"] == 1:
                break
            time.sleep(0.005)
        full = httpx.post(f"{server.url}{CHAT}", json=OK_CHAT, timeout=60)
        assert full.status_code == 503
        assert full.json()["error"]["code"] == "queue_full" and "overloaded" in full.json()["error"]["message"]
        blocked.release()
        assert running.result().status_code == 200 and queued.result().status_code == 200
        assert metric(server.url, "tether_rejected_total", reason="queue_full") == 1


def test_no_reward_model_best_of_and_score_are_400(tiny_model_dir):
    with ServerThread(make_engine(tiny_model_dir)) as server:
        r = httpx.post(f"{server.url}{CHAT}", json={**OK_CHAT, "best_of": 2}, timeout=60)
        assert r.status_code == 400 and "--reward-model" in r.json()["error"]["message"]
        r = httpx.post(f"{server.url}{SCORE}", json={"pairs": [{"prompt": "q", "response": "a"}]}, timeout=60)
        assert r.status_code == 400 and "no reward model" in r.json()["error"]["message"]
        out = httpx.post(f"{server.url}{GENERATE}", json={"prompt": "hi", "num_return_sequences": 2,
                                                           "max_new_tokens": 3}, timeout=60).json()
        assert len(out["responses"]) == 2 and out["scores"] is None and out["best"] is None


def test_metrics_count_tokens_generated(server, client):
    before = metric(server.url, "tether_generated_tokens_total")
    out = client.chat.completions.create(model="tiny", messages=USER, n=2, max_tokens=6)
    assert metric(server.url, "tether_generated_tokens_total") - before == out.usage.completion_tokens
    text = httpx.get(f"{server.url}/metrics").text
    assert "# TYPE tether_request_latency_seconds histogram" in text
    assert 'tether_request_latency_seconds_count{route="/v1/chat/completions"}' in text


def test_reward_model_with_its_own_tokenizer_scores_the_text(tiny_model_dir, tmp_path):
    """An RM whose tokenizer differs from the policy's re-tokenises prompt and response text with its own."""
    rm_tokenizer = make_tiny_tokenizer(vocab_size=320)
    backbone_dir = tmp_path / "other-lm"
    make_tiny_model(rm_tokenizer, seed=3).save_pretrained(backbone_dir)
    rm_tokenizer.save_pretrained(backbone_dir)
    ScalarHeadModel.from_pretrained_lm(str(backbone_dir), rm_tokenizer, seed=2).save_pretrained(tmp_path / "rm")
    rm_tokenizer.save_pretrained(tmp_path / "rm")
    engine = make_engine(tiny_model_dir, tmp_path / "rm")
    assert not engine.rm_shares_tokenizer
    prompt_ids, rm_prompt_ids = engine.encode_chat(USER, "messages")
    engine.start()
    try:
        (candidates,) = asyncio.run(engine.run_generation([GenerationJob(
            prompt_ids, 3, 8, 1.0, 1.0, score=True, rm_prompt_ids=rm_prompt_ids)]))
    finally:
        engine.stop()
    rm = ScalarHeadModel.from_pretrained(tmp_path / "rm").eval()
    responses = [encode_response(rm_tokenizer, c.text) for c in candidates]  # EOS even where the candidate was cut
    expected = score_sequences(rm, [encode_prompt(rm_tokenizer, USER)] * 3, responses, rm_tokenizer.pad_token_id)
    assert [c.score for c in candidates] == pytest.approx(expected, abs=1e-5)


def test_system_prompt_goes_first_in_a_chat_without_one(tiny_model_dir, rm_dir, reference):
    _, tokenizer, _ = reference
    system = {"role": "system", "content": "You are a helpful assistant."}
    own = {"role": "system", "content": "Be terse."}
    plain = make_engine(tiny_model_dir)
    with_system = make_engine(tiny_model_dir, rm_dir, system_prompt=system["content"])
    assert plain.encode_chat(USER, "messages")[0] == encode_prompt(tokenizer, USER)
    assert with_system.encode_chat(USER, "messages")[0] == encode_prompt(tokenizer, [system, *USER])
    assert encode_prompt(tokenizer, [system, *USER]) != encode_prompt(tokenizer, USER)
    # a chat that brings its own system turn keeps it, and gets no second one
    assert with_system.encode_chat([own, *USER], "messages")[0] == encode_prompt(tokenizer, [own, *USER])
    # the reward model's prompts (/v1/score) get it too
    prompt_ids, _ = with_system.encode_score_pair(USER, "19.", "pairs.0")
    assert prompt_ids == encode_prompt(tokenizer, [system, *USER])
