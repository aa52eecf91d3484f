"""`tether bon`: best-of-N sampling against a reward model (or the gold judge), its analytic KL, the chosen
responses as an SFT dataset, and its gold evaluation vs the policy's greedy responses."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from tether.errors import TetherError


def bon_cmd(policy: str = typer.Option(..., help="Policy that samples: model dir, embedded name or HF id."),
            reward_model: Path | None = typer.Option(None, help="Reward model dir (from `tether rm`); needed unless "
                                                                "--scorer gold."),
            prompts: Path = typer.Option(..., help="Prompt file (prompt rows; demo-task meta enables the gold eval)."),
            n: int = typer.Option(16, help="Responses sampled per prompt (N)."),
            out: Path = typer.Option(..., help="Output dir: candidates.jsonl, sft.jsonl, result.json, eval.json."),
            scorer: str = typer.Option("rm", help="rm (the reward model) | gold (oracle: the demo's gold judge)."),
            baseline: str = typer.Option("policy", help="Greedy policy the chosen responses are compared with "
                                                        "(gold judge): 'policy' (= --policy), another, or 'none'."),
            limit: int = typer.Option(0, help="Use the first N prompts (0 = all)."),
            temperature: float = typer.Option(1.0, help="Sampling temperature. The analytic KL is to the policy "
                                                        "at this temperature; at T ≠ 1 the KL to the policy itself "
                                                        "is estimated too (kl_to_policy). The demo's pipeline "
                                                        "samples at 0.5 (docs/best-of-n.md)."),
            max_new_tokens: int = typer.Option(64),
            batch_size: int = typer.Option(128, help="Sequences per generate call."),
            missing_eos_penalty: float = typer.Option(1.0, help="Subtracted from the RM score of responses cut at "
                                                                  "max-new-tokens (no EOS); 0 = off."),
            kl_coef: float = typer.Option(0.0, help="β of the KL-regularised pick: maximise RM score + β·log π(y|x) "
                                                    "(after Jinnai et al. 2024); 0 = plain best-of-N."),
            min_score: float | None = typer.Option(None, help="Export to sft.jsonl only chosen responses scoring at "
                                                              "least this."),
            seed: int = typer.Option(0)) -> None:
    """Best-of-N: sample N responses per prompt, keep the reward model's favourite; report KL = log N − (N−1)/N."""
    if n < 1:
        raise TetherError(f"--n must be >= 1, got {n}")
    if scorer not in ("rm", "gold"):
        raise TetherError(f"--scorer must be 'rm' or 'gold', got {scorer!r}")
    if scorer == "rm" and reward_model is None:
        raise TetherError("--scorer rm needs --reward-model DIR")
    if not (math.isfinite(kl_coef) and kl_coef >= 0):
        raise TetherError(f"--kl-coef must be a finite number >= 0, got {kl_coef}")
    if kl_coef and scorer != "rm":
        raise TetherError("--kl-coef regularises the reward model's pick; --scorer gold takes none")
    if reward_model is not None and not reward_model.is_dir():
        raise TetherError(f"--reward-model {reward_model}: no such directory")
    from tether.data.validate import load_records
    from tether.eval.bon_policy import run_best_of_n
    from tether.sampling.generate import SamplingConfig

    rows, _ = load_records(prompts, "prompt")
    rows = rows[:limit] if limit else rows
    sampling = SamplingConfig(do_sample=True, temperature=temperature, max_new_tokens=max_new_tokens,
                              batch_size=batch_size)
    s = run_best_of_n(policy, str(reward_model) if reward_model else None, rows, n, out, scorer=scorer,
                      baseline=None if baseline == "none" else baseline, sampling=sampling,
                      missing_eos_penalty=missing_eos_penalty, min_score=min_score, seed=seed, kl_coef=kl_coef,
                      log=typer.echo)
    if "kl_to_policy" in s:
        lo, hi = s["kl_to_policy_ci"]
        typer.echo(f"best-of-{s['n']} on {s['prompts']} prompts (scorer {s['scorer']}): KL to the policy at "
                   f"T {temperature:g} ≤ log N − (N−1)/N = {s['kl_analytic']:.3f} nats; to the policy itself ≤ "
                   f"{s['kl_to_policy']:.3f} (estimated, 95% CI {lo:.3f}–{hi:.3f})")
    else:
        typer.echo(f"best-of-{s['n']} on {s['prompts']} prompts (scorer {s['scorer']}): KL to the policy "
                   f"log N − (N−1)/N = {s['kl_analytic']:.3f} nats")
    label = "reward-model score:" if s["scorer"] == "rm" else "gold (selection):  "
    typer.echo(f"  {label} one sample {s['proxy_before']:+.3f} → best of {s['n']} {s['proxy_after']:+.3f}")
    if "policy_logprob_before" in s:
        typer.echo(f"  log π(y|x):         one sample {s['policy_logprob_before']:+.2f} → the pick "
                   f"{s['policy_logprob_after']:+.2f} (selection: score + {kl_coef:g}·log π)")
    if "gold_before" in s:
        typer.echo(f"  gold score:         one sample {s['gold_before']:+.3f} → best of {s['n']} "
                   f"{s['gold_after']:+.3f}")
    if "vs_baseline" in s:
        c = s["vs_baseline"]
        typer.echo(f"  win rate vs {s['baseline_spec']} (greedy), gold judge: {c['win_rate']:.1%} "
                   f"(95% CI {c['ci_low']:.1%}–{c['ci_high']:.1%}; {c['wins']}W/{c['ties']}T/{c['losses']}L); "
                   f"gold {s['eval']['gold_mean']:.3f} vs {s['baseline_eval']['gold_mean']:.3f}")
    typer.echo(f"  sft.jsonl: {s['sft_examples']} chosen responses (dropped: "
               + ", ".join(f"{k} {v}" for k, v in s["sft_dropped"].items()) + f") → {out}")
