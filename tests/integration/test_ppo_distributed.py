"""PPO under `accelerate launch` with 2 CPU processes (gloo) follows the 1-process trajectory: rollouts split
across processes, advantages whitened over the global batch, each minibatch shared between the processes."""

from __future__ import annotations

import json

import pytest
import torch

from launch import launch_two_processes
from ppo_assets import curves, make_assets, ppo_cfg
from tether.runtime.config import save_config
from tether.train.ppo import train


def test_two_processes_follow_the_one_process_trajectory(tiny_model_dir, tmp_path):
    assets = make_assets(tiny_model_dir, tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the 2 processes below
    try:
        train(ppo_cfg(assets, tmp_path / "one", "--train.max_steps", "2"))
    finally:
        torch.set_num_threads(threads)
    yaml_cfg = tmp_path / "two.yaml"
    save_config(ppo_cfg(assets, tmp_path / "two", "--train.max_steps", "2"), yaml_cfg)
    proc = launch_two_processes("ppo", yaml_cfg, timeout=300)
    assert "ppo (gae): 2 iterations" in proc.stdout
    assert json.loads((tmp_path / "two" / "result.json").read_text())["num_processes"] == 2
    one, two = curves(tmp_path / "one"), curves(tmp_path / "two")
    assert [m["step"] for m in two] == [1, 2]
    for a, b in zip(one, two):
        assert a["kl/health"] == b["kl/health"]
        numeric = sorted(k for k in a if isinstance(a[k], float) and not k.endswith("clipfrac"))
        assert [b[k] for k in numeric] == pytest.approx([a[k] for k in numeric], rel=1e-4, abs=1e-6)
        # A clip fraction counts tokens on either side of a hard threshold: gradients summed in another order
        # (2 processes) may move one token of one minibatch across it, a step of 1/128 in this run's mean.
        for k in (k for k in a if k.endswith("clipfrac")):
            assert abs(b[k] - a[k]) <= 1 / 128 + 1e-9, k
    assert one[1]["kl/sequence"] != 0.0  # the second rollout came from an updated policy in both runs
