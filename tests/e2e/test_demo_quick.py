"""Slow: the demo pipeline on the real embedded model (`tether demo --quick`), through the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tether.pipeline import QUICK_SIZES, DemoOptions

pytestmark = pytest.mark.slow


def test_demo_quick_runs_every_stage(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tether.cli.main", "demo", "--quick", "--name", "e2e"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "e2e" / "summary.json").read_text())
    assert set(summary["policies"]) == {"base", "sft", "ppo", "dpo"}
    for policy in summary["policies"].values():
        assert policy["n"] == QUICK_SIZES["eval_prompts"]
        assert -1.0 <= policy["gold_mean"] <= 1.0
    assert (tmp_path / "runs" / "e2e" / "sft" / "model.safetensors").is_file()
    assert (tmp_path / "runs" / "e2e" / "rm" / "score_head.safetensors").is_file()
    rm = summary["reward_model"]
    assert rm["n_pairs"] > 0 and 0.0 <= rm["accuracy"] <= 1.0
    assert (tmp_path / "runs" / "e2e" / "dpo-dpo" / "model.safetensors").is_file()
    assert (tmp_path / "runs" / "e2e" / "ppo" / "result.json").is_file()
    kl_n = DemoOptions().eval_samples * QUICK_SIZES["eval_prompts"]  # on the temperature-1 sampled evaluation
    assert summary["kl_to_sft"]["dpo"]["n"] == kl_n and summary["kl_to_sft"]["ppo"]["n"] == kl_n
    assert set(summary["comparisons"]) == {"sft_vs_base", "ppo_vs_sft", "dpo_vs_sft"}
    assert "sft win rate vs base" in proc.stdout and "dpo win rate vs sft" in proc.stdout
    bon = summary["best_of_n"]
    assert bon["n"] == 4 and abs(bon["kl_analytic"] - (math.log(4) - 3 / 4)) < 1e-9
    vs = bon["vs_baseline"]
    assert vs["wins"] + vs["ties"] + vs["losses"] == QUICK_SIZES["bon"][1]
    html = (tmp_path / "runs" / "e2e" / "report.html").read_text()
    assert "ppo" in html and "bon4" in html
    # Re-running reuses every finished stage and cached evaluation instead of redoing it.
    again = subprocess.run([sys.executable, "-m", "tether.cli.main", "demo", "--quick", "--name", "e2e"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("sft", "rm", "ppo", "dpo"):
        assert f"reusing the finished run in runs/e2e/{'dpo-dpo' if stage == 'dpo' else stage}" in again.stdout
    assert "ppo: reusing runs/e2e/eval/policy-ppo.json" in again.stdout
    assert json.loads((tmp_path / "runs" / "e2e" / "summary.json").read_text())["comparisons"] == summary["comparisons"]
