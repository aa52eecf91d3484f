"""Inputs for the PPO tests: a tiny reward model and demo-task prompts, the tiny PPO config, metric curves."""

from __future__ import annotations

from pathlib import Path

TIMING = ("time/", "perf/", "gen/tokens_per_s")
"""Metric prefixes that measure wall time (they differ between otherwise identical runs)."""


def make_assets(tiny_model_dir: Path, root: Path) -> dict[str, Path]:
    """A tiny reward model (random head on the tiny backbone) and 16 demo-task prompts under `root`."""
    from tether.data.demo_task import make_demo_task
    from tether.data.validate import save_records
    from tether.models.loading import load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel

    tok = load_tokenizer(str(tiny_model_dir))
    ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, seed=1).save_pretrained(root / "rm")
    tok.save_pretrained(root / "rm")
    save_records(root / "prompts.jsonl", make_demo_task(0).rl_prompts[:16])
    return {"model": tiny_model_dir, "rm": root / "rm", "prompts": root / "prompts.jsonl"}


def ppo_cfg(assets: dict[str, Path], out: Path, *extra: str):
    """4 prompts × 2 samples of ≤ 8 tokens per iteration, minibatches of 4 rows, 2 epochs, 4 iterations."""
    from tether.runtime.config import load_config
    from tether.train.ppo import PPOConfig

    return load_config(PPOConfig, None, [
        "--output_dir", str(out), "--model.name", str(assets["model"]), "--model.max_length", "128",
        "--reward_model", str(assets["rm"]), "--data.prompts_file", str(assets["prompts"]),
        "--rollout.prompts_per_step", "4", "--rollout.samples_per_prompt", "2", "--rollout.max_new_tokens", "8",
        "--rollout.generation_batch_size", "4", "--train.batch_size", "4", "--train.micro_batch_size", "2",
        "--train.max_steps", "4", "--train.learning_rate", "3e-3", "--train.report_to", "[]",
        "--ppo.num_epochs", "2", "--ppo.sample_table_steps", "0", *extra])


def curves(run: Path) -> list[dict]:
    """metrics.jsonl of a run without the wall-time metrics."""
    from tether.runtime.metrics import read_metrics

    return [{k: v for k, v in m.items() if not k.startswith(TIMING)} for m in read_metrics(run / "metrics.jsonl")]
