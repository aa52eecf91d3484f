"""PPO's monitoring, step (10) of train/ppo.py: rollout metrics, the sample table, NaN/inf checks, the KL
health verdict (docs/ppo.md, "Metrics")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from tether.data.gold_judge import gold_reward
from tether.data.records import prompt_text
from tether.errors import TrainingError
from tether.eval.metrics import distinct_n
from tether.losses.ppo import explained_variance
from tether.ops import masked_mean, masked_sum
from tether.rl.kl import kl_health
from tether.train.loop import check_finite

if TYPE_CHECKING:
    from tether.train.ppo import Rollout


def rollout_metrics(rollout: Rollout, score, kl, rewards, advantages, returns, beta: float) -> dict:
    """What the rollout says before any update: reward, KL, generation and value statistics."""
    mask = rollout.response_mask
    lengths = mask.sum(1).float()  # (N,)
    kl_seq = masked_sum(kl, mask, dim=1)  # (N,)
    m = {
        "reward/score": float(rollout.raw_score.mean()),
        "reward/score_std": float(rollout.raw_score.std()) if len(score) > 1 else 0.0,
        "reward/score_penalised": float(score.mean()),
        "reward/kl_penalty": float(-beta * kl_seq.mean()),
        "reward/shaped": float(masked_sum(rewards, mask, dim=1).mean()),
        "kl/sequence": float(kl_seq.mean()),
        "kl/per_token": float(masked_mean(kl, mask)),
        "kl/beta": beta,
        "policy/entropy": float(masked_mean(rollout.entropy, mask)),
        "gen/response_len": float(lengths.mean()),
        "gen/eos_rate": float(rollout.has_eos.float().mean()),
        "gen/distinct_1": distinct_n(rollout.texts, 1),
        "gen/distinct_2": distinct_n(rollout.texts, 2),
        "advantages/mean": float(masked_mean(advantages, mask)),
        "advantages/std": float(masked_mean((advantages - masked_mean(advantages, mask)).square(), mask).sqrt()),
    }
    if all("family" in r.meta for r in rollout.rows):  # demo-task prompts: how the gold judge sees the samples
        m["reward/gold"] = sum(gold_reward(rollout.rows, rollout.texts, (~rollout.has_eos).tolist())) / len(score)
    if rollout.values is not None:
        m["value/mean"] = float(masked_mean(rollout.values, mask))
        m["value/explained_variance"] = float(explained_variance(rollout.values, returns, mask))
        m["value/returns_mean"] = float(masked_mean(returns, mask))
    return m


def write_samples(path: Path, step: int, rollout: Rollout, score, kl, show: int = 4) -> None:
    """Append the rollout to samples.jsonl and print a table of its first `show` samples."""
    from rich.console import Console
    from rich.table import Table

    kl_seq = masked_sum(kl, rollout.response_mask, dim=1)  # (N,)
    with path.open("a") as f:
        for i, row in enumerate(rollout.rows):
            f.write(json.dumps({"step": step, "prompt": prompt_text(row.prompt), "response": rollout.texts[i],
                                "score": float(score[i]), "kl": float(kl_seq[i]),
                                "eos": bool(rollout.has_eos[i])}) + "\n")
    table = Table(title=f"ppo samples, step {step}")
    for col in ("prompt", "response", "score", "KL"):
        table.add_column(col)
    for i in range(min(show, len(rollout.rows))):
        table.add_row(prompt_text(rollout.rows[i].prompt)[:60], rollout.texts[i][:100] + ("" if rollout.has_eos[i]
                      else " [no EOS]"), f"{float(score[i]):+.3f}", f"{float(kl_seq[i]):.2f}")
    Console().print(table)


def check_finite_tensors(step: int, mask: torch.Tensor, **tensors: torch.Tensor | None) -> None:
    """Stop naming the step and the first quantity with a nan/inf at a real token (or row)."""
    for name, t in tensors.items():
        if t is None:
            continue
        kept = t[mask] if t.shape == mask.shape else t  # (n,)
        bad = kept[~torch.isfinite(kept)]
        if len(bad):
            check_finite(step, **{name: float(bad[0])})



def report_kl_health(accelerator, step: int, kl: float, previous, stop_on_catastrophic: bool):
    """Print the KL rule-of-thumb verdict when it changes (and every warning); stop on a catastrophic KL."""
    health = kl_health(kl)
    if health.stop and stop_on_catastrophic:
        raise TrainingError(f"step {step}: kl/sequence is {kl:.3g}: {health.message}; stopping (the last good "
                            "checkpoint is kept; set ppo.stop_on_catastrophic_kl false to continue)")
    if health.warn or previous is None or health.verdict != previous.verdict:
        accelerator.print(f"ppo step {step}: {'WARNING: ' if health.warn else ''}{health.message}")
    return health


def trainable_norm(model) -> float:
    """L2 norm of the trainable parameters (a non-finite value means the last update diverged)."""
    with torch.no_grad():
        norms = [p.detach().float().norm() for p in model.parameters() if p.requires_grad]
        return float(torch.stack(norms).norm()) if norms else 0.0
