"""The serving engine: a policy (and optionally a reward model) behind a batching scheduler.

Request handlers turn a validated request into jobs with the `prepare_*` methods (which check every
configured limit and raise `ServeError` 4xx naming the field), then await `run_generation`/`run_scoring`.
All model work happens on the scheduler's one worker thread:

1. `_run_generation(jobs)`: every job's prompt is repeated `samples` times (best_of candidates), all of
   them go through ONE left-padded, KV-cached `generate_tokens` call at the longest max_new_tokens of the batch;
2. each sequence is cut to its own request's max_new_tokens, then at the first EOS (finish_reason stop;
   no EOS → length), then before the first stop string;
3. candidates of jobs that asked for scores (best_of, /generate) are scored by the reward model in one
   batched `score_sequences` call, read at the EOS as in RM training (appended to a candidate that was cut).

A request that cannot be answered within `request_timeout_s` gets a 504 (its job is dropped if it has
not started); a full queue answers 503 at once. Neither ever hangs the caller.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tether.data.tokenization import encode_prompt, encode_response, finished_reply
from tether.errors import ConfigError
from tether.sampling.generate import SamplingConfig, cut_at_eos, generate_tokens
from tether.sampling.labelling import penalised
from tether.serve.metrics import Metrics
from tether.serve.scheduler import BatchRecord, BatchScheduler, Job, QueueFull


@dataclass
class ServeConfig:
    model_name: str = ""
    """Id the policy is served under (GET /v1/models, the `model` field); default: its dir name."""
    reward_model_name: str = ""
    """Id of the reward model (POST /v1/score); default: its dir name."""
    max_prompt_tokens: int = 1024
    """Longest prompt in tokens (after the chat template); longer → 400."""
    max_new_tokens: int = 256
    """Largest max_tokens / max_new_tokens a request may ask for; larger → 400."""
    default_max_tokens: int = 64
    """max_tokens when an OpenAI request leaves it out (capped at max_new_tokens)."""
    max_n: int = 16
    """Largest n, best_of and num_return_sequences; larger → 400."""
    max_prompts: int = 16
    """Most prompts in one /v1/completions request."""
    max_score_pairs: int = 64
    """Most pairs in one /v1/score request."""
    max_batch_size: int = 32
    """Most sequences in one generate call (requests × samples); 1 = serve one request at a time."""
    batch_wait_ms: float = 10.0
    """How long the worker waits for more requests to fill a batch that is not full."""
    max_queue: int = 256
    """Most requests waiting for the worker; more → 503 at once."""
    request_timeout_s: float = 60.0
    """A request not answered within this many seconds (queue + model time) gets a 504."""
    max_body_bytes: int = 1_000_000
    """Largest request body; larger → 413."""
    api_key: str | None = None
    """If set, every route but /health needs the header `Authorization: Bearer <api_key>`."""
    missing_eos_penalty: float = 1.0
    """Subtracted from the reward-model score of a candidate cut by max_tokens (finish_reason length) when best_of
    and /generate rank candidates, as `tether bon` and PPO do; the scores returned stay the reward model's own."""
    system_prompt: str | None = None
    """System turn put first in a chat that has none (/generate, /v1/chat/completions, and the prompts of /v1/score
    for the reward model). The demo policies were trained with `tether.data.demo_task.SYSTEM_PROMPT`; None leaves a chat
    without one to the chat template (SmolLM2's inserts its own default)."""

    def __post_init__(self):
        for name in ("max_prompt_tokens", "max_new_tokens", "default_max_tokens", "max_n", "max_prompts",
                     "max_score_pairs", "max_batch_size", "max_queue", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"serve.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.batch_wait_ms < 0 or self.request_timeout_s <= 0:
            raise ConfigError("serve.batch_wait_ms must be ≥ 0 and serve.request_timeout_s > 0")
        if not self.missing_eos_penalty >= 0:
            raise ConfigError(f"serve.missing_eos_penalty must be ≥ 0, got {self.missing_eos_penalty}")
        self.default_max_tokens = min(self.default_max_tokens, self.max_new_tokens)
        if self.api_key == "":
            raise ConfigError("serve.api_key is empty; leave it out to serve without a key")


class ServeError(Exception):
    """An HTTP error in OpenAI's shape: status, one-line message naming the field, error type, param, code."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or {401: "authentication_error", 404: "not_found_error", 504: "timeout_error"}.get(
            status, "server_error" if status >= 500 else "invalid_request_error")


@dataclass
class GenerationJob:
    """One prompt to sample `samples` responses for (all with the same sampling settings)."""

    prompt_ids: list[int]
    samples: int
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    strip: bool = True
    """Strip surrounding whitespace (chat); raw completions keep it."""
    score: bool = False
    """Score every candidate with the reward model."""
    rm_prompt_ids: list[int] | None = None
    """The prompt in the reward model's tokenizer (None: same tokenizer as the policy)."""

    @property
    def key(self):
        """Jobs with equal keys share a generate call; a seeded job runs alone (reproducible)."""
        if self.seed is not None:
            return None
        return ("generate", 0.0, 1.0) if self.temperature == 0 else ("generate", self.temperature, self.top_p)


@dataclass
class Candidate:
    text: str
    response_ids: list[int]
    """Policy tokens of the returned text (ending with EOS when finish_reason is stop by EOS)."""
    finish_reason: str
    """stop (EOS or a stop string) | length (max_new_tokens reached without EOS)."""
    generated_tokens: int
    """Tokens the model generated for this sequence (before any stop-string cut)."""
    score: float | None = None

    def rank_score(self, missing_eos_penalty: float) -> float:
        """What best_of ranks by: the reward-model score, less the penalty if the candidate was cut by max_tokens."""
        return penalised(self.score, self.finish_reason == "length", missing_eos_penalty)  # type: ignore[arg-type]


@dataclass
class ScoringJob:
    prompt_ids: list[list[int]]
    response_ids: list[list[int]]


class Engine:
    """Policy + tokenizer (+ reward model) served through a `BatchScheduler`; see the module docstring."""

    def __init__(self, policy, tokenizer, reward_model=None, rm_tokenizer=None, config: ServeConfig | None = None,
                 metrics: Metrics | None = None):
        self.config = config or ServeConfig()
        self.policy = policy.eval()
        self.tokenizer = tokenizer
        self.reward_model = reward_model.eval() if reward_model is not None else None
        self.rm_tokenizer = rm_tokenizer or tokenizer
        self.rm_shares_tokenizer = self.rm_tokenizer is tokenizer or (
            self.rm_tokenizer.get_vocab() == tokenizer.get_vocab()
            and self.rm_tokenizer.eos_token_id == tokenizer.eos_token_id)
        self.model_name = self.config.model_name or "policy"
        self.reward_model_name = self.config.reward_model_name or ("reward-model" if reward_model is not None else "")
        self.context_length = int(getattr(policy.config, "max_position_embeddings", 0) or 0)
        self.metrics = metrics or Metrics()
        self.created = int(time.time())
        self._tok_lock = threading.Lock()  # fast tokenizers are not safe to call from two threads at once
        self.scheduler = BatchScheduler(self._run_batch, self.config.max_batch_size, self.config.batch_wait_ms / 1000,
                                        self.config.max_queue, on_batch=self._record_batch)

    @classmethod
    def from_dirs(cls, policy: str, reward_model: str | Path | None = None,
                  config: ServeConfig | None = None) -> Engine:
        """Load a policy (embedded name, model dir or HF id) and a reward-model dir (from `tether rm`)."""
        from tether.models.loading import freeze, load_causal_lm, load_tokenizer

        config = config or ServeConfig()
        tokenizer = load_tokenizer(policy)
        model = freeze(load_causal_lm(policy, tokenizer))
        rm = rm_tokenizer = None
        if reward_model is not None:
            from tether.models.scalar_head import ScalarHeadModel

            rm = freeze(ScalarHeadModel.from_pretrained(reward_model))
            has_tokenizer = any((Path(reward_model) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
            rm_tokenizer = load_tokenizer(str(reward_model)) if has_tokenizer else tokenizer
        names = dict(model_name=config.model_name or Path(str(policy).rstrip("/")).name,
                     reward_model_name=config.reward_model_name or
                     (Path(str(reward_model).rstrip("/")).name if reward_model is not None else ""))
        config = dataclasses.replace(config, **names)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(model.to(device), tokenizer, rm.to(device) if rm is not None else None, rm_tokenizer, config)

    # ------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()

    # ------------------------------------------------------------------- request checks and encoding
    def check_model(self, name: str | None, param: str = "model", reward: bool = False) -> None:
        served = self.reward_model_name if reward else self.model_name
        if name is not None and name != served:
            raise ServeError(404, f"model '{name}' does not exist; this server serves '{served}'", param,
                             "model_not_found")

    def with_system(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The chat with the configured system turn first, unless it has one (or none is configured)."""
        if self.config.system_prompt is None or (messages and messages[0]["role"] == "system"):
            return messages
        return [{"role": "system", "content": self.config.system_prompt}, *messages]

    def encode_chat(self, messages: list[dict[str, str]], param: str) -> tuple[list[int], list[int] | None]:
        """Chat prompt ids for the policy, and for the reward model when its tokenizer differs."""
        if not any(m["content"].strip() for m in messages):
            raise ServeError(400, f"{param}: every message is empty", param)
        messages = self.with_system(messages)
        with self._tok_lock:
            ids = encode_prompt(self.tokenizer, messages)
            rm_ids = None if self.rm_shares_tokenizer else encode_prompt(self.rm_tokenizer, messages)
        return ids, rm_ids

    def encode_text(self, text: str, param: str) -> tuple[list[int], list[int] | None]:
        """Raw-text prompt ids (no chat template), for /v1/completions."""
        if not text:
            raise ServeError(400, f"{param}: must not be empty", param)
        with self._tok_lock:
            ids = self.tokenizer(text)["input_ids"]
            rm_ids = None if self.rm_shares_tokenizer else self.rm_tokenizer(text)["input_ids"]
        return list(ids), (list(rm_ids) if rm_ids is not None else None)

    def check_prompt_length(self, prompt_ids: list[int], max_new_tokens: int, param: str) -> None:
        limit = self.config.max_prompt_tokens
        if len(prompt_ids) > limit:
            raise ServeError(400, f"{param}: the prompt is {len(prompt_ids)} tokens; this server accepts at most "
                                  f"{limit}", param, "prompt_too_long")
        if self.context_length and len(prompt_ids) + max_new_tokens > self.context_length:
            raise ServeError(400, f"{param}: prompt ({len(prompt_ids)} tokens) + max tokens ({max_new_tokens}) "
                                  f"exceeds the model's context of {self.context_length}", param,
                             "context_length_exceeded")

    def check_sampling(self, n: int, best_of: int | None, max_tokens: int | None, stop,
                       n_param: str = "n", max_tokens_param: str = "max_tokens") -> tuple[int, int, list[str]]:
        """(samples per prompt, max_new_tokens, stop strings) after checking n, best_of, max_tokens, stop."""
        cfg = self.config
        if n > cfg.max_n:
            raise ServeError(400, f"{n_param}: {n} is more than this server's limit of {cfg.max_n}", n_param)
        if best_of is not None:
            if best_of > cfg.max_n:
                raise ServeError(400, f"best_of: {best_of} is more than this server's limit of {cfg.max_n}", "best_of")
            if best_of < n:
                raise ServeError(400, f"best_of ({best_of}) must be ≥ {n_param} ({n})", "best_of")
            if self.reward_model is None:
                raise ServeError(400, "best_of ranks candidates by reward-model score, and this server has no "
                                      "reward model (start it with --reward-model DIR)", "best_of")
        max_new = cfg.default_max_tokens if max_tokens is None else max_tokens
        if max_new > cfg.max_new_tokens:
            raise ServeError(400, f"{max_tokens_param}: {max_new} is more than this server's limit of "
                                  f"{cfg.max_new_tokens}", max_tokens_param)
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if len(stops) > 4:
            raise ServeError(400, f"stop: at most 4 stop strings, got {len(stops)}", "stop")
        if any(not s for s in stops):
            raise ServeError(400, "stop: stop strings must not be empty", "stop")
        return (best_of or n), max_new, stops

    def encode_score_pair(self, messages: list[dict[str, str]], response: str,
                          param: str) -> tuple[list[int], list[int]]:
        if self.reward_model is None:
            raise ServeError(400, "this server has no reward model (start it with --reward-model DIR)", param,
                             "no_reward_model")
        with self._tok_lock:
            prompt_ids = encode_prompt(self.rm_tokenizer, self.with_system(messages))
            response_ids = encode_response(self.rm_tokenizer, response)
        if len(prompt_ids) + len(response_ids) > self.config.max_prompt_tokens + self.config.max_new_tokens:
            raise ServeError(400, f"{param}: prompt + response is {len(prompt_ids) + len(response_ids)} tokens; this "
                                  f"server scores at most {self.config.max_prompt_tokens + self.config.max_new_tokens}",
                             param, "too_long")
        return prompt_ids, response_ids

    # ------------------------------------------------------------------------------ running requests
    async def run_generation(self, jobs: list[GenerationJob]) -> list[list[Candidate]]:
        """Queue the jobs and wait (at most request_timeout_s) for their candidates, in job order."""
        results = await self._submit([Job(job.key, job.samples, job) for job in jobs])
        self.metrics.inc("tether_prompt_tokens_total", sum(len(job.prompt_ids) for job in jobs))
        return results

    async def run_scoring(self, prompt_ids: list[list[int]], response_ids: list[list[int]]) -> list[float]:
        (scores,) = await self._submit([Job(("score",), len(prompt_ids), ScoringJob(prompt_ids, response_ids))])
        return scores

    async def _submit(self, jobs: list[Job]) -> list:
        futures = []
        try:
            for job in jobs:
                futures.append(asyncio.wrap_future(self.scheduler.submit(job)))
        except QueueFull as err:
            for f in futures:
                f.cancel()
            self.metrics.inc("tether_rejected_total", reason="queue_full")
            raise ServeError(503, f"server overloaded: {err}; retry later", code="queue_full") from None
        try:
            return await asyncio.wait_for(asyncio.gather(*futures), self.config.request_timeout_s)
        except asyncio.TimeoutError:
            self.metrics.inc("tether_timeouts_total")
            raise ServeError(504, f"the request was not served within {self.config.request_timeout_s:g} s "
                                  f"({self.scheduler.depth} requests queued); retry later or raise "
                                  f"--request-timeout", code="timeout") from None

    # --------------------------------------------------------------------------- worker-thread side
    def _run_batch(self, jobs: list[Job]) -> None:
        if isinstance(jobs[0].payload, ScoringJob):
            self._run_scoring(jobs)
        else:
            self._run_generation(jobs)

    def _record_batch(self, record: BatchRecord) -> None:
        kind = "score" if record.key == ("score",) else "generate"
        self.metrics.inc("tether_batches_total", kind=kind)
        self.metrics.observe("tether_batch_requests", record.jobs, kind=kind)
        self.metrics.observe("tether_batch_sequences", record.sequences, kind=kind)
        self.metrics.set_max("tether_batch_requests_max", record.jobs, kind=kind)

    def _sample(self, prompts: list[list[int]], max_new_tokens: int, temperature: float,
                top_p: float) -> list[list[int]]:
        """New tokens of each prompt (up to its EOS) from one left-padded `generate_tokens` call."""
        cfg = SamplingConfig(max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                             temperature=temperature if temperature > 0 else 1.0, top_p=top_p)
        return generate_tokens(self.policy, prompts, cfg, self.tokenizer.pad_token_id, self.tokenizer.eos_token_id)

    def _candidate(self, tokens: list[int], job: GenerationJob) -> Candidate:
        tokens, truncated = cut_at_eos(tokens[: job.max_new_tokens], self.tokenizer.eos_token_id)
        with self._tok_lock:
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            cut = min((text.find(s) for s in job.stop if s in text), default=-1)
            response_ids = tokens
            if cut >= 0:
                text = text[:cut]
                response_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        finish = "stop" if cut >= 0 or not truncated else "length"
        return Candidate(text.strip() if job.strip else text, list(response_ids), finish, len(tokens))

    def _run_generation(self, jobs: list[Job]) -> None:
        payloads: list[GenerationJob] = [job.payload for job in jobs]
        first = payloads[0]
        prompts = [p.prompt_ids for p in payloads for _ in range(p.samples)]
        if first.seed is not None:
            torch.manual_seed(first.seed)
        start = time.perf_counter()
        rows = self._sample(prompts, max(p.max_new_tokens for p in payloads), first.temperature, first.top_p)
        self.metrics.inc("tether_generation_seconds_total", time.perf_counter() - start)
        results, offset = [], 0
        for p in payloads:
            results.append([self._candidate(rows[offset + k], p) for k in range(p.samples)])
            offset += p.samples
        self.metrics.inc("tether_generated_tokens_total", sum(c.generated_tokens for cs in results for c in cs))
        scored = [(p, cs) for p, cs in zip(payloads, results) if p.score]
        if scored:
            self._score_candidates(scored)
        for job, candidates in zip(jobs, results):
            job.future.set_result(candidates)

    def _score_candidates(self, scored: list[tuple[GenerationJob, list[Candidate]]]) -> None:
        prompts, responses = [], []
        for job, candidates in scored:
            for c in candidates:
                if self.rm_shares_tokenizer:  # read at an EOS, as the RM was trained: appended if it was cut
                    prompts.append(job.prompt_ids)
                    responses.append(finished_reply(c.response_ids, self.rm_tokenizer.eos_token_id))
                else:
                    with self._tok_lock:
                        ids = encode_response(self.rm_tokenizer, c.text)
                    prompts.append(job.rm_prompt_ids)
                    responses.append(ids)
        scores = self._score(prompts, responses)
        flat = [c for _, candidates in scored for c in candidates]
        for c, s in zip(flat, scores):
            c.score = s

    def _score(self, prompts: list[list[int]], responses: list[list[int]]) -> list[float]:
        from tether.models.scoring import score_sequences

        # a response may be empty (a stop string at its start); the RM then reads the prompt's last token
        scores = score_sequences(self.reward_model, prompts, responses, self.rm_tokenizer.pad_token_id)
        self.metrics.inc("tether_scored_sequences_total", len(scores))
        return scores

    def _run_scoring(self, jobs: list[Job]) -> None:
        prompts = [p for job in jobs for p in job.payload.prompt_ids]
        responses = [r for job in jobs for r in job.payload.response_ids]
        scores = self._score(prompts, responses)
        offset = 0
        for job in jobs:
            n = len(job.payload.prompt_ids)
            job.future.set_result(scores[offset : offset + n])
            offset += n
