"""overoptimization: gold and proxy reward against d = √KL, for best-of-N and for PPO (Gao et al. 2022).

Best-of-N: N samples per held-out prompt from the SFT policy (temperature 1), every one scored by the
learned RM (the proxy; minus the missing-EOS penalty for a response cut at max_new_tokens, as in PPO) and
the gold judge. For each k = 1…N the expected proxy and gold score of best-of-k
(the unbiased estimate over k-subsets of the N samples, `expected_best_of_k`) are plotted against
d = √KL(best-of-k ‖ SFT), with the analytic KL log k − (k − 1)/k, and the gains over k = 1 are fitted with
Gao et al.'s best-of-N form R(d) = d(α − βd).

PPO: the policy at every checkpoint of a PPO run (one trained here at a small β, saving every
`save_steps`, or the listed runs' kept checkpoints) samples `ppo_samples` responses (temperature 1) on the
same held-out prompts; their mean proxy and gold scores are plotted against d = √KL(π ‖ π_SFT), the k1
estimate on those samples, as gains over the SFT policy (the best-of-N k = 1 point, d = 0), and fitted with
the RL form R(d) = d(α − β log d). The same prompts and sampling seed for every checkpoint, so the curve
shows the policy changing, not the prompts. The per-iteration rollout statistics (a new batch of prompts
each iteration) are kept beside it in result.json as `rollout_points`.

    tether experiment overoptimization --config configs/experiments/overoptimization.yaml
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from tether.errors import ConfigError
from tether.eval.metrics import GaoFit, fit_gao, gao_curve
from tether.experiments.common import (
    demo_paths,
    load_demo_models,
    ppo_config,
    pyplot,
    read_series,
    result_doc,
    save_figure,
    train_ppo_once,
)


@dataclass
class OveroptimizationConfig:
    output_dir: str = "runs/demo/experiments/overoptimization"
    """Where the samples, runs, plots and result.json go."""
    demo_dir: str = "runs/demo"
    """A finished demo run: its sft/ (the base policy), rm/ (the proxy) and data/."""
    n: int = 64
    """Samples per prompt for best-of-N (the curve covers k = 1…n)."""
    prompts: int = 32
    """Held-out prompts best-of-N samples on."""
    max_new_tokens: int = 64
    """Longest sampled response."""
    missing_eos_penalty: float = 1.0
    """Subtracted from the RM score of a response cut at max_new_tokens, as PPO does: the RM reads it as if it
    ended there (EOS appended), and a cut answer is usually an incomplete one."""
    ppo_runs: list[str] = field(default_factory=list)
    """PPO run dirs for the RL curve (their kept checkpoints are evaluated); empty: train one here from
    ppo_config at ppo_kl_coef."""
    ppo_samples: int = 4
    """Temperature-1 samples per held-out prompt for each PPO checkpoint's proxy, gold and KL."""
    ppo_config: str = "configs/demo/ppo.yaml"
    """Config of the PPO run trained here when ppo_runs is empty."""
    ppo_kl_coef: float = 0.01
    """β of that run (small, so the policy travels far enough to over-optimise)."""
    ppo_overrides: list[str] = field(default_factory=list)
    """Extra `tether ppo` overrides for that run."""
    seed: int = 0

    def validate(self) -> None:
        if self.n < 4 or self.prompts < 1 or self.ppo_samples < 1:
            raise ConfigError(f"n must be >= 4, prompts and ppo_samples >= 1, got n {self.n}, prompts "
                              f"{self.prompts}, ppo_samples {self.ppo_samples}")
        for run in self.ppo_runs:
            if not (Path(run) / "metrics.jsonl").is_file() or not (Path(run) / "config.yaml").is_file():
                raise ConfigError(f"ppo_runs: {run} has no metrics.jsonl and config.yaml (not a PPO run dir)")


def bon_curves(scores: list[list[float]], gold: list[list[float]]) -> list[dict]:
    """For k = 1…N: d = √KL(best-of-k), expected proxy and gold score of best-of-k (select by proxy)."""
    from tether.sampling.best_of_n import best_of_n_kl, expected_best_of_k

    n = min(len(s) for s in scores)
    return [{"k": k, "d": math.sqrt(best_of_n_kl(k)),
             "proxy": math.fsum(expected_best_of_k(s, s, k) for s in scores) / len(scores),
             "gold": math.fsum(expected_best_of_k(s, g, k) for s, g in zip(scores, gold)) / len(scores)}
            for k in range(1, n + 1)]


def rollout_points(run_dir: Path) -> list[dict]:
    """Per iteration: d = √max(KL, 0) of the rollouts, and the proxy and gold gains over iteration 1."""
    s = read_series(run_dir, ("reward/score", "reward/gold", "kl/sequence"))
    proxy0, gold0 = s["reward/score"][0], s["reward/gold"][0]
    return [{"step": step, "d": math.sqrt(max(kl, 0.0)), "proxy": p - proxy0, "gold": g - gold0}
            for step, p, g, kl in zip(s["step"], s["reward/score"], s["reward/gold"], s["kl/sequence"])]


def _fit(ds, ys, form) -> dict | None:
    try:
        return fit_gao(ds, ys, form)._asdict()
    except ValueError:
        return None


def _held_out_rows(cfg: OveroptimizationConfig, paths: dict[str, Path]):
    """The first `prompts` held-out prompts after interleaving the families (so they span them)."""
    from tether.data.records import interleave_by
    from tether.data.validate import load_records

    return interleave_by(load_records(paths["data"] / "eval_prompts.jsonl", "prompt")[0])[: cfg.prompts]


def checkpoint_points(cfg: OveroptimizationConfig, paths: dict[str, Path], run_dir: Path, rows, base: dict,
                      cache: Path, log) -> list[dict]:
    """The SFT policy (step 0, d = 0) and the policy at every checkpoint PPO run `run_dir` kept: `ppo_samples`
    temperature-1 samples per prompt of `rows` (the same seed for every checkpoint), their mean proxy (RM
    score minus the missing-EOS penalty, as best-of-N selects) and gold score as gains over `base` (the SFT
    policy's mean sample, the best-of-N k = 1 point), and d = √max(KL, 0) from the k1 estimate of
    KL(π ‖ π_SFT) on the same samples. Each checkpoint's figures are cached in `cache`, keyed on its weights,
    the RM's, the prompts and the sampling settings."""
    from tether.data.records import prompt_text
    from tether.eval.policy_cache import policy_fingerprint
    from tether.runtime.checkpoint import checkpoint_dirs
    from tether.runtime.provenance import same_record

    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    setting = {"prompts": [prompt_text(r.prompt) for r in rows], "samples": cfg.ppo_samples, "seed": cfg.seed,
               "max_new_tokens": cfg.max_new_tokens, "missing_eos_penalty": cfg.missing_eos_penalty,
               "rm": policy_fingerprint(str(paths["rm"]))}
    points = [{"step": 0, "d": 0.0, "proxy": 0.0, "gold": 0.0, "kl": 0.0}]
    models = None
    for ckpt in checkpoint_dirs(run_dir):
        key = json.loads(json.dumps(setting | {"weights": policy_fingerprint(str(ckpt))}))
        entry = cached.get(str(ckpt))
        if entry is None or not same_record(entry["key"], key):
            models = models or _checkpoint_models(paths, run_dir)
            log(f"  evaluating {ckpt}: {cfg.ppo_samples} samples × {len(rows)} held-out prompts")
            entry = {"key": key, **_sample_and_score(cfg, models, ckpt, rows)}
            cached[str(ckpt)] = entry
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(cached))
        points.append({"step": int(ckpt.name.split("-")[1]), "d": math.sqrt(max(entry["kl"]["kl"], 0.0)),
                       "proxy": entry["proxy"] - base["proxy"], "gold": entry["gold"] - base["gold"],
                       "kl": entry["kl"]["kl"], "kl_ci": [entry["kl"]["kl_ci_low"], entry["kl"]["kl_ci_high"]]})
    return points


def _checkpoint_models(paths: dict[str, Path], run_dir: Path) -> dict:
    """`load_demo_models` plus the PPO run's config (to rebuild each checkpoint's policy)."""
    from tether.runtime.config import load_config
    from tether.train.ppo import PPOConfig

    return load_demo_models(paths) | {"run_config": load_config(PPOConfig, str(run_dir / "config.yaml"), [])}


def _sample_and_score(cfg: OveroptimizationConfig, models: dict, ckpt: Path, rows) -> dict:
    """Mean proxy and gold score and the KL to SFT of `ppo_samples` samples per prompt from a checkpoint's
    policy, scored exactly as the best-of-N candidates are (`best_of_n`; its selection is not used)."""
    from tether.eval.evaluate import kl_of_generations
    from tether.sampling.best_of_n import best_of_n
    from tether.sampling.generate import SamplingConfig
    from tether.train.ppo import policy_from_checkpoint

    tokenizer = models["tokenizer"]
    policy = policy_from_checkpoint(models["run_config"], ckpt, tokenizer)
    sampling = SamplingConfig(do_sample=True, temperature=1.0, max_new_tokens=cfg.max_new_tokens)
    result = best_of_n(policy, tokenizer, rows, cfg.ppo_samples, sampling, scorer="rm", reward_model=models["rm"],
                       rm_tokenizer=models["rm_tokenizer"], missing_eos_penalty=cfg.missing_eos_penalty,
                       seed=cfg.seed)
    flat = [g for gens in result.candidates for g in gens]
    proxy = [v for row in result.scores for v in row]  # RM score minus the missing-EOS penalty
    gold = [v for row in result.gold for v in row]
    return {"proxy": math.fsum(proxy) / len(proxy), "gold": math.fsum(gold) / len(gold),
            "kl": kl_of_generations(policy, models["sft"], tokenizer, flat),
            "truncated": sum(g.truncated for g in flat), "samples": len(flat)}


def _sample_bon(cfg: OveroptimizationConfig, paths: dict[str, Path], rows, cache: Path, log) -> dict:
    from tether.data.records import prompt_text

    wanted = [prompt_text(r.prompt) for r in rows]  # held-out prompts spanning the families
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("missing_eos_penalty") == cfg.missing_eos_penalty and data.get("prompts") == wanted \
                and len(data["scores"][0]) == cfg.n:
            log(f"  reusing {cache}")
            return data
    from tether.models.loading import freeze, load_causal_lm, load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel
    from tether.sampling.best_of_n import best_of_n
    from tether.sampling.generate import SamplingConfig

    log(f"  best-of-{cfg.n}: sampling {cfg.n} responses for {len(rows)} held-out prompts, scoring with RM and gold")
    tokenizer = load_tokenizer(str(paths["sft"]))
    policy = freeze(load_causal_lm(str(paths["sft"]), tokenizer))
    rm = freeze(ScalarHeadModel.from_pretrained(paths["rm"]))
    result = best_of_n(policy, tokenizer, rows, cfg.n,
                       SamplingConfig(do_sample=True, temperature=1.0, max_new_tokens=cfg.max_new_tokens),
                       scorer="rm", reward_model=rm, rm_tokenizer=load_tokenizer(str(paths["rm"])),
                       missing_eos_penalty=cfg.missing_eos_penalty, seed=cfg.seed)
    data = {"scores": result.scores, "gold": result.gold, "missing_eos_penalty": cfg.missing_eos_penalty,
            "truncated": [[g.truncated for g in gens] for gens in result.candidates],
            "lengths": [[len(g.response_ids) for g in gens] for gens in result.candidates],
            "prompts": wanted,
            "texts": [[g.text for g in gens] for gens in result.candidates]}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(data))
    return data


def run(cfg: OveroptimizationConfig, log=print) -> dict:
    cfg.validate()
    paths, out = demo_paths(cfg.demo_dir), Path(cfg.output_dir)

    rows = _held_out_rows(cfg, paths)
    log("best-of-N")
    samples = _sample_bon(cfg, paths, rows, out / "bon_samples.json", log)
    curve = bon_curves(samples["scores"], samples["gold"])
    base = curve[0]
    gains = {key: [c[key] - base[key] for c in curve] for key in ("proxy", "gold")}
    bon_fit = {key: _fit([c["d"] for c in curve], gains[key], "bon") for key in ("proxy", "gold")}

    log("PPO")
    run_dirs = [Path(r) for r in cfg.ppo_runs]
    if not run_dirs:
        ppo_cfg = ppo_config(cfg.ppo_config, paths, out / f"ppo-beta-{cfg.ppo_kl_coef:g}",
                             ["--ppo.kl_coef", str(cfg.ppo_kl_coef), "--ppo.adaptive_kl", "false",
                              "--ppo.stop_on_catastrophic_kl", "false", "--train.seed", str(cfg.seed),
                              *cfg.ppo_overrides])
        train_ppo_once(ppo_cfg, log=log)
        run_dirs = [Path(ppo_cfg.output_dir)]
    rl = {}
    for d in run_dirs:
        pts = checkpoint_points(cfg, paths, d, rows, base, out / "ppo_checkpoints.json", log)
        rl[str(d)] = {"points": pts, "rollout_points": rollout_points(d),
                      "fit": {key: _fit([p["d"] for p in pts], [p[key] for p in pts], "rl")
                              for key in ("proxy", "gold")}}

    table = [{"curve": "best-of-N", "target": key, "α": f["alpha"], "β": f["beta"], "R²": f["r2"], "points": f["n"]}
             for key, f in bon_fit.items() if f]
    table += [{"curve": f"PPO {Path(name).name}", "target": key, "α": f["alpha"], "β": f["beta"], "R²": f["r2"],
               "points": f["n"]} for name, r in rl.items() for key, f in r["fit"].items() if f]
    picks = [max(range(len(s)), key=lambda i: s[i]) for s in samples["scores"]]
    cut = sum(t[i] for t, i in zip(samples["truncated"], picks))
    examples = [{"prompt": p, "best_of_n": texts[i], "rm": s[i], "gold": g[i]} for p, texts, s, g, i in
                zip(samples["prompts"], samples["texts"], samples["scores"], samples["gold"], picks)][:6]
    peak = max(curve, key=lambda c: c["gold"])
    last = curve[-1]
    findings = [
        f"best-of-N over {len(samples['scores'])} prompts: proxy {base['proxy']:.3f} (k=1) → {last['proxy']:.3f} "
        f"(k={last['k']}, KL {last['d'] ** 2:.2f}); gold {base['gold']:.3f} → {last['gold']:.3f}, peak "
        f"{peak['gold']:.3f} at k={peak['k']} (KL {peak['d'] ** 2:.2f}).",
        f"best-of-{cfg.n} picked a response cut at max_new_tokens for {cut} of {len(picks)} prompts "
        f"(missing-EOS penalty {cfg.missing_eos_penalty:g}; {sum(map(sum, samples['truncated']))} of "
        f"{sum(map(len, samples['truncated']))} samples were cut).",
        "the gold curve " + ("turns down after its peak: over-optimisation of the proxy." if peak["k"] < last["k"]
                             and last["gold"] < peak["gold"] - 1e-9 else "does not turn down by k = N."),
    ]
    if bon_fit["gold"]:
        g = bon_fit["gold"]
        findings.append(f"best-of-N gold fit d(α − βd): α {g['alpha']:.3f}, β {g['beta']:.3f}, R² {g['r2']:.3f}.")
    for name, r in rl.items():
        pts = r["points"]
        top = max(pts, key=lambda p: p["gold"])
        findings.append(f"PPO {Path(name).name}, {len(pts) - 1} checkpoints on the same prompts: proxy gain "
                        f"{pts[-1]['proxy']:+.3f}, gold gain {pts[-1]['gold']:+.3f} at step {pts[-1]['step']} "
                        f"(KL {pts[-1]['kl']:.2f}); best gold gain {top['gold']:+.3f} at step {top['step']}.")
        f = r["fit"]["gold"]
        if f:
            findings.append(f"PPO {Path(name).name} gold fit d(α − β log d): α {f['alpha']:.3f}, β {f['beta']:.3f}, "
                            f"R² {f['r2']:.3f} on {f['n']} points (SFT and the checkpoints).")
        else:
            findings.append(f"PPO {Path(name).name}: too few checkpoints with distinct KL to fit the RL form "
                            "(save more often: --train.save_steps, --train.save_total_limit 0).")
    for line in findings:
        log(f"  {line}")
    return result_doc("overoptimization", "Over-optimisation: gold and proxy reward against √KL",
                        {"config": cfg.__dict__, "bon": {"curve": curve, "fit": bon_fit, "examples": examples},
                         "ppo": rl},
                        [_plot(curve, gains, bon_fit, rl, out)], table, findings)


def _plot(curve, gains, bon_fit, rl, out: Path) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    ds = [c["d"] for c in curve]
    grid = [i * max(ds) / 100 for i in range(101)]
    ax = axes[0]
    for key, color in (("proxy", "tab:blue"), ("gold", "tab:orange")):
        ax.plot(ds, gains[key], ".", color=color, label=f"{key} (measured)")
        if bon_fit[key]:
            f = GaoFit(**bon_fit[key])
            ax.plot(grid, [gao_curve(f, d) for d in grid], "-", color=color, alpha=0.7,
                    label=f"{key} fit, R² {f.r2:.2f}")
    ax.set_title("best-of-N from SFT (k = 1…N)", fontsize=10)
    ax.set_xlabel("d = √KL (nats^½)")
    ax.set_ylabel("gain over k = 1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    for name, r in rl.items():
        pts = r["points"]
        grid = [i * max(p["d"] for p in pts) / 100 for i in range(101)]
        for key, color in (("proxy", "tab:blue"), ("gold", "tab:orange")):
            ax.plot([p["d"] for p in pts], [p[key] for p in pts], "o", color=color,
                    label=f"{Path(name).name} {key}")
            if r["fit"][key]:
                f = GaoFit(**r["fit"][key])
                ax.plot(grid, [gao_curve(f, d) for d in grid], "-", color=color, alpha=0.7,
                        label=f"{key} fit, R² {f.r2:.2f}")
    ax.set_title("PPO checkpoints (same held-out prompts)", fontsize=10)
    ax.set_xlabel("d = √KL(π ‖ SFT) (nats^½)")
    ax.set_ylabel("gain over SFT")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, out / "overoptimization.png")
