"""rm-pooling: a reward model read at the last real token vs one that averages over all real tokens.

Two Bradley–Terry reward models from the same SFT backbone, data, seed and budget, differing only in
pooling (`last`: the head reads the hidden state at the EOS, where a causal model has read the whole
response; `mean`: the head reads the mean of the hidden states of all real tokens, prompt and response).
Both are evaluated on the demo's held-out on-policy pairs: pairwise accuracy, margin, calibration (ECE,
reliability diagram) and length bias.

    tether experiment rm-pooling --config configs/experiments/rm-pooling.yaml
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from tether.errors import ConfigError
from tether.experiments.common import demo_paths, pyplot, result_doc, save_figure


@dataclass
class RMPoolingConfig:
    output_dir: str = "runs/demo/experiments/rm-pooling"
    """Where the two reward models, plots and result.json go."""
    demo_dir: str = "runs/demo"
    """A finished demo run: its sft/ (the backbone) and data/ (training and held-out pairs)."""
    rm_config: str = "configs/demo/rm.yaml"
    """The reward-model config both runs start from."""
    poolings: list[str] = field(default_factory=lambda: ["last", "mean"])
    """Pooling of each run."""
    rm_overrides: list[str] = field(default_factory=lambda: ["--train.max_steps", "20"])
    """Extra `tether rm` overrides applied to both runs (default: a 20-step budget each)."""
    seed: int = 0

    def validate(self) -> None:
        bad = [p for p in self.poolings if p not in ("last", "mean")]
        if bad or len(set(self.poolings)) != len(self.poolings) or not self.poolings:
            raise ConfigError(f"poolings: distinct values from last, mean; got {self.poolings}")


def run(cfg: RMPoolingConfig, log=print) -> dict:
    from tether.data.validate import load_records
    from tether.eval.reward_eval import evaluate_reward_model
    from tether.models.loading import freeze, load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel
    from tether.runtime.config import load_config
    from tether.runtime.provenance import StageRecord, stage_inputs
    from tether.train import reward

    cfg.validate()
    paths, out = demo_paths(cfg.demo_dir), Path(cfg.output_dir)
    data = paths["data"]
    held_out, _ = load_records(data / "eval_pairs.jsonl", "preference")
    reports = {}
    for pooling in cfg.poolings:
        rm_dir = out / f"rm-{pooling}"
        rm_cfg = load_config(reward.RMConfig, cfg.rm_config, [
            "--output_dir", str(rm_dir), "--pooling", pooling, "--model.name", str(paths["sft"]),
            "--train.seed", str(cfg.seed), "--train.report_to", "[]",
            "--data.train_files", f"[{data / 'preference.jsonl'}, {data / 'onpolicy_pairs.jsonl'}]",
            "--data.eval_file", str(data / "eval_pairs.jsonl"), "--data.norm_file", str(data / "sft.jsonl"),
            "--train.eval_steps", "0", *cfg.rm_overrides])
        record = stage_inputs(rm_cfg, root=paths["sft"].parent, policy=paths["sft"],
                              templated=data / "preference.jsonl", onpolicy=data / "onpolicy_pairs.jsonl",
                              held_out=data / "eval_pairs.jsonl", norm=data / "sft.jsonl")
        if StageRecord(rm_dir).reuse(record, log):
            log(f"{pooling}: reusing the finished run in {rm_dir}")
        else:
            log(f"{pooling}: training {rm_cfg.train.max_steps} steps × {rm_cfg.train.batch_size} pairs → {rm_dir}")
            t0 = time.perf_counter()
            reward.train(rm_cfg)
            (rm_dir / "wall_seconds.json").write_text(json.dumps({"train_seconds": time.perf_counter() - t0}))
        trained = json.loads((rm_dir / "result.json").read_text())
        timing = rm_dir / "wall_seconds.json"
        model = freeze(ScalarHeadModel.from_pretrained(rm_dir))
        report = evaluate_reward_model(model, load_tokenizer(str(rm_dir)), held_out, rm_cfg.model.max_length)
        report["train_seconds"] = json.loads(timing.read_text())["train_seconds"] if timing.is_file() else None
        report["bias_shift"] = trained.get("bias_shift")
        reports[pooling] = report
        del model

    table = [{"pooling": p, "accuracy": r["accuracy"], "margin": r["margin"], "ECE": r["ece"],
              "corr(score, length)": r["length_corr"], "prefers longer": r["rm_prefers_longer"],
              "labels prefer longer": r["labels_prefer_longer"], "pairs": r["n_pairs"],
              "train s": r["train_seconds"]} for p, r in reports.items()]
    findings = [f"{p}: held-out accuracy {r['accuracy']:.1%} on {r['n_pairs']} pairs, ECE {r['ece']:.3f}, "
                f"corr(score, length) {r['length_corr']:.2f}." for p, r in reports.items()]
    if len(reports) == 2:
        (a, ra), (b, rb) = reports.items()
        better = a if ra["accuracy"] > rb["accuracy"] else b if rb["accuracy"] > ra["accuracy"] else None
        findings.append(f"more accurate: {better} pooling." if better else "equal accuracy.")
    for line in findings:
        log(f"  {line}")
    return result_doc("rm-pooling", "Reward-model pooling: last token vs mean",
                        {"config": cfg.__dict__, "reports": reports}, [_plot(reports, out)], table, findings)


def _plot(reports: dict, out: Path) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    ax = axes[0]
    ax.plot([0, 1], [0, 1], "--", color="gray", lw=1)
    for pooling, r in reports.items():
        bins = [b for b in r["reliability"] if b["count"]]
        ax.plot([b["mean_prob"] for b in bins], [b["accuracy"] for b in bins], marker="o",
                label=f"{pooling} (ECE {r['ece']:.3f})")
    ax.set_xlabel("predicted P(chosen ≻ rejected)")
    ax.set_ylabel("observed frequency")
    ax.set_title("reliability diagram (held-out pairs)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1]
    names = list(reports)
    ax.bar(names, [reports[p]["accuracy"] for p in names], color=["tab:blue", "tab:orange"][: len(names)])
    for i, p in enumerate(names):
        ax.text(i, reports[p]["accuracy"] + 0.01, f"{reports[p]['accuracy']:.1%}", ha="center", fontsize=9)
    ax.set_ylim(0, 1)
    ax.set_title("held-out pairwise accuracy", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, out / "rm_pooling.png")
