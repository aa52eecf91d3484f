"""The demo pipeline on the embedded default: data → SFT → evaluation (later stages extend it).

Each stage's output is reused when complete (its `result.json` exists), so re-running resumes
instead of redoing finished work.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tether.data.demo_task import make_demo_task
from tether.data.validate import load_records
from tether.runtime.config import load_config


@dataclass
class DemoOptions:
    name: str = "demo"
    runs_dir: str = "runs"
    seed: int = 0
    quick: bool = False
    """Fewer steps and eval prompts: every stage runs, no quality bars (smoke runs)."""
    config_dir: str = field(default_factory=lambda: str(default_config_dir()))
    """Where the stage YAML configs live (see `default_config_dir`)."""


def default_config_dir() -> Path:
    """$TETHER_CONFIG_DIR, else ./configs/demo, else the repo's configs/demo next to the package source."""
    if os.environ.get("TETHER_CONFIG_DIR"):
        return Path(os.environ["TETHER_CONFIG_DIR"])
    local = Path("configs/demo")
    return local if local.is_dir() else Path(__file__).resolve().parents[2] / "configs" / "demo"


def _stage_done(path: Path) -> bool:
    return (path / "result.json").is_file()


def run_demo(opts: DemoOptions, log=print) -> dict:
    from tether.eval.evaluate import compare, evaluate_policy, write_eval
    from tether.models.loading import load_causal_lm, load_tokenizer
    from tether.train import sft

    run = Path(opts.runs_dir) / opts.name
    timings: dict[str, float] = {}

    # 1. Demo task data (deterministic in the seed).
    t0 = time.perf_counter()
    data_dir = run / "data"
    if not (data_dir / "manifest.json").is_file():
        log(f"[1/3] data: generating the demo task into {data_dir}")
        make_demo_task(seed=opts.seed).write(data_dir)
    timings["data_s"] = time.perf_counter() - t0

    # 2. SFT.
    t0 = time.perf_counter()
    sft_dir = run / "sft"
    overrides = ["--output_dir", str(sft_dir), "--data.train_file", str(data_dir / "sft.jsonl")]
    if opts.quick:
        overrides += ["--train.max_steps", "6", "--train.eval_steps", "0", "--data.max_eval_examples", "16"]
    cfg = load_config(sft.SFTConfig, str(Path(opts.config_dir) / "sft.yaml"), overrides)
    if _stage_done(sft_dir):
        log(f"[2/3] sft: reusing the finished run in {sft_dir}")
    else:
        log(f"[2/3] sft: {cfg.train.max_steps} steps × {cfg.train.batch_size} examples → {sft_dir}")
        sft.train(cfg)
    timings["sft_s"] = time.perf_counter() - t0

    # 3. Evaluate base vs SFT on held-out prompts with the gold judge.
    t0 = time.perf_counter()
    rows, _ = load_records(data_dir / "eval_prompts.jsonl", "prompt")
    if opts.quick:
        rows = rows[:24]
    log(f"[3/3] eval: base vs SFT on {len(rows)} held-out prompts (greedy, gold judge)")
    tokenizer = load_tokenizer(cfg.model.name, cfg.model.max_length)
    evals = []
    for name, spec in (("base", cfg.model.name), ("sft", str(sft_dir))):
        model = load_causal_lm(spec, tokenizer)
        evals.append(evaluate_policy(name, model, tokenizer, rows))
        del model
    comparisons = {"sft_vs_base": compare(evals[1], evals[0])}
    write_eval(run / "eval" / "policies.json", evals, comparisons)
    timings["eval_s"] = time.perf_counter() - t0
    summary = {"policies": {e.name: e.summary() for e in evals}, "comparisons": comparisons, "timings": timings}
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
