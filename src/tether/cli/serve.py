"""`tether serve`: load a policy (and a reward model) and serve them over HTTP; registered in cli/main.py."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from tether.errors import ConfigError, TetherError


def serve_cmd(
    policy: str = typer.Option(..., help="Policy to serve: embedded name (smollm2-135m-instruct), model dir or HF id."),
    reward_model: Path | None = typer.Option(None, help="Reward model dir (from `tether rm`): best-of-N, /v1/score."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; the default serves this machine only."),
    port: int = typer.Option(8000, help="TCP port."),
    api_key: str | None = typer.Option(None, envvar="TETHER_API_KEY",
                                       help="Require 'Authorization: Bearer KEY' on every route but /health."),
    model_name: str | None = typer.Option(None, help="Id served in /v1/models (default: the policy's dir name)."),
    system_prompt: str | None = typer.Option(None, help="System turn put first in a chat that has none (demo "
                                             "policies were trained with \"You are a helpful assistant.\")."),
    max_batch_size: int = typer.Option(32, help="Most sequences per generate call; 1 = one request at a time."),
    batch_wait_ms: float = typer.Option(10.0, help="How long to wait for more requests to fill a batch."),
    max_new_tokens: int = typer.Option(256, help="Largest max_tokens a request may ask for."),
    max_prompt_tokens: int = typer.Option(1024, help="Longest prompt in tokens."),
    max_n: int = typer.Option(16, help="Largest n / best_of / num_return_sequences."),
    max_queue: int = typer.Option(256, help="Most queued requests; more get 503."),
    request_timeout: float = typer.Option(60.0, help="Seconds before an unserved request gets 504."),
    max_body_bytes: int = typer.Option(1_000_000, help="Largest request body in bytes (413 above)."),
    missing_eos_penalty: float = typer.Option(1.0, help="Subtracted from the RM score of a candidate cut by "
                                              "max_tokens when best_of ranks (as tether bon does); 0 ranks raw."),
    torch_threads: int = typer.Option(0, help="CPU threads for torch (0 = torch's default); 1 is faster on a "
                                             "CPU shared with other jobs."),
    log_level: str = typer.Option("info", help="uvicorn log level: critical | error | warning | info | debug."),
) -> None:
    """Serve a policy: POST /generate (best-of-N by reward), OpenAI-compatible /v1/chat/completions,
    /v1/completions, /v1/models, POST /v1/score, GET /health, /metrics (Prometheus); OpenAPI at /docs."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {port}")
    if reward_model is not None and not reward_model.is_dir():
        raise ConfigError(f"--reward-model {reward_model}: no such dir")
    if torch_threads < 0:
        raise ConfigError(f"--torch-threads must be ≥ 0, got {torch_threads}")
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise TetherError("serving needs the serve extra: pip install 'tether[serve]'") from None
    from tether.serve.engine import Engine, ServeConfig
    from tether.serve.server import run_server

    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    config = ServeConfig(model_name=model_name or "", max_prompt_tokens=max_prompt_tokens,
                         max_new_tokens=max_new_tokens, max_n=max_n, max_batch_size=max_batch_size,
                         batch_wait_ms=batch_wait_ms, max_queue=max_queue, request_timeout_s=request_timeout,
                         max_body_bytes=max_body_bytes, api_key=api_key, system_prompt=system_prompt,
                         missing_eos_penalty=missing_eos_penalty)
    engine = Engine.from_dirs(policy, reward_model, config)
    if not _is_loopback(host) and api_key is None:
        typer.echo(f"warning: serving on {host} without an API key: anyone who can reach this port can use it "
                   "(pass --api-key or set TETHER_API_KEY)", err=True)
    typer.echo(f"serving '{engine.model_name}'" + (f" with reward model '{engine.reward_model_name}'" if
               engine.reward_model is not None else "") + f" on http://{host}:{port} (API docs: /docs)")
    run_server(engine, host, port, log_level)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
