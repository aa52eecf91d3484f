"""`tether ppo`: PPO (or RLOO / GRPO) against a reward model with a KL tether; a thin call into
`tether.train.ppo.train`."""

from __future__ import annotations

from pathlib import Path

import typer


def ppo_cmd(ctx: typer.Context, config: Path | None = typer.Option(None, help="YAML config."),
            advantage_estimator: str | None = typer.Option(None, help="gae | rloo | grpo (overrides the config)."),
            reward: str | None = typer.Option(None, help="rm | gold (overrides the config).")) -> None:
    """RLHF stage 3: PPO with a KL tether to the reference (GAE + value model, or RLOO / GRPO).
    Fields: `tether config ppo`; override any with --section.field VALUE."""
    from tether.runtime.config import load_config
    from tether.train.ppo import PPOConfig, train

    overrides = list(ctx.args)
    overrides += ["--advantage_estimator", advantage_estimator] if advantage_estimator else []
    overrides += ["--reward", reward] if reward else []
    cfg = load_config(PPOConfig, str(config) if config else None, overrides)
    result = train(cfg)
    m = result.metrics
    shown = ", ".join(f"{name} {m[name]:.3f}" for name in ("reward/score", "reward/gold", "kl/sequence",
                                                            "gen/response_len") if name in m)
    typer.echo(f"ppo ({cfg.advantage_estimator}): {result.steps} iterations → {result.output_dir}; last: {shown}")
