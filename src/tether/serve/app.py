"""The FastAPI app: thin route handlers over an `Engine`; `create_app(engine)` builds it.

Routes (docs/serving.md has the full contract; OpenAPI at /docs):
    POST /generate               best-of-N by reward: {prompt, max_new_tokens, num_return_sequences, temperature}
    POST /v1/chat/completions    OpenAI-compatible chat (n, temperature, top_p, max_tokens, stop, seed, best_of)
    POST /v1/completions         OpenAI-compatible raw-text completions
    GET  /v1/models              the served policy
    POST /v1/score               reward-model scores of (prompt, response) pairs
    GET  /health                 liveness (never needs the API key)
    GET  /metrics                Prometheus text

Every error, on every route, is OpenAI's shape {"error": {"message", "type", "param", "code"}}: bad JSON
and wrong types are 400 naming the field, limits 400/413, a missing/wrong key 401, an unknown model or
route 404, a full queue 503, a timeout 504. Three ASGI middlewares run before any handler, outermost first:
request metrics (every response counted and timed), the API key check, the body size limit.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tether import __version__
from tether.serve import schemas as s
from tether.serve.engine import Candidate, Engine, GenerationJob, ServeError

log = logging.getLogger("tether.serve")

ERROR_RESPONSES = {code: {"model": s.ErrorResponse, "description": text} for code, text in {
    400: "Malformed request or a limit exceeded", 401: "Missing or wrong API key", 404: "Unknown model or route",
    413: "Request body too large", 503: "Queue full", 504: "Not served within the request timeout"}.items()}


def error_body(status: int, message: str, param: str | None = None, code: str | None = None,
               type: str | None = None) -> dict:
    err = ServeError(status, message, param, code, type)
    return {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}


async def _send_json(send, status: int, body: dict, headers: tuple = ()) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": payload})


class BodySizeLimit:
    """413 for a body over `max_bytes` (declared or streamed); the body is read here once and replayed."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > self.max_bytes
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            total += len(message.get("body", b""))
            too_large = too_large or total > self.max_bytes
            if not too_large:
                chunks.append(message.get("body", b""))
            more = message.get("more_body", False)  # an oversize body is drained, not kept, so the client can read
        if too_large:
            size = int(declared) if declared and declared.isdigit() else total
            return await _send_json(send, 413, error_body(413, f"request body is {size} bytes; this server accepts "
                                                               f"at most {self.max_bytes}", code="body_too_large"))
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class ApiKeyAuth:
    """If a key is set: every path but /health needs `Authorization: Bearer <key>` (compared in constant time)."""

    OPEN_PATHS = ("/health",)

    def __init__(self, app, api_key: str | None):
        self.app, self.api_key = app, api_key

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.api_key is None or scope["path"] in self.OPEN_PATHS:
            return await self.app(scope, receive, send)
        auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            return await self.app(scope, receive, send)
        message = ("missing API key: send the header 'Authorization: Bearer <key>'" if not auth else
                   "invalid API key")
        await _send_json(send, 401, error_body(401, message, code="invalid_api_key"),
                         ((b"www-authenticate", b"Bearer"),))


class RequestMetrics:
    """Counts every response by route and status and times it (unknown paths are counted as route 'other').

    Recorded just before the last body chunk goes out, so a client that has its response sees it counted."""

    def __init__(self, app, engine: Engine, routes: set[str]):
        self.app, self.engine, self.routes = app, engine, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status, recorded = time.perf_counter(), 500, False
        route = scope["path"] if scope["path"] in self.routes else "other"

        def record():
            nonlocal recorded
            if not recorded:
                recorded = True
                self.engine.metrics.inc("tether_requests_total", route=route, status=status)
                self.engine.metrics.observe("tether_request_latency_seconds", time.perf_counter() - start, route=route)

        async def send_and_record(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                record()
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            record()


_TAG_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
              "list[str]": "a list of strings", "list[ChatMessage]": "a list of messages",
              "list[TextPart]": "a list of text parts"}
_JSON_TYPES = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
               dict: "an object", type(None): "null"}


def _is_union_tag(part) -> bool:
    """pydantic names the member of a union (str | list[...]) inside an error's location: not a field."""
    return isinstance(part, str) and (part in _TAG_NAMES or "[" in part or part[:1].isupper())


def _validation_message(err: RequestValidationError) -> tuple[str, str | None]:
    """One line naming the bad field (the first one; a count of any others)."""
    errors = err.errors()

    def field_path(e) -> list[str]:
        return [str(x) for x in e.get("loc", ()) if x != "body" and not _is_union_tag(x)]

    first = errors[0]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "")
        return f"request body is not valid JSON ({detail})" if detail else "request body is not valid JSON", None
    if not field_path(first):
        if first.get("type") == "missing":
            return "request body is missing: send a JSON object", None
        got = _JSON_TYPES.get(type(first.get("input")), "something else")
        return f"request body must be a JSON object, got {got}", None
    top = field_path(first)[0]
    same_field = [e for e in errors if field_path(e)[:1] == [top]]
    others = len({field_path(e)[0] for e in errors if field_path(e)} - {top})
    suffix = f" (and {others} more bad field{'s' if others > 1 else ''})" if others else ""
    deepest = max(same_field, key=lambda e: len(field_path(e)))
    path = field_path(deepest)
    union = [e for e in same_field if field_path(e) == path and any(_is_union_tag(x) for x in e.get("loc", ()))]
    if len(union) > 1:  # no member of a union matched at this level: say what is expected
        tags = [next(x for x in e["loc"] if _is_union_tag(x)) for e in union]
        expected = " or ".join(_TAG_NAMES.get(t, t) for t in tags)
        got = _JSON_TYPES.get(type(deepest.get("input")), "something else")
        return f"{'.'.join(path)}: expected {expected}, got {got}{suffix}", ".".join(path)
    msg = str(deepest.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{'.'.join(path)}: {msg}{suffix}", ".".join(path)


def _reject_unsupported(req) -> None:
    for name, why in s.UNSUPPORTED_FIELDS.items():
        value = getattr(req, name, None)
        if value not in (None, False, 0, "", [], {}):
            raise ServeError(400, f"{name}: {why}", name, "unsupported_parameter")


def _messages(messages: list[s.ChatMessage]) -> list[dict[str, str]]:
    return [m.as_dict() for m in messages]


def _prompt_messages(prompt: str | list[s.ChatMessage], param: str) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if not prompt:
        raise ServeError(400, f"{param}: the message list is empty", param)
    return _messages(prompt)


def _top(candidates: list[Candidate], n: int, missing_eos_penalty: float) -> list[Candidate]:
    """The n candidates ranked highest by reward-model score less the missing-EOS penalty (best first; ties keep
    sampling order); unscored: the first n."""
    if candidates and candidates[0].score is not None:
        return sorted(candidates, key=lambda c: -c.rank_score(missing_eos_penalty))[:n]
    return candidates[:n]


def _usage(prompt_tokens: int, candidates: list[Candidate]) -> s.Usage:
    completion = sum(c.generated_tokens for c in candidates)
    return s.Usage(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion)


def create_app(engine: Engine) -> FastAPI:
    """The app serving `engine`; its worker thread starts and stops with the app (lifespan)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = FastAPI(title="tether", version=__version__, lifespan=lifespan, responses=ERROR_RESPONSES,
                  description="RLHF policy serving: best-of-N by reward model, OpenAI-compatible routes, scoring. "
                              "Errors use OpenAI's shape {error: {message, type, param, code}}.")
    app.state.engine = engine
    cfg = engine.config

    @app.exception_handler(ServeError)
    async def serve_error(request, err: ServeError):
        return JSONResponse(error_body(err.status, err.message, err.param, err.code, err.type), status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, err: RequestValidationError):
        message, param = _validation_message(err)
        return JSONResponse(error_body(400, message, param, "invalid_value"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, err: StarletteHTTPException):
        message = {404: f"no route {request.method} {request.url.path}",
                   405: f"method {request.method} is not allowed on {request.url.path}"}.get(err.status_code,
                                                                                             str(err.detail))
        return JSONResponse(error_body(err.status_code, message, code={404: "not_found"}.get(err.status_code)),
                            status_code=err.status_code, headers=getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request, err: Exception):
        log.exception("unhandled error on %s", request.url.path)
        first_line = (str(err).splitlines() or [""])[0]
        return JSONResponse(error_body(500, f"internal error: {type(err).__name__}: {first_line}"), status_code=500)

    @app.get("/health", response_model=s.Health, tags=["server"])
    async def health() -> s.Health:
        """Liveness; never needs the API key."""
        return s.Health(model=engine.model_name, reward_model=engine.reward_model_name or None,
                        queue_depth=engine.scheduler.depth)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["server"])
    async def metrics() -> PlainTextResponse:
        """Prometheus text format: requests, latency, tokens generated, batch sizes, queue depth."""
        engine.metrics.set("tether_queue_depth", engine.scheduler.depth)
        return PlainTextResponse(engine.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", response_model=s.ModelList, tags=["openai"])
    async def list_models() -> s.ModelList:
        return s.ModelList(data=[s.ModelCard(id=engine.model_name, created=engine.created)])

    @app.get("/v1/models/{model_id}", response_model=s.ModelCard, tags=["openai"])
    async def get_model(model_id: str) -> s.ModelCard:
        engine.check_model(model_id, "model_id")
        return s.ModelCard(id=engine.model_name, created=engine.created)

    @app.post("/generate", response_model=s.GenerateResponse, tags=["tether"])
    async def generate(req: s.GenerateRequest) -> s.GenerateResponse:
        """Sample N responses, score each with the reward model, return them with the best."""
        samples, max_new, _ = engine.check_sampling(req.num_return_sequences, None, req.max_new_tokens, None,
                                                    "num_return_sequences", "max_new_tokens")
        prompt_ids, rm_ids = engine.encode_chat(_prompt_messages(req.prompt, "prompt"), "prompt")
        engine.check_prompt_length(prompt_ids, max_new, "prompt")
        job = GenerationJob(prompt_ids, samples, max_new, req.temperature, req.top_p, req.seed,
                            score=engine.reward_model is not None, rm_prompt_ids=rm_ids)
        (candidates,) = await engine.run_generation([job])
        scores = [c.score for c in candidates] if job.score else None
        penalty = cfg.missing_eos_penalty
        best = max(range(len(candidates)), key=lambda i: candidates[i].rank_score(penalty)) if scores else None
        return s.GenerateResponse(responses=[c.text for c in candidates], scores=scores,
                                  best=candidates[best].text if best is not None else None, best_index=best,
                                  finish_reasons=[c.finish_reason for c in candidates],
                                  usage=_usage(len(prompt_ids), candidates))

    @app.post("/v1/chat/completions", response_model=s.ChatCompletionResponse, tags=["openai"])
    async def chat_completions(req: s.ChatCompletionRequest) -> s.ChatCompletionResponse:
        """OpenAI chat completions; `best_of` (tether extension) returns the n best by reward-model score."""
        _reject_unsupported(req)
        engine.check_model(req.model)
        max_tokens = req.max_tokens if req.max_tokens is not None else req.max_completion_tokens
        samples, max_new, stops = engine.check_sampling(
            req.n, req.best_of, max_tokens, req.stop,
            max_tokens_param="max_tokens" if req.max_tokens is not None else "max_completion_tokens")
        prompt_ids, rm_ids = engine.encode_chat(_messages(req.messages), "messages")
        engine.check_prompt_length(prompt_ids, max_new, "messages")
        job = GenerationJob(prompt_ids, samples, max_new, req.temperature, req.top_p, req.seed, stops,
                            score=req.best_of is not None, rm_prompt_ids=rm_ids)
        (candidates,) = await engine.run_generation([job])
        chosen = _top(candidates, req.n, cfg.missing_eos_penalty)
        return s.ChatCompletionResponse(
            id=f"chatcmpl-{uuid.uuid4().hex[:24]}", created=int(time.time()), model=engine.model_name,
            choices=[s.ChatChoice(index=i, message=s.ChatResponseMessage(content=c.text),
                                  finish_reason=c.finish_reason, score=c.score) for i, c in enumerate(chosen)],
            usage=_usage(len(prompt_ids), candidates))

    @app.post("/v1/completions", response_model=s.CompletionResponse, tags=["openai"])
    async def completions(req: s.CompletionRequest) -> s.CompletionResponse:
        """OpenAI text completions of raw prompts (no chat template); choices are prompt-major."""
        _reject_unsupported(req)
        engine.check_model(req.model)
        samples, max_new, stops = engine.check_sampling(req.n, req.best_of, req.max_tokens, req.stop)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not prompts:
            raise ServeError(400, "prompt: the prompt list is empty", "prompt")
        if len(prompts) > cfg.max_prompts:
            raise ServeError(400, f"prompt: {len(prompts)} prompts is more than this server's limit of "
                                  f"{cfg.max_prompts}", "prompt")
        jobs = []
        for i, text in enumerate(prompts):
            param = "prompt" if isinstance(req.prompt, str) else f"prompt.{i}"
            prompt_ids, rm_ids = engine.encode_text(text, param)
            engine.check_prompt_length(prompt_ids, max_new, param)
            jobs.append(GenerationJob(prompt_ids, samples, max_new, req.temperature, req.top_p, req.seed, stops,
                                      strip=False, score=req.best_of is not None, rm_prompt_ids=rm_ids))
        results = await engine.run_generation(jobs)
        chosen = [c for candidates in results for c in _top(candidates, req.n, cfg.missing_eos_penalty)]
        everything = [c for candidates in results for c in candidates]
        return s.CompletionResponse(
            id=f"cmpl-{uuid.uuid4().hex[:24]}", created=int(time.time()), model=engine.model_name,
            choices=[s.CompletionChoice(index=i, text=c.text, finish_reason=c.finish_reason, score=c.score)
                     for i, c in enumerate(chosen)],
            usage=_usage(sum(len(j.prompt_ids) for j in jobs), everything))

    @app.post("/v1/score", response_model=s.ScoreResponse, tags=["tether"])
    async def score(req: s.ScoreRequest) -> s.ScoreResponse:
        """Reward-model score of each (prompt, response) pair."""
        if engine.reward_model is None:
            raise ServeError(400, "this server has no reward model (start it with --reward-model DIR)",
                             code="no_reward_model")
        engine.check_model(req.model, reward=True)
        if len(req.pairs) > cfg.max_score_pairs:
            raise ServeError(400, f"pairs: {len(req.pairs)} pairs is more than this server's limit of "
                                  f"{cfg.max_score_pairs}", "pairs")
        encoded = [engine.encode_score_pair(_prompt_messages(p.prompt, f"pairs.{i}.prompt"), p.response, f"pairs.{i}")
                   for i, p in enumerate(req.pairs)]
        scores = await engine.run_scoring([e[0] for e in encoded], [e[1] for e in encoded])
        return s.ScoreResponse(model=engine.reward_model_name, scores=scores)

    routes = {route.path for route in app.routes}
    app.add_middleware(BodySizeLimit, max_bytes=cfg.max_body_bytes)
    app.add_middleware(ApiKeyAuth, api_key=cfg.api_key)
    app.add_middleware(RequestMetrics, engine=engine, routes=routes)  # added last = outermost
    return app
