"""multi-objective: two rewards combined as R = w₁·R₁ + w₂·R₂, against either one alone.

Default objectives (programmatic, from the demo task's gold judge, so the measurement is exact):
R₁ = correctness (1 when the answer is right, else 0) and R₂ = brevity (1 − min(words, 30)/30). Three PPO
runs from the SFT policy with the same settings: R₁ only, R₂ only, and 0.7·R₁ + 0.3·R₂. Each final policy
is measured on both objectives on held-out prompts (greedy). The claim to show or refute: the combined
policy beats each single-objective policy on the *other* objective without losing much on its own.

    tether experiment multi-objective --config configs/experiments/multi-objective.yaml
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from tether.errors import ConfigError
from tether.experiments.common import (
    REWARD_FUNCTIONS,
    Evaluator,
    demo_paths,
    ppo_config,
    pyplot,
    read_series,
    result_doc,
    reward_function,
    save_figure,
    train_ppo_once,
)


@dataclass
class MultiObjectiveConfig:
    output_dir: str = "runs/demo/experiments/multi-objective"
    """Where the runs, plots and result.json go."""
    demo_dir: str = "runs/demo"
    """A finished demo run: its sft/ (start and reference) and data/."""
    ppo_config: str = "configs/demo/ppo.yaml"
    """The PPO config every run starts from."""
    objectives: list[str] = field(default_factory=lambda: ["correctness", "brevity"])
    """Two reward names from tether.experiments.common.REWARD_FUNCTIONS."""
    weights: list[float] = field(default_factory=lambda: [0.7, 0.3])
    """w₁, w₂ of the combined reward."""
    ppo_overrides: list[str] = field(default_factory=list)
    """Extra `tether ppo` overrides applied to every run."""
    eval_prompts: int = 100
    """Held-out prompts each final policy is evaluated on (greedy)."""
    kl_prompts: int = 50
    """Held-out prompts for each final policy's KL to SFT."""
    seed: int = 0

    def validate(self) -> None:
        if len(self.objectives) != 2 or len(set(self.objectives)) != 2:
            raise ConfigError(f"objectives: need two different rewards, got {self.objectives}")
        unknown = [o for o in self.objectives if o not in REWARD_FUNCTIONS]
        if unknown:
            raise ConfigError(f"objectives: unknown {', '.join(unknown)}; available: {', '.join(REWARD_FUNCTIONS)}")
        if len(self.weights) != 2 or any(w < 0 or not math.isfinite(w) for w in self.weights) or sum(self.weights) <= 0:
            raise ConfigError(f"weights: need two finite weights >= 0 with a positive sum, got {self.weights}")


def objective_means(rows, samples, names) -> dict[str, float]:
    """Mean of each named reward over evaluated samples (greedy responses, in prompt order)."""
    return {n: math.fsum(REWARD_FUNCTIONS[n](row, s.response, s.truncated) for row, s in zip(rows, samples))
            / len(samples) for n in names}


def run(cfg: MultiObjectiveConfig, log=print) -> dict:
    cfg.validate()
    paths, out = demo_paths(cfg.demo_dir), Path(cfg.output_dir)
    (r1, r2), (w1, w2) = cfg.objectives, cfg.weights
    variants = {f"{r1} only": {r1: 1.0}, f"{r2} only": {r2: 1.0}, f"combined {w1:g}/{w2:g}": {r1: w1, r2: w2}}
    runs = {}
    for i, (label, weights) in enumerate(variants.items()):
        ppo_cfg = ppo_config(cfg.ppo_config, paths, out / f"run-{i}-{'-'.join(weights)}",
                             ["--train.seed", str(cfg.seed), *cfg.ppo_overrides])
        log(f"{label}: R = {' + '.join(f'{w:g}·{n}' for n, w in weights.items())}")
        result = train_ppo_once(ppo_cfg, reward_fn=reward_function(weights), log=log)
        runs[label] = {"weights": weights, "dir": ppo_cfg.output_dir, "train_seconds": result.get("train_seconds"),
                       "curves": read_series(Path(ppo_cfg.output_dir), ("reward/score", "reward/gold",
                                                                         "gen/response_len", "kl/sequence"))}

    log("held-out evaluation")
    evaluate = Evaluator(paths, out / "eval-cache", cfg.eval_prompts, cfg.kl_prompts, cfg.seed, log)
    sft = evaluate("sft")
    sft_obj = objective_means(evaluate.rows, evaluate.evals["sft"].samples, cfg.objectives)
    table = [{"policy": "SFT", r1: sft_obj[r1], r2: sft_obj[r2], "gold": sft["gold_mean"],
              "tokens": sft["mean_tokens"], "KL to SFT": 0.0}]
    for label, r in runs.items():
        key = Path(r["dir"]).name
        r["final"] = evaluate(key, Path(r["dir"]))
        r["objectives"] = objective_means(evaluate.rows, evaluate.evals[key].samples, cfg.objectives)
        table.append({"policy": label, r1: r["objectives"][r1], r2: r["objectives"][r2],
                      "gold": r["final"]["gold_mean"], "tokens": r["final"]["mean_tokens"],
                      "KL to SFT": r["final"]["kl_to_sft"]["kl"]})
    only1, only2, both = (runs[k]["objectives"] for k in variants)
    findings = [
        f"combined vs {r1} only, on {r2}: {both[r2]:.3f} vs {only1[r2]:.3f} "
        f"({'better' if both[r2] > only1[r2] else 'not better'}); on its own {r1}: {both[r1]:.3f} vs {only1[r1]:.3f}.",
        f"combined vs {r2} only, on {r1}: {both[r1]:.3f} vs {only2[r1]:.3f} "
        f"({'better' if both[r1] > only2[r1] else 'not better'}); on its own {r2}: {both[r2]:.3f} vs {only2[r2]:.3f}.",
        f"SFT: {r1} {sft_obj[r1]:.3f}, {r2} {sft_obj[r2]:.3f}.",
    ]
    for line in findings:
        log(f"  {line}")
    return result_doc("multi-objective", f"Multi-objective: {w1:g}·{r1} + {w2:g}·{r2}",
                        {"config": cfg.__dict__, "sft": sft | {"objectives": sft_obj}, "runs": runs},
                        [_plot(runs, sft_obj, cfg.objectives, out)], table, findings)


def _plot(runs: dict, sft_obj: dict, names: list[str], out: Path) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    ax.scatter([sft_obj[names[0]]], [sft_obj[names[1]]], marker="s", color="gray", label="SFT")
    for label, r in runs.items():
        ax.scatter([r["objectives"][names[0]]], [r["objectives"][names[1]]], s=50, label=label)
    ax.set_xlabel(f"{names[0]} (held-out, greedy)")
    ax.set_ylabel(names[1])
    ax.set_title("each policy on both objectives", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1]
    for label, r in runs.items():
        ax.plot(r["curves"]["step"], r["curves"]["reward/score"], marker=".", label=label)
    ax.set_title("training reward on rollouts", fontsize=10)
    ax.set_xlabel("PPO iteration")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out / "multi_objective.png")
