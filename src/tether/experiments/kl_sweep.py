"""kl-sweep: PPO against the learned reward model at several KL coefficients β.

What it tests (the seeds' central claim, Ziegler et al. 2019; Gao et al. 2022): with a tiny β the policy
climbs the proxy (the RM) and drifts far from the SFT policy, and the gold score eventually falls (reward
hacking); with a large β the policy barely moves; in between the gold score rises at a bounded KL.

For each β: one PPO run from the SFT policy (the same seed, prompts and settings otherwise), its per-iteration
curves of proxy reward, gold score and KL on the rollouts (temperature 1), and the final policy's held-out
evaluation (greedy, gold judge, proxy, win rate vs SFT, KL to SFT on its own samples).

    tether experiment kl-sweep --config configs/experiments/kl-sweep.yaml
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

from tether.errors import ConfigError
from tether.experiments.common import (
    Evaluator,
    demo_paths,
    plot_curves,
    ppo_config,
    read_series,
    result_doc,
    train_ppo_once,
)


@dataclass
class KLSweepConfig:
    output_dir: str = "runs/demo/experiments/kl-sweep"
    """Where the runs, plots and result.json go."""
    demo_dir: str = "runs/demo"
    """A finished demo run: its sft/ (start and reference), rm/ (the proxy reward) and data/."""
    ppo_config: str = "configs/demo/ppo.yaml"
    """The PPO config every run starts from."""
    betas: list[float] = field(default_factory=lambda: [0.001, 0.02, 0.5])
    """KL coefficients, one PPO run each."""
    ppo_overrides: list[str] = field(default_factory=list)
    """Extra `tether ppo` overrides applied to every run (e.g. [--train.max_steps, "8"])."""
    eval_prompts: int = 100
    """Held-out prompts each final policy is evaluated on (greedy, gold judge)."""
    kl_prompts: int = 50
    """Held-out prompts for each final policy's KL to SFT (its own samples)."""
    seed: int = 0

    def validate(self) -> None:
        if not self.betas or any(b < 0 or not math.isfinite(b) for b in self.betas):
            raise ConfigError(f"betas: need at least one finite β >= 0, got {self.betas}")
        if len(set(self.betas)) != len(self.betas):
            raise ConfigError(f"betas: duplicates in {self.betas}")
        if self.eval_prompts < 1 or self.kl_prompts < 1:
            raise ConfigError("eval_prompts and kl_prompts must be >= 1")


CURVE_KEYS = ("reward/score", "reward/gold", "kl/sequence", "gen/response_len")


def run(cfg: KLSweepConfig, log=print) -> dict:
    cfg.validate()
    paths, out = demo_paths(cfg.demo_dir), Path(cfg.output_dir)
    runs = {}
    for beta in cfg.betas:
        ppo_cfg = ppo_config(cfg.ppo_config, paths, out / f"beta-{beta:g}",
                             ["--ppo.kl_coef", str(beta), "--ppo.adaptive_kl", "false", "--ppo.stop_on_catastrophic_kl",
                              "false", "--train.seed", str(cfg.seed), *cfg.ppo_overrides])
        log(f"β = {beta:g}")
        result = train_ppo_once(ppo_cfg, log=log)
        runs[beta] = {"dir": ppo_cfg.output_dir, "train_seconds": result.get("train_seconds"),
                      "curves": read_series(Path(ppo_cfg.output_dir), CURVE_KEYS)}

    log("held-out evaluation")
    evaluate = Evaluator(paths, out / "eval-cache", cfg.eval_prompts, cfg.kl_prompts, cfg.seed, log)
    sft = evaluate("sft")
    for beta, r in runs.items():
        r["final"] = evaluate(f"beta-{beta:g}", Path(r["dir"]))

    table = [{"β": "SFT", "gold": sft["gold_mean"], "correct": sft["correct_rate"], "proxy": sft["proxy_mean"],
              "KL to SFT": 0.0, "win vs SFT": "—", "tokens": sft["mean_tokens"], "train s": "—"}]
    for beta, r in runs.items():
        f = r["final"]
        table.append({"β": f"{beta:g}", "gold": f["gold_mean"], "correct": f["correct_rate"], "proxy": f["proxy_mean"],
                      "KL to SFT": f["kl_to_sft"]["kl"], "win vs SFT": f["vs_sft"]["win_rate"],
                      "tokens": f["mean_tokens"], "train s": r["train_seconds"]})
    figures = [plot_curves({f"β {b:g}": r for b, r in runs.items()}, {
        "reward/score": "proxy reward (RM) on rollouts", "reward/gold": "gold score on rollouts",
        "kl/sequence": "KL to SFT (nats, rollouts)", "gen/response_len": "response length (tokens)"},
        out / "kl_sweep.png")]
    findings = findings_for(sft, {b: r["final"] for b, r in runs.items()})
    for line in findings:
        log(f"  {line}")
    return result_doc("kl-sweep", "KL sweep: β against proxy reward, gold score and drift",
                        {"config": cfg.__dict__, "sft": sft, "runs": {f"{b:g}": r for b, r in runs.items()}},
                        figures, table, findings)


def findings_for(sft: dict, finals: dict[float, dict]) -> list[str]:
    """The expected pattern, checked claim by claim against the measured final policies (true or not)."""
    betas = sorted(finals)
    low, high = betas[0], betas[-1]
    kl = {b: finals[b]["kl_to_sft"]["kl"] for b in betas}
    gold = {b: finals[b]["gold_mean"] for b in betas}
    proxy = {b: finals[b]["proxy_mean"] for b in betas}
    falls = all(kl[a] >= kl[b] for a, b in itertools.pairwise(betas))
    out = [f"KL to SFT falls as β rises: {'yes' if falls else 'no'} "
           f"({', '.join(f'β {b:g}: {kl[b]:.2f}' for b in betas)} nats)."]
    if len(betas) > 1:
        out.append(f"lowest β {low:g}: proxy {sft['proxy_mean']:.3f} → {proxy[low]:.3f}, gold {sft['gold_mean']:.3f} → "
                   f"{gold[low]:.3f}: " + ("the proxy rose while the gold score fell (reward hacking)."
                                          if proxy[low] > sft["proxy_mean"] and gold[low] < sft["gold_mean"]
                                          else "no hacking seen in this budget."))
        out.append(f"highest β {high:g}: KL {kl[high]:.2f} nats, gold {gold[high] - sft['gold_mean']:+.3f} vs SFT: "
                   + ("little change, as expected." if kl[high] < 1 else "it still moved more than 1 nat."))
    best = max(betas, key=lambda b: gold[b])
    above = gold[best] > sft["gold_mean"]
    out.append(f"best gold score among the runs at β {best:g}: {gold[best]:.3f}, {'above' if above else 'below'} SFT's "
               f"{sft['gold_mean']:.3f} (win rate {finals[best]['vs_sft']['win_rate']:.1%} at KL {kl[best]:.2f}); "
               + ("a middle β gave the best gold score." if len(betas) > 2 and best not in (low, high) else
                  "no middle β gave a better gold score than the extremes." if len(betas) > 2 else ""))
    return out
