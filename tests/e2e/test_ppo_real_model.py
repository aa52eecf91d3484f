"""Slow: a few PPO iterations on the real embedded model through `tether ppo --config configs/demo/ppo.yaml`
(LoRA policy, separate value model from a fresh head, gold-judge reward so no reward model is needed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_ppo_runs_on_the_embedded_model(tmp_path):
    from tether.data.demo_task import make_demo_task
    from tether.data.validate import save_records
    from tether.runtime.metrics import read_metrics

    save_records(tmp_path / "prompts.jsonl", make_demo_task(0).rl_prompts[:16])
    out = tmp_path / "ppo"
    proc = subprocess.run(
        [sys.executable, "-m", "tether.cli.main", "ppo", "--config", str(ROOT / "configs/demo/ppo.yaml"),
         "--output_dir", str(out), "--model.name", "smollm2-135m-instruct", "--reward", "gold",
         "--critic", "separate", "--value_model", "smollm2-135m-instruct",
         "--data.prompts_file", str(tmp_path / "prompts.jsonl"),
         "--rollout.prompts_per_step", "2", "--rollout.samples_per_prompt", "2", "--rollout.max_new_tokens", "24",
         "--train.batch_size", "4", "--train.micro_batch_size", "2", "--train.max_steps", "3",
         "--ppo.num_epochs", "1", "--ppo.critic_warmup_steps", "1", "--train.report_to", "[]"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ppo (gae): 3 iterations" in proc.stdout
    log = read_metrics(out / "metrics.jsonl")
    assert [m["step"] for m in log] == [1, 2, 3]
    assert log[0]["kl/sequence"] == 0.0  # policy == reference (LoRA B = 0)
    assert all(m["policy/ratio_dev_first"] == 0.0 for m in log)  # bitwise on the real model too
    assert log[0]["train/critic_warmup"] == 1.0 and log[1]["kl/sequence"] == 0.0  # warm-up moved only the critic
    assert log[2]["kl/sequence"] != 0.0
    for m in log:
        assert all(math.isfinite(v) for v in m.values() if isinstance(v, float))
        assert -1.0 <= m["reward/gold"] <= 1.0
    result = json.loads((out / "result.json").read_text())
    assert result["critic"] == "separate" and result["reward"] == "gold"
    assert (out / "model.safetensors").is_file()  # the LoRA-merged policy, loadable without peft
    assert (out / "samples.jsonl").read_text().count("\n") == 4  # iteration 1's rollout (2 prompts × 2)
