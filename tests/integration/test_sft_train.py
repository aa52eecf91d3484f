"""SFT on a tiny offline model: it learns, resume reproduces the uninterrupted run, and 2 processes
follow the same loss curve as 1 (same global batch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from launch import launch_two_processes
from tether.runtime.config import load_config
from tether.runtime.metrics import read_metrics
from tether.train.sft import SFTConfig, train


def tiny_cfg(model_dir: Path, data: Path, out: Path, *extra: str) -> SFTConfig:
    return load_config(SFTConfig, None, [
        "--output_dir", str(out), "--model.name", str(model_dir), "--model.max_length", "64",
        "--data.train_file", str(data), "--data.eval_fraction", "0.1",
        "--train.max_steps", "4", "--train.batch_size", "8", "--train.micro_batch_size", "2",
        "--train.learning_rate", "3e-3", "--train.warmup_ratio", "0", "--train.logging_steps", "1",
        "--train.eval_steps", "0", "--train.report_to", "[]", *extra])


def losses(run: Path) -> list[float]:
    return [m["loss/sft"] for m in read_metrics(run / "metrics.jsonl") if "loss/sft" in m]


def test_sft_learns_and_saves_a_loadable_model(tiny_model_dir, tmp_path, sft_file):
    data = sft_file(tmp_path / "sft.jsonl")
    cfg = tiny_cfg(tiny_model_dir, data, tmp_path / "run", "--train.max_steps", "12")
    result = train(cfg)
    curve = losses(tmp_path / "run")
    assert len(curve) == 12 and all(torch.isfinite(torch.tensor(curve)))
    assert sum(curve[-3:]) / 3 < sum(curve[:3]) / 3 - 0.3  # it learns
    assert result.eval_loss is not None and result.eval_loss < curve[0]
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "run").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # trainable parameters changed
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert json.loads((tmp_path / "run" / "result.json").read_text())["steps"] == 12


def test_resume_reproduces_the_uninterrupted_run(tiny_model_dir, tmp_path, sft_file):
    data = sft_file(tmp_path / "sft.jsonl")
    train(tiny_cfg(tiny_model_dir, data, tmp_path / "straight"))
    train(tiny_cfg(tiny_model_dir, data, tmp_path / "resumed"), interrupt_at_step=2)
    assert len(losses(tmp_path / "resumed")) == 2
    train(tiny_cfg(tiny_model_dir, data, tmp_path / "resumed"))  # picks up checkpoints/step-2
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert len(resumed) == 4
    assert resumed == pytest.approx(straight, rel=1e-6, abs=1e-7)


def test_lora_and_packing_train(tiny_model_dir, tmp_path, sft_file):
    data = sft_file(tmp_path / "sft.jsonl")
    result = train(tiny_cfg(tiny_model_dir, data, tmp_path / "lora", "--model.use_lora", "true",
                            "--model.lora_r", "4", "--packing", "true"))
    assert result.steps == 4 and torch.isfinite(torch.tensor(result.train_loss))
    assert (tmp_path / "lora" / "model.safetensors").is_file()  # merged: loads as a plain model


def test_token_mean_loss_does_not_depend_on_microbatching(tiny_model_dir, tmp_path, sft_file):
    data = sft_file(tmp_path / "sft.jsonl")
    train(tiny_cfg(tiny_model_dir, data, tmp_path / "mb2"))
    train(tiny_cfg(tiny_model_dir, data, tmp_path / "mb8", "--train.micro_batch_size", "8"))
    assert losses(tmp_path / "mb2") == pytest.approx(losses(tmp_path / "mb8"), rel=1e-4)


def test_two_processes_follow_the_one_process_loss_curve(tiny_model_dir, tmp_path, sft_file):
    data = sft_file(tmp_path / "sft.jsonl")
    train(tiny_cfg(tiny_model_dir, data, tmp_path / "one"))
    yaml_cfg = tmp_path / "two.yaml"
    from tether.runtime.config import save_config

    save_config(tiny_cfg(tiny_model_dir, data, tmp_path / "two"), yaml_cfg)
    launch_two_processes("sft", yaml_cfg)
    assert json.loads((tmp_path / "two" / "result.json").read_text())["num_processes"] == 2
    assert json.loads((tmp_path / "one" / "result.json").read_text())["num_processes"] == 1
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-4)


def test_non_finite_loss_stops_naming_step_and_quantity(tiny_model_dir, tmp_path, sft_file):
    from tether.errors import TrainingError

    data = sft_file(tmp_path / "sft.jsonl")
    cfg = tiny_cfg(tiny_model_dir, data, tmp_path / "nan", "--train.learning_rate", "1e30",
                   "--train.max_grad_norm", "0", "--train.max_steps", "6")
    with pytest.raises(TrainingError, match=r"^step [2-6]: (loss/sft|train/grad_norm) is (nan|inf)"):
        train(cfg)
    assert not (tmp_path / "nan" / "result.json").exists()  # no model is published from a diverged run
