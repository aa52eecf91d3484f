"""What every experiment shares: the demo run it starts from, PPO runs built from the demo PPO config,
held-out evaluation of the resulting policies, programmatic rewards, and the result files.

An experiment reads a finished demo run (`tether demo`, or the pipeline with the same layout):
`<demo_dir>/sft` (the policy every experiment starts from and the KL reference), `<demo_dir>/rm` (the
learned reward model: the proxy) and `<demo_dir>/data` (prompts with the gold judge's meta). It writes
`<output_dir>/result.json` (every figure), `<output_dir>/*.png` (its plots) and `<output_dir>/section.md`
(the text for docs/experiments.md and the report). Finished sub-runs are reused when they were made from the
same config, reward and inputs (`runtime.provenance.StageRecord`: the demo's SFT policy, RM and prompts are
fingerprinted), so re-running an experiment only redoes what is missing or stale — after the demo's RM is
retrained, its PPO sub-runs are moved to `<dir>.stale` and trained again.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from tether.data.gold_judge import gold_score
from tether.data.records import PromptRow
from tether.errors import ConfigError

REWARD_FUNCTIONS: dict[str, Callable[[PromptRow, str, bool], float]] = {
    "correctness": lambda row, text, truncated: float(gold_score(row.meta, text, truncated=truncated).correct),
    "brevity": lambda row, text, truncated: 1.0 - min(len(text.split()), 30) / 30.0,
    "length": lambda row, text, truncated: len(text.split()) / 20.0,
    "gold": lambda row, text, truncated: gold_score(row.meta, text, truncated=truncated).total,
}
"""Programmatic rewards of one (prompt row, response text, truncated) triple:

- correctness: 1 when the gold judge finds the right answer and no wrong one, else 0;
- brevity: 1 − min(words, 30)/30 (shorter is better; says nothing about being right);
- length: words / 20, a deliberately flawed reward (longer is "better") for the length-hack experiment;
- gold: the gold judge's total score (the truth of the demo task; using it as the reward is an oracle).
"""


def demo_paths(demo_dir: str | Path) -> dict[str, Path]:
    """sft, rm, data dirs of a finished demo run; a ConfigError naming what is missing otherwise."""
    root = Path(demo_dir)
    paths = {"sft": root / "sft", "rm": root / "rm", "data": root / "data"}
    checks = {"sft": paths["sft"] / "config.json", "rm": paths["rm"] / "result.json",
              "data": paths["data"] / "rl_prompts.jsonl"}
    missing = [str(p) for p in checks.values() if not p.is_file()]
    if missing:
        raise ConfigError(f"demo_dir {root}: missing {', '.join(missing)}; run `tether demo` (or the pipeline) first")
    return paths


def reward_function(weights: dict[str, float]) -> Callable[[list[PromptRow], list[str], list[bool]], list[float]]:
    """R = Σ_i w_i·R_i over named programmatic rewards (`REWARD_FUNCTIONS`), as a PPO `reward_fn`."""
    unknown = sorted(set(weights) - set(REWARD_FUNCTIONS))
    if unknown or not weights:
        raise ConfigError(f"rewards: unknown reward {', '.join(unknown) or '(none given)'}; "
                          f"available: {', '.join(REWARD_FUNCTIONS)}")

    def reward(rows: list[PromptRow], texts: list[str], truncated: list[bool]) -> list[float]:
        return [math.fsum(w * REWARD_FUNCTIONS[name](row, text, cut) for name, w in weights.items())
                for row, text, cut in zip(rows, texts, truncated)]

    reward.key = dict(weights)  # what a run trained with it records (`train_ppo_once`)
    return reward


def ppo_config(base_config: str, paths: dict[str, Path], output_dir: Path, overrides: Sequence[str] = ()):
    """The demo PPO config (`base_config`) pointed at the demo run's SFT policy, RM and RL prompts, writing to
    `output_dir`, with `overrides` (the usual `--section.field value` tokens) applied last."""
    from tether.runtime.config import load_config
    from tether.train.ppo import PPOConfig

    return load_config(PPOConfig, base_config, [
        "--output_dir", str(output_dir), "--model.name", str(paths["sft"]), "--reward_model", str(paths["rm"]),
        "--data.prompts_file", str(paths["data"] / "rl_prompts.jsonl"), "--train.report_to", "[]", *overrides])


def train_ppo_once(cfg, reward_fn=None, log=print) -> dict:
    """Train PPO with `cfg` unless its output dir already holds a run finished with the same config, reward
    function (its `key`, from `reward_function`) and inputs (policy, RM, prompts); its result.json."""
    from tether.runtime.provenance import StageRecord, stage_inputs
    from tether.train import ppo

    out = Path(cfg.output_dir)
    record = stage_inputs(cfg, root=Path(cfg.model.name).parent, policy=cfg.model.name, rm=cfg.reward_model,
                          prompts=cfg.data.prompts_file)
    key = None if reward_fn is None else getattr(reward_fn, "key", reward_fn.__qualname__)
    record["reward_fn"] = json.loads(json.dumps(key, default=str))
    if StageRecord(out).reuse(record, log):
        log(f"  reusing the finished run in {out}")
    else:
        log(f"  training {out}: {cfg.train.max_steps} iterations × {cfg.rollout.prompts_per_step} prompts × "
            f"{cfg.rollout.samples_per_prompt} samples ({cfg.advantage_estimator}, β {cfg.ppo.kl_coef})")
        ppo.train(cfg, reward_fn=reward_fn)
    return json.loads((out / "result.json").read_text())


def read_series(run_dir: Path, keys: Sequence[str]) -> dict[str, list[float]]:
    """step and each of `keys` per logged iteration from a run's metrics.jsonl (missing values as nan)."""
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"step": [r["step"] for r in rows]} | {k: [float(r.get(k, math.nan)) for r in rows] for k in keys}


def load_demo_models(paths: dict[str, Path]) -> dict:
    """The demo's SFT policy and reward model, frozen, with their tokenizers: {tokenizer, sft, rm, rm_tokenizer}."""
    from tether.models.loading import freeze, load_causal_lm, load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel

    tokenizer = load_tokenizer(str(paths["sft"]))
    return {"tokenizer": tokenizer, "sft": freeze(load_causal_lm(str(paths["sft"]), tokenizer)),
            "rm": freeze(ScalarHeadModel.from_pretrained(paths["rm"])),
            "rm_tokenizer": load_tokenizer(str(paths["rm"]))}


class Evaluator:
    """Held-out evaluation of policies against the demo's SFT policy: greedy responses on `n_prompts` eval
    prompts (the first ones after interleaving the families) scored by the gold judge, the RM's mean score of
    them (proxy), and KL(π ‖ π_SFT) on each policy's own temperature-1 samples on the first `kl_prompts`.
    Cached under `cache_dir`."""

    def __init__(self, paths: dict[str, Path], cache_dir: Path, n_prompts: int, kl_prompts: int, seed: int = 0,
                 log=print):
        from tether.data.records import interleave_by
        from tether.data.validate import load_records

        rows = interleave_by(load_records(paths["data"] / "eval_prompts.jsonl", "prompt")[0])  # spans families
        self.rows, self.kl_rows = rows[:n_prompts], rows[:kl_prompts]
        models = load_demo_models(paths)
        self.tokenizer, self.sft, self.rm, self.rm_tokenizer = (models[k] for k in ("tokenizer", "sft", "rm",
                                                                                    "rm_tokenizer"))
        self.cache_dir, self.seed, self.log = Path(cache_dir), seed, log
        self.paths = paths
        self.evals: dict[str, object] = {}

    def __call__(self, name: str, policy_dir: Path | None = None) -> dict:
        """Summary of policy `name` (the SFT policy itself when `policy_dir` is None), with win rate vs SFT."""
        from tether.eval.evaluate import compare
        from tether.eval.policy_cache import evaluate_cached

        spec = str(policy_dir or self.paths["sft"])
        key = "sft" if policy_dir is None else name
        evaluation, kl = evaluate_cached(self.cache_dir, key, spec, self.rows, self.kl_rows, self.tokenizer,
                                         self.sft, self.rm, self.rm_tokenizer, seed=self.seed,
                                         rm_spec=str(self.paths["rm"]), log=self.log)
        self.evals[key] = evaluation
        out = {k: v for k, v in evaluation.summary().items() if k != "by_family"}
        out["kl_to_sft"] = kl
        if key != "sft":
            if "sft" not in self.evals:
                self("sft")
            out["vs_sft"] = compare(evaluation, self.evals["sft"])
        return out


def save_figure(fig, path: Path) -> str:
    """Write a matplotlib figure as PNG; its file name."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(runs: dict[str, dict], titles: dict[str, str], path: Path) -> str:
    """One panel per metric (`titles`: metric key → panel title), one line per run (`runs`: legend label →
    {"curves": read_series output}), against the PPO iteration; the PNG's file name."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(titles), figsize=(3.6 * len(titles) + 0.6, 3.2), squeeze=False)
    for ax, (key, title) in zip(axes[0], titles.items()):
        for label, r in runs.items():
            ax.plot(r["curves"]["step"], r["curves"][key], marker=".", label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("PPO iteration")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return save_figure(fig, path)


def result_doc(name: str, title: str, result: dict, figures: list[str], table: list[dict],
               findings: list[str]) -> dict:
    """The experiment's result.json document, as plain JSON values: every figure (`result`), the summary
    `table`, `findings` and plot file names. `run_experiment` writes it (with the command and wall time) and
    section.md from it."""
    doc = {"experiment": name, "title": title, "figures": figures, "table": table, "findings": findings,
           **result}
    return json.loads(json.dumps(doc, default=_jsonable))


def _jsonable(x):
    if hasattr(x, "_asdict"):
        return x._asdict()
    if hasattr(x, "__dataclass_fields__"):
        return asdict(x)
    raise TypeError(f"cannot write {type(x).__name__} as JSON")


def _cell(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def section_markdown(doc: dict) -> str:
    """The experiment as a markdown section: title, command, summary table, findings, plots."""
    lines = [f"### {doc['title']}", "", f"`{doc.get('command', 'tether experiment ' + doc['experiment'])}`", ""]
    table = doc["table"]
    if table:
        cols = list(table[0])
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in cols) + " |" for row in table]
        lines.append("")
    lines += [f"- {f}" for f in doc["findings"]]
    lines += [""] + [f"![{f}]({f})" for f in doc["figures"]]
    return "\n".join(lines) + "\n"
