"""length-hack: PPO on a deliberately flawed reward (longer is better), with and without the KL penalty.

The reward is `length` (words / 20): it never checks the answer. Without the tether (β = 0) the policy is
free to chase it — longer answers, padding, repetition — and the gold judge (which wants correct and
concise answers) should fall. With the KL penalty the policy has to pay for every nat it moves away from
the SFT policy, so length grows less and the gold score should suffer less.

    tether experiment length-hack --config configs/experiments/length-hack.yaml
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tether.errors import ConfigError
from tether.experiments.common import (
    REWARD_FUNCTIONS,
    Evaluator,
    demo_paths,
    plot_curves,
    ppo_config,
    read_series,
    result_doc,
    reward_function,
    train_ppo_once,
)


@dataclass
class LengthHackConfig:
    output_dir: str = "runs/demo/experiments/length-hack"
    """Where the runs, plots and result.json go."""
    demo_dir: str = "runs/demo"
    """A finished demo run: its sft/ (start and reference) and data/."""
    ppo_config: str = "configs/demo/ppo.yaml"
    """The PPO config both runs start from."""
    reward: str = "length"
    """The flawed reward (a name from tether.experiments.common.REWARD_FUNCTIONS)."""
    kl_coef: float = 0.1
    """β of the tethered run (the other run has β = 0)."""
    ppo_overrides: list[str] = field(default_factory=list)
    """Extra `tether ppo` overrides applied to both runs."""
    eval_prompts: int = 100
    """Held-out prompts each final policy is evaluated on (greedy, gold judge)."""
    kl_prompts: int = 50
    """Held-out prompts for each final policy's KL to SFT."""
    seed: int = 0

    def validate(self) -> None:
        if self.reward not in REWARD_FUNCTIONS:
            raise ConfigError(f"reward: unknown '{self.reward}'; available: {', '.join(REWARD_FUNCTIONS)}")
        if self.kl_coef <= 0:
            raise ConfigError(f"kl_coef must be > 0 (the untethered run is the β = 0 one), got {self.kl_coef}")


CURVE_KEYS = ("reward/score", "reward/gold", "gen/response_len", "kl/sequence", "gen/distinct_2")


def run(cfg: LengthHackConfig, log=print) -> dict:
    cfg.validate()
    paths, out = demo_paths(cfg.demo_dir), Path(cfg.output_dir)
    reward_fn = reward_function({cfg.reward: 1.0})
    runs = {}
    for label, beta in (("no KL", 0.0), ("with KL", cfg.kl_coef)):
        ppo_cfg = ppo_config(cfg.ppo_config, paths, out / ("beta-0" if beta == 0 else f"beta-{beta:g}"),
                             ["--ppo.kl_coef", str(beta), "--ppo.adaptive_kl", "false",
                              "--ppo.stop_on_catastrophic_kl", "false", "--train.seed", str(cfg.seed),
                              *cfg.ppo_overrides])
        log(f"{label} (β = {beta:g}), reward '{cfg.reward}'")
        result = train_ppo_once(ppo_cfg, reward_fn=reward_fn, log=log)
        runs[label] = {"beta": beta, "dir": ppo_cfg.output_dir, "train_seconds": result.get("train_seconds"),
                       "curves": read_series(Path(ppo_cfg.output_dir), CURVE_KEYS)}

    log("held-out evaluation")
    evaluate = Evaluator(paths, out / "eval-cache", cfg.eval_prompts, cfg.kl_prompts, cfg.seed, log)
    sft = evaluate("sft")
    for r in runs.values():
        r["final"] = evaluate(Path(r["dir"]).name, Path(r["dir"]))

    def row(name, f, kl):
        return {"policy": name, "tokens": f["mean_tokens"], "repetition": f["repetition"],
                "distinct-2": f["distinct_2"], "EOS": f["eos_rate"], "gold": f["gold_mean"],
                "correct": f["correct_rate"], "KL to SFT": kl}

    table = [row("SFT", sft, 0.0)] + [row(f"{label} (β {r['beta']:g})", r["final"], r["final"]["kl_to_sft"]["kl"])
                                      for label, r in runs.items()]
    free, tethered = runs["no KL"]["final"], runs["with KL"]["final"]
    findings = [
        f"response length (greedy, held-out): SFT {sft['mean_tokens']:.1f} tokens, no KL {free['mean_tokens']:.1f}, "
        f"with KL {tethered['mean_tokens']:.1f}.",
        f"gold score: SFT {sft['gold_mean']:.3f}, no KL {free['gold_mean']:.3f}, with KL {tethered['gold_mean']:.3f}; "
        + ("the untethered policy lost more gold score." if free["gold_mean"] < tethered["gold_mean"]
           else "the KL penalty did not protect the gold score in this budget."),
        f"repetition (share of repeated 4-grams): SFT {sft['repetition']:.3f}, no KL {free['repetition']:.3f}, "
        f"with KL {tethered['repetition']:.3f}.",
        f"KL to SFT: no KL {free['kl_to_sft']['kl']:.2f} nats, with KL {tethered['kl_to_sft']['kl']:.2f} nats.",
    ]
    for line in findings:
        log(f"  {line}")
    return result_doc("length-hack", "Length hack: a flawed reward with and without the KL tether",
                        {"config": cfg.__dict__, "sft": sft, "runs": runs}, [plot_curves(
        {f"{label} (β {r['beta']:g})": r for label, r in runs.items()},
        {"reward/score": "flawed reward (length)", "reward/gold": "gold score", "gen/response_len": "tokens",
         "kl/sequence": "KL to SFT (nats)", "gen/distinct_2": "distinct-2 of samples"}, out / "length_hack.png")],
                        table, findings)
