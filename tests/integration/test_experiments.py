"""Every `tether experiment` on the tiny offline model: a quick demo run (data, SFT, RM) is the starting
point; each experiment trains its runs, evaluates them, and writes result.json, section.md and its PNG plots;
a second call reuses the finished runs. The numbers are meaningless at this size; what is checked is that the
right runs exist with the right settings and that the reported figures are the ones measured."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tether.errors import ConfigError
from tether.experiments import EXPERIMENTS, experiment_config, run_experiment
from tether.pipeline import DemoOptions, run_demo

ROOT = Path(__file__).resolve().parents[2]
TINY_PPO = ["--train.max_steps", "2", "--rollout.prompts_per_step", "2", "--rollout.samples_per_prompt", "2",
            "--rollout.max_new_tokens", "12", "--train.batch_size", "4", "--train.micro_batch_size", "2",
            "--ppo.num_epochs", "1", "--ppo.sample_table_steps", "0", "--train.save_steps", "0"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """A quick demo run on the tiny model (data, SFT, RM; no PPO/DPO/BoN) and configs pointing at it."""
    configs = tmp_path_factory.mktemp("configs")
    for src in (ROOT / "configs" / "demo").glob("*.yaml"):
        cfg = yaml.safe_load(src.read_text())
        if src.name == "sft.yaml":
            cfg["model"]["name"] = str(tiny_model_dir)
            cfg["train"]["report_to"] = []
        if "model" in cfg:
            cfg["model"]["max_length"] = 1024
        (configs / src.name).write_text(yaml.safe_dump(cfg))
    runs = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)
    run_demo(DemoOptions(name="d", runs_dir=str(runs), quick=True, config_dir=str(configs),
                         skip=["ppo", "preference", "bon"]), log=lambda _: None)
    return {"demo": runs / "d", "configs": configs, "out": tmp_path_factory.mktemp("experiments")}


def _common(demo, name: str, *extra: str) -> list[str]:
    return ["--output_dir", str(demo["out"] / name), "--demo_dir", str(demo["demo"]), *extra]


def _ppo(demo) -> list[str]:
    return ["--ppo_config", str(demo["configs"] / "ppo.yaml"), "--ppo_overrides", "[" + ", ".join(TINY_PPO) + "]"]


def _check_outputs(result: dict, out: Path) -> None:
    saved = json.loads((out / "result.json").read_text())
    assert saved["table"] == result["table"] and saved["findings"] == result["findings"]
    assert saved["command"].startswith("tether experiment ")
    for fig in result["figures"]:
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    section = (out / "section.md").read_text()
    assert section.startswith("### ") and all(f"![{f}]({f})" in section for f in result["figures"])
    assert (out / "config.yaml").is_file()


def test_kl_sweep_trains_one_run_per_beta_and_reports_their_measured_figures(demo):
    out = demo["out"] / "kl-sweep"
    result = run_experiment("kl-sweep", None, [*_common(demo, "kl-sweep", "--betas", "[0.0, 0.5]"), *_ppo(demo),
                                               "--eval_prompts", "4", "--kl_prompts", "2"], log=lambda _: None)
    _check_outputs(result, out)
    for beta in ("0", "0.5"):
        cfg = yaml.safe_load((out / f"beta-{beta}" / "config.yaml").read_text())
        assert cfg["ppo"]["kl_coef"] == float(beta) and cfg["train"]["max_steps"] == 2
        assert cfg["model"]["name"] == str(demo["demo"] / "sft")
    assert [row["β"] for row in result["table"]] == ["SFT", "0", "0.5"]
    for beta, row in zip(("0", "0.5"), result["table"][1:]):
        final = result["runs"][beta]["final"]
        assert row["gold"] == final["gold_mean"] and row["KL to SFT"] == final["kl_to_sft"]["kl"]
        assert final["n"] == 4 and 0 <= final["vs_sft"]["win_rate"] <= 1
        assert result["runs"][beta]["curves"]["step"] == [1, 2]
    assert result["runs"]["0"]["curves"]["kl/sequence"][0] == 0.0  # iteration 1: the policy is the reference
    assert any("KL to SFT falls as β rises" in f for f in result["findings"])
    # A second call reuses the finished runs and the cached evaluations.
    lines: list[str] = []
    again = run_experiment("kl-sweep", None, [*_common(demo, "kl-sweep", "--betas", "[0.0, 0.5]"), *_ppo(demo),
                                              "--eval_prompts", "4", "--kl_prompts", "2"], log=lines.append)
    assert sum("reusing the finished run" in line for line in lines) == 2 and again["table"] == result["table"]
    # The demo's RM is retrained (its weights change): both PPO runs were trained against the old one, so they
    # are moved aside and trained again rather than reused.
    weights = demo["demo"] / "rm" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    lines = []
    run_experiment("kl-sweep", None, [*_common(demo, "kl-sweep", "--betas", "[0.0, 0.5]"), *_ppo(demo),
                                      "--eval_prompts", "4", "--kl_prompts", "2"], log=lines.append)
    assert sum("was made from other inputs (inputs.rm)" in line for line in lines) == 2
    assert not any("reusing the finished run" in line for line in lines)
    assert (out / "beta-0.stale" / "result.json").is_file() and (out / "beta-0" / "result.json").is_file()


def test_length_hack_rewards_length_and_compares_beta_zero_with_the_tether(demo):
    out = demo["out"] / "length-hack"
    result = run_experiment("length-hack", None, [*_common(demo, "length-hack", "--kl_coef", "0.3"), *_ppo(demo),
                                                  "--eval_prompts", "4", "--kl_prompts", "2"], log=lambda _: None)
    _check_outputs(result, out)
    assert {r["beta"] for r in result["runs"].values()} == {0.0, 0.3}
    samples = [json.loads(line) for line in (out / "beta-0" / "metrics.jsonl").read_text().splitlines()]
    # the training reward is the flawed one: words / 20 of the rollouts, never the gold judge
    assert all(m["reward/score"] >= 0 for m in samples)
    assert [row["policy"] for row in result["table"]] == ["SFT", "no KL (β 0)", "with KL (β 0.3)"]


def test_multi_objective_runs_each_objective_and_the_weighted_sum(demo):
    out = demo["out"] / "multi-objective"
    result = run_experiment("multi-objective", None, [*_common(demo, "multi-objective"), *_ppo(demo),
                                                      "--eval_prompts", "4", "--kl_prompts", "2"], log=lambda _: None)
    _check_outputs(result, out)
    assert [r["weights"] for r in result["runs"].values()] == [
        {"correctness": 1.0}, {"brevity": 1.0}, {"correctness": 0.7, "brevity": 0.3}]
    for run in result["runs"].values():
        assert 0 <= run["objectives"]["correctness"] <= 1 and 0 <= run["objectives"]["brevity"] <= 1
        # correctness measured on held-out greedy responses is the gold judge's correct rate
        assert run["objectives"]["correctness"] == pytest.approx(run["final"]["correct_rate"])
        # the run records which programmatic reward trained it, so another weighting is never reused for it
        assert json.loads((Path(run["dir"]) / "stage_inputs.json").read_text())["reward_fn"] == run["weights"]


def test_overoptimization_fits_the_bon_curve_and_the_ppo_checkpoints(demo):
    out = demo["out"] / "overoptimization"
    every_step = [*TINY_PPO, "--train.save_steps", "1", "--train.save_total_limit", "0"]
    args = [*_common(demo, "overoptimization", "--n", "8", "--prompts", "3", "--max_new_tokens", "12",
                     "--ppo_samples", "2"),
            "--ppo_config", str(demo["configs"] / "ppo.yaml"), "--ppo_overrides", "[" + ", ".join(every_step) + "]"]
    result = run_experiment("overoptimization", None, args, log=lambda _: None)
    _check_outputs(result, out)
    curve = result["bon"]["curve"]
    assert [c["k"] for c in curve] == list(range(1, 9))
    assert curve[0]["d"] == 0.0 and math.isclose(curve[-1]["d"] ** 2, math.log(8) - 7 / 8)
    assert all(a["proxy"] <= b["proxy"] + 1e-9 for a, b in itertools.pairwise(curve))  # best-of-k proxy never falls
    samples = json.loads((out / "bon_samples.json").read_text())
    assert len(samples["scores"]) == 3 and all(len(s) == 8 for s in samples["scores"])
    assert samples["missing_eos_penalty"] == 1.0 and len(samples["texts"][0]) == 8
    assert [len(t) for t in samples["truncated"]] == [8, 8, 8]
    assert any("cut at max_new_tokens" in f for f in result["findings"])
    assert curve[0]["gold"] == pytest.approx(sum(map(sum, samples["gold"])) / 24)  # k = 1: the mean sample
    (run_dir, ppo_run) = next(iter(result["ppo"].items()))
    # the SFT policy (d = 0) and both checkpoints, each scored on the same 3 prompts × 2 samples
    points = ppo_run["points"]
    assert [p["step"] for p in points] == [0, 1, 2] and points[0] == {"step": 0, "d": 0.0, "proxy": 0.0,
                                                                      "gold": 0.0, "kl": 0.0}
    evaluated = json.loads((out / "ppo_checkpoints.json").read_text())
    for p in points[1:]:
        entry = evaluated[str(Path(run_dir) / "checkpoints" / f"step-{p['step']}")]
        assert entry["samples"] == 6 and entry["key"]["prompts"] == samples["prompts"]
        assert p["gold"] == pytest.approx(entry["gold"] - curve[0]["gold"])  # gains over the k = 1 point
        assert p["proxy"] == pytest.approx(entry["proxy"] - curve[0]["proxy"])
        assert p["d"] == pytest.approx(math.sqrt(max(entry["kl"]["kl"], 0.0)))
    assert [p["step"] for p in ppo_run["rollout_points"]] == [1, 2]
    # the last checkpoint's policy is the policy the run saved
    from tether.models.loading import load_causal_lm, load_tokenizer
    from tether.runtime.config import load_config
    from tether.train.ppo import PPOConfig, policy_from_checkpoint

    tokenizer = load_tokenizer(run_dir)
    restored = policy_from_checkpoint(load_config(PPOConfig, str(Path(run_dir) / "config.yaml"), []),
                                      Path(run_dir) / "checkpoints" / "step-2", tokenizer)
    saved = load_causal_lm(run_dir, tokenizer).state_dict()
    assert restored.state_dict().keys() == saved.keys()
    assert all(torch.allclose(t, saved[k], atol=1e-6) for k, t in restored.state_dict().items())
    # a second call evaluates nothing again
    lines = []
    run_experiment("overoptimization", None, args, log=lines.append)
    assert not any("evaluating" in line for line in lines)


def test_rm_pooling_trains_last_and_mean_reward_models(demo):
    out = demo["out"] / "rm-pooling"
    result = run_experiment("rm-pooling", None, [
        *_common(demo, "rm-pooling"), "--rm_config", str(demo["configs"] / "rm.yaml"),
        "--rm_overrides", "[--train.max_steps, '2', --train.batch_size, '4', --train.micro_batch_size, '2', "
                          "--data.max_norm_examples, '8']"], log=lambda _: None)
    _check_outputs(result, out)
    for pooling in ("last", "mean"):
        saved = yaml.safe_load((out / f"rm-{pooling}" / "config.yaml").read_text())
        assert saved["pooling"] == pooling and saved["train"]["max_steps"] == 2
    assert [row["pooling"] for row in result["table"]] == ["last", "mean"]
    assert all(0 <= row["accuracy"] <= 1 and row["pairs"] > 0 for row in result["table"])


def test_bad_experiment_configs_name_the_problem(demo, tmp_path):
    with pytest.raises(ConfigError, match="unknown experiment 'kl-swep'"):
        experiment_config("kl-swep")
    with pytest.raises(ConfigError, match="betas"):
        experiment_config("kl-sweep", None, ["--betas", "[-1]"])
    with pytest.raises(ConfigError, match="objectives: unknown"):
        experiment_config("multi-objective", None, ["--objectives", "[correctness, politeness]"])
    with pytest.raises(ConfigError, match="run `tether demo`"):
        run_experiment("kl-sweep", None, ["--demo_dir", str(tmp_path / "nowhere"), "--output_dir", str(tmp_path)])
    assert set(EXPERIMENTS) == {"kl-sweep", "length-hack", "multi-objective", "overoptimization", "rm-pooling"}


def test_cli_reports_an_unknown_experiment_in_one_line():
    proc = subprocess.run([sys.executable, "-m", "tether.cli.main", "experiment", "nope"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown experiment 'nope'; available: kl-sweep, length-hack, multi-objective, overoptimization, "
        "rm-pooling"]
