"""The serving API's contract: every request and response body as a pydantic model (OpenAPI at /docs).

Requests are validated strictly (JSON `"3"` is not an integer, `true` is not a count), so a wrong type is
a 400 naming the field rather than a silent coercion. tether's own routes (`/generate`, `/v1/score`)
refuse unknown fields (a typo is an error); the OpenAI-compatible routes ignore unknown fields as the
OpenAI clients expect, except the ones listed in `UNSUPPORTED_FIELDS`, which are refused when set.
Limits that depend on the server's settings (longest prompt, largest max_tokens, n, best_of) are
checked by the engine, not here, so the messages can name the configured limit.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "developer"]
FinishReason = Literal["stop", "length"]

_STRICT = ConfigDict(strict=True, extra="forbid")
_OPENAI = ConfigDict(strict=True, extra="ignore")

UNSUPPORTED_FIELDS: dict[str, str] = {
    "stream": "streaming is not supported; send stream=false or leave it out",
    "logprobs": "logprobs are not returned by this server",
    "top_logprobs": "logprobs are not returned by this server",
    "echo": "echo is not supported",
    "suffix": "suffix is not supported",
    "tools": "tool calls are not supported",
    "functions": "function calls are not supported",
    "response_format": "response_format is not supported (plain text only)",
    "logit_bias": "logit_bias is not supported",
    "presence_penalty": "presence_penalty is not supported (leave it out or send 0)",
    "frequency_penalty": "frequency_penalty is not supported (leave it out or send 0)",
}
"""OpenAI request fields tether does not implement: a request that sets one to anything but its neutral
value (absent, null, false, 0, empty) is refused with this message rather than silently ignored."""


# ---------------------------------------------------------------------------------------------- errors
class ErrorDetail(BaseModel):
    message: str = Field(description="What is wrong, naming the field at fault.")
    type: str = Field(description="invalid_request_error | authentication_error | not_found_error | "
                                  "server_error | timeout_error")
    param: str | None = Field(None, description="The request field at fault (dotted path), if any.")
    code: str | None = Field(None, description="A short machine-readable code, e.g. model_not_found.")


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body, on every route (OpenAI's error shape)."""

    error: ErrorDetail


# -------------------------------------------------------------------------------------------- messages
class TextPart(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    role: Role = Field(description="system | user | assistant (developer is treated as system).")
    content: str | list[TextPart] = Field(description="Text, or a list of text parts (joined).")

    def as_dict(self) -> dict[str, str]:
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Prompt tokens (summed over prompts).")
    completion_tokens: int = Field(description="Tokens generated, including best_of candidates not returned.")
    total_tokens: int


# ---------------------------------------------------------------------------------- tether /generate
class GenerateRequest(BaseModel):
    """Best-of-N generation: sample N responses, score each with the reward model, return the best."""

    model_config = _STRICT
    prompt: str | list[ChatMessage] = Field(description="A user message, or a chat as a list of messages.")
    max_new_tokens: int = Field(64, ge=1, description="Longest response in tokens.")
    num_return_sequences: int = Field(1, ge=1, description="N: responses sampled (and scored) for the prompt.")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="Sampling temperature; 0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass (1 = off).")
    seed: int | None = Field(None, description="Seed: the same request and seed give the same responses.")


class GenerateResponse(BaseModel):
    responses: list[str] = Field(description="The N responses, in sampling order.")
    scores: list[float] | None = Field(description="Reward-model score of each response; null without a reward model.")
    best: str | None = Field(description="The response with the highest score; null without a reward model.")
    best_index: int | None = Field(description="Index of `best` in `responses`.")
    finish_reasons: list[FinishReason] = Field(description="stop (EOS) or length (max_new_tokens reached).")
    usage: Usage


# --------------------------------------------------------------------------------- OpenAI-compatible
class _SamplingFields(BaseModel):
    model_config = _OPENAI
    model: str | None = Field(None, description="Served model id (GET /v1/models); null = the served policy.")
    n: int = Field(1, ge=1, description="Choices to return per prompt.")
    best_of: int | None = Field(None, ge=1, description="tether extension: sample best_of ≥ n candidates, "
                                                        "return the n the reward model scores highest.")
    temperature: float = Field(1.0, ge=0.0, le=2.0, description="Sampling temperature; 0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass (1 = off).")
    max_tokens: int | None = Field(None, ge=1, description="Longest completion in tokens (server default if null).")
    stop: str | list[str] | None = Field(None, description="Up to 4 strings; a completion ends before the first.")
    seed: int | None = Field(None, description="Seeded requests are generated in their own batch and are "
                                               "reproducible; unseeded ones are batched with others.")
    stream: Any = Field(None, description="Not supported (must be false or absent).")
    logprobs: Any = Field(None, description="Not supported.")
    presence_penalty: Any = Field(None, description="Not supported (0 or absent).")
    frequency_penalty: Any = Field(None, description="Not supported (0 or absent).")
    logit_bias: Any = Field(None, description="Not supported.")


class ChatCompletionRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation so far.")
    max_completion_tokens: int | None = Field(None, ge=1, description="Alias of max_tokens (newer OpenAI name).")
    top_logprobs: Any = Field(None, description="Not supported.")
    tools: Any = Field(None, description="Not supported.")
    functions: Any = Field(None, description="Not supported.")
    response_format: Any = Field(None, description="Not supported.")


class CompletionRequest(_SamplingFields):
    prompt: str | list[str] = Field(description="Raw text to continue (no chat template), or a list of them.")
    echo: Any = Field(None, description="Not supported.")
    suffix: Any = Field(None, description="Not supported.")


class ChatResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatResponseMessage
    finish_reason: FinishReason
    logprobs: None = None
    score: float | None = Field(None, description="tether extension: reward-model score (with best_of).")


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason
    logprobs: None = None
    score: float | None = Field(None, description="tether extension: reward-model score (with best_of).")


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "tether"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# ------------------------------------------------------------------------------------------ scoring
class ScorePair(BaseModel):
    model_config = _STRICT
    prompt: str | list[ChatMessage] = Field(description="A user message, or a chat as a list of messages.")
    response: str = Field(description="The assistant reply to score (EOS is appended, as in RM training).")


class ScoreRequest(BaseModel):
    """Reward-model scores of (prompt, response) pairs."""

    model_config = _STRICT
    model: str | None = Field(None, description="Ignored except for checking: the served reward model id or null.")
    pairs: list[ScorePair] = Field(min_length=1, description="The pairs to score.")


class ScoreResponse(BaseModel):
    model: str = Field(description="Reward model id.")
    scores: list[float] = Field(description="One score per pair, in request order.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
    reward_model: str | None
    queue_depth: int
