"""The whole pipeline (`tether.pipeline.run_demo`) on the tiny offline model: every stage runs, writes what
the next stage and the report read, and a second run reuses every finished stage and cached evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from tether.cli.main import _print_demo_summary
from tether.errors import ConfigError
from tether.pipeline import QUICK_SIZES, DemoOptions, demo_data_record, run_demo
from tether.runtime.host import host_label, timed_elsewhere
from tether.runtime.provenance import StageRecord

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_configs(tiny_model_dir, tmp_path_factory) -> Path:
    """configs/demo with the policy swapped for the tiny model (the stages read everything else as shipped)."""
    out = tmp_path_factory.mktemp("configs")
    for src in (ROOT / "configs" / "demo").glob("*.yaml"):
        cfg = yaml.safe_load(src.read_text())
        if src.name == "sft.yaml":
            cfg["model"]["name"] = str(tiny_model_dir)
            cfg["train"]["report_to"] = []
        if "model" in cfg:
            cfg["model"]["max_length"] = 1024  # the tiny byte-level tokenizer spends ~4× the tokens
        (out / src.name).write_text(yaml.safe_dump(cfg))
    return out


@pytest.fixture(scope="module")
def first_run(tiny_configs, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    lines: list[str] = []
    opts = DemoOptions(name="t", runs_dir=str(runs), quick=True, config_dir=str(tiny_configs),
                       preference_losses=["dpo", "simpo"], eval_samples=2,  # K > 1: the i-th sample meets the i-th
                       sampled_prompts=3,  # the sampled evaluation on the first 3 of the 8 evaluated prompts
                       workers=2)  # the stages after SFT in two worker processes
    summary = run_demo(opts, log=lines.append)
    return runs / "t", summary, lines, opts


def test_every_stage_writes_its_outputs(first_run):
    run, summary, lines, opts = first_run
    for stage in ("sft", "rm", "ppo", "dpo-dpo", "dpo-simpo", "bon-4-t0.5"):  # best-of-N at the default T 0.5
        assert (run / stage / "result.json").is_file(), stage
    for stage in ("sft", "rm", "ppo", "dpo-dpo", "dpo-simpo"):  # finished: resume checkpoints deleted
        assert not (run / stage / "checkpoints").exists(), stage
    assert set(summary["policies"]) == {"base", "sft", "ppo", "dpo", "simpo"}
    assert set(summary["comparisons"]) == {"sft_vs_base", "ppo_vs_sft", "dpo_vs_sft", "simpo_vs_sft"}
    assert set(summary["kl_to_sft"]) == {"ppo", "dpo", "simpo"}
    for c in summary["comparisons"].values():
        assert c["wins"] + c["ties"] + c["losses"] == QUICK_SIZES["eval_prompts"]
    for name, p in summary["policies"].items():
        assert p["n"] == QUICK_SIZES["eval_prompts"] and p["proxy_mean"] is not None, name
    bon = summary["best_of_n"]
    assert bon["n"] == 4 and math.isclose(bon["kl_analytic"], math.log(4) - 0.75)
    assert set(summary["train_seconds"]) == {"ppo", "dpo", "simpo"}
    # Sampled evaluation: K samples per prompt for SFT and each trained policy, paired in order, best-of-N's pick
    # against each of SFT's samples on its prompts.
    k, n = opts.eval_samples, opts.sampled_prompts
    sampled = summary["sampled"]
    assert k == 2 and n < QUICK_SIZES["eval_prompts"]
    assert (sampled["samples_per_prompt"], sampled["temperature"], sampled["prompts"]) == (2, 1.0, n)
    assert set(sampled["policies"]) == {"sft", "ppo", "dpo", "simpo"}
    assert all(p["n"] == k * n for p in sampled["policies"].values())
    assert set(sampled["comparisons"]) == {"ppo_vs_sft", "dpo_vs_sft", "simpo_vs_sft"}
    for c in sampled["comparisons"].values():
        assert c["wins"] + c["ties"] + c["losses"] == k * n and c["ci_low"] <= c["win_rate"] <= c["ci_high"]
    c = bon["vs_sft_sampled"]
    assert n < QUICK_SIZES["bon"][1]  # best-of-N's 4 prompts: compared with SFT's samples on the 3 both cover
    assert c["wins"] + c["ties"] + c["losses"] == k * n
    assert any(f"on the {n} of its {QUICK_SIZES['bon'][1]} prompts that the sampled evaluation covers" in line
               for line in lines)
    sft_samples = [json.loads(line)["sft"]["response"]
                   for line in (run / "eval" / "sampled_samples.jsonl").read_text().splitlines()]
    assert len(sft_samples) == k * n
    report = json.loads((run / "report.json").read_text())
    assert {row["name"] for row in report["policies"]} >= {"sft", "ppo", "dpo", "simpo"}
    assert [row["name"] for row in report["sampled"]["policies"]] == ["sft", "ppo", "dpo", "simpo", "bon4-t0.5"]
    page = (run / "report.html").read_text()
    assert 'id="sampled-table"' in page and f"on the first {n} of the same held-out prompts" in page
    # Every stage's seconds come with the host they were measured on: here, one thread in a worker after SFT.
    here = host_label(summary["host"])
    assert summary["host"]["matmul_gflops"] > 0 and any(line.startswith(f"host: {here}; fp32 matmul") for line in lines)
    assert set(summary["timing_hosts"]) == set(summary["timings"])
    assert all(h.startswith(here) for h in summary["timing_hosts"].values())
    assert summary["timing_hosts"]["rm_s"] == f"{here}, 1 thread" and timed_elsewhere(summary) == {}
    assert [row["stage"] for row in report["timings"]["stages"]] == [k[:-2] for k in summary["timings"]]
    assert "<table id='timings-table'>" in page and f"This run's host: {here}" in page
    # The stages after SFT and the evaluations' generation ran in the workers, each writing its own log.
    for key in ("label-onpolicy_pairs.jsonl", "rm_s", "ppo_s", "dpo_s", "simpo_s", "bon_s", "eval-base", "eval-sft",
                "eval-ppo-sampled"):
        assert (run / "logs" / f"{key}.log").stat().st_size > 0, key
    assert "evaluating" in (run / "logs" / "eval-dpo.log").read_text()
    assert any(line.startswith("[4/9] rm: ") and "(in a worker; log" in line for line in lines)
    assert any("[4/9] rm: " in line and "done by a worker" in line for line in lines)
    assert any(line == "      base: no proxy score yet; added" for line in lines)
    # Progress: one numbered line per stage, in pipeline order.
    numbered = [line.split("]")[0] for line in lines if line.startswith("[")]
    assert numbered[0] == "[1/9" and numbered[-1] == "[9/9"


def test_rerun_reuses_finished_stages_and_evaluations(first_run):
    run, summary, _, opts = first_run
    mtimes = {p: p.stat().st_mtime for p in run.glob("*/result.json")}
    lines: list[str] = []
    (run / "summary.json").unlink()  # the reused stages' figures must come from the outcomes saved beside them
    again = run_demo(opts, log=lines.append)
    text = "\n".join(lines)
    for stage in ("sft", "rm", "ppo", "dpo-dpo", "dpo-simpo"):
        assert f"reusing the finished run in {run / stage}" in text, stage
    for name in ("base", "sft", "ppo", "dpo", "simpo"):
        assert f"{name}: reusing {run / 'eval' / f'policy-{name}.json'}" in text
    for name in ("sft", "ppo", "dpo", "simpo"):
        assert f"{name}: reusing {run / 'eval' / f'policy-{name}-sampled.json'}" in text
    assert again["sampled"] == summary["sampled"]
    assert {p: p.stat().st_mtime for p in run.glob("*/result.json")} == mtimes
    assert again["comparisons"] == summary["comparisons"] and again["kl_to_sft"] == summary["kl_to_sft"]
    # Reused stages report the seconds they took when they ran, not this run's ~0 s, and the label counts.
    assert set(again["reused"]) == {"data", "sft", "label", "rm", "ppo", "dpo", "simpo", "bon"}
    for key in ("sft_s", "label_s", "rm_s", "ppo_s", "dpo_s", "simpo_s", "bon_s"):
        assert again["timings"][key] == summary["timings"][key] > 0, key
        assert again["timing_hosts"][key] == summary["timing_hosts"][key], key  # where they were measured, too
    assert summary["labelling"] and again["labelling"] == summary["labelling"]
    assert summary["reused"] == []


def test_bad_options_name_the_field(tiny_configs, tmp_path):
    with pytest.raises(ConfigError, match="skip: unknown stage rm"):
        run_demo(DemoOptions(runs_dir=str(tmp_path), skip=["rm"], config_dir=str(tiny_configs)))
    with pytest.raises(ConfigError, match="preference_losses: unknown loss dpp"):
        run_demo(DemoOptions(runs_dir=str(tmp_path), preference_losses=["dpp"], config_dir=str(tiny_configs)))
    bad = [({"bon_n": -3}, "bon_n must be >= 1, got -3"), ({"eval_prompts": 0}, "eval_prompts must be >= 1"),
           ({"samples_per_prompt": 1}, "samples_per_prompt must be >= 2"),
           ({"rm_templated_pairs": -1}, "rm_templated_pairs must be >= 0, got -1"),
           ({"eval_temperature": 0.0}, "eval_temperature must be > 0"),
           ({"bon_kl_coef": -0.5}, "bon_kl_coef must be a finite number >= 0, got -0.5"),
           ({"bon_temperature": 0.0}, "bon_temperature must be a finite number > 0, got 0.0"),
           ({"bon_prompts": 400}, r"bon_prompts \(400\) must be <= eval_prompts \(300\)"),
           ({"sampled_prompts": 0}, "sampled_prompts must be >= 1, got 0"),
           ({"sampled_prompts": 400}, r"sampled_prompts \(400\) must be <= eval_prompts \(300\)"),
           ({"config_dir": str(tmp_path / "none")}, "config_dir: .* has no sft.yaml, rm.yaml, ppo.yaml")]
    for fields, message in bad:
        with pytest.raises(ConfigError, match=message):
            run_demo(DemoOptions(**{"runs_dir": str(tmp_path), "config_dir": str(tiny_configs), **fields}))
    assert not list(tmp_path.iterdir())  # refused before any stage ran
    with pytest.raises(ConfigError, match=r"kl_prompts \(50\) must be <= eval_prompts \(40\)"):
        run_demo(DemoOptions(runs_dir=str(tmp_path), eval_prompts=40, bon_prompts=10, eval_samples=0,
                             config_dir=str(tiny_configs)))
    # kl_prompts (50) and bon_prompts (50) unused there: KL comes from the temperature-1 sampled evaluation, and
    # best-of-N is skipped; without a sampled evaluation, sampled_prompts (100) is unused
    DemoOptions(eval_prompts=40, sampled_prompts=40, skip=["bon"], config_dir=str(tiny_configs)).validate()
    DemoOptions(eval_prompts=40, eval_samples=0, kl_prompts=40, skip=["bon"], config_dir=str(tiny_configs)).validate()
    with pytest.raises(ConfigError, match=r"eval_prompts: 900 asked, the demo task has 300 \("):
        run_demo(DemoOptions(runs_dir=str(tmp_path), eval_prompts=900, config_dir=str(tiny_configs)))


def test_stage_whose_inputs_changed_runs_again(first_run, tmp_path, capsys):
    """A run copied elsewhere (new mtimes) is still recognised; after the reward model changes, the stages made
    with the old one (PPO, best-of-N) are moved aside and run again, and the others are reused. This run takes
    the serial path (one worker: each stage in this process)."""
    import shutil

    run, _, _, opts = first_run
    moved = tmp_path / "moved"
    shutil.copytree(run, moved / "t", copy_function=shutil.copy)  # `cp -r`: new mtimes, same weights
    opts = DemoOptions(**{**opts.__dict__, "runs_dir": str(moved), "workers": 1})
    lines: list[str] = []
    run_demo(opts, log=lines.append)
    text = "\n".join(lines)
    assert "made from other inputs" not in text and "no record of its inputs" not in text
    for stage in ("sft", "rm", "ppo", "dpo-dpo", "dpo-simpo"):
        assert f"reusing the finished run in {moved / 't' / stage}" in text, stage

    weights = moved / "t" / "rm" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # what a retrained RM looks like: other weights
    weights.write_bytes(bytes(data))
    lines = []
    run_demo(opts, log=lines.append)
    text = "\n".join(lines)
    for stage in ("ppo", "bon-4-t0.5"):
        assert f"{moved / 't' / stage} was made from other inputs (inputs.rm)" in text, stage
        assert (moved / "t" / f"{stage}.stale" / "result.json").is_file()
        assert (moved / "t" / stage / "result.json").is_file()
    for stage in ("sft", "rm", "dpo-dpo", "dpo-simpo"):
        assert f"reusing the finished run in {moved / 't' / stage}" in text, stage
    assert "ppo: reusing" not in text  # the retrained PPO policy is evaluated again

    opts = DemoOptions(**{**opts.__dict__, "bon_kl_coef": 0.3})  # a regularised pick: best-of-N alone runs again
    lines = []
    summary = run_demo(opts, log=lines.append)
    text = "\n".join(lines)
    result = json.loads((moved / "t" / "bon-4-kl0.3-t0.5" / "result.json").read_text())
    assert result["kl_coef"] == 0.3 and result["name"] == "bon4-kl0.3-t0.5" and "policy_logprob_after" in result
    plain = json.loads((moved / "t" / "bon-4-t0.5" / "result.json").read_text())
    assert plain["kl_coef"] == 0.0  # the plain run stays
    for stage in ("sft", "rm", "ppo", "dpo-dpo", "dpo-simpo"):
        assert f"reusing the finished run in {moved / 't' / stage}" in text, stage
    # at T 0.5 the analytic KL is to the tempered policy; the KL to SFT itself is estimated on top of it
    assert result["temperature"] == 0.5 and summary["best_of_n"]["temperature"] == 0.5
    assert result["kl_to_policy"] == pytest.approx(result["kl_analytic"] + result["tempered_shift"])
    assert summary["best_of_n"]["kl_to_policy"] == pytest.approx(result["kl_to_policy"])
    _print_demo_summary(summary, "t")  # what `tether demo` prints at the end
    out = capsys.readouterr().out
    assert (f"best-of-4 (at T 0.5: analytic KL {result['kl_analytic']:.2f} to the tempered policy, ≈ "
            f"{result['kl_to_policy']:.2f} to sft, picked by RM score + 0.3·log π)") in out
    assert f"timings (s) on {host_label(summary['host'])}: data " in out

    # temperature 1: best-of-N alone runs again, into the plain dir, where the analytic KL is to SFT itself
    opts = DemoOptions(**{**opts.__dict__, "bon_kl_coef": 0.0, "bon_temperature": 1.0})
    summary = run_demo(opts, log=[].append)
    result = json.loads((moved / "t" / "bon-4" / "result.json").read_text())
    assert result["temperature"] == 1.0 and result["name"] == "bon4" and "kl_to_policy" not in result
    assert summary["best_of_n"]["temperature"] == 1.0 and summary["best_of_n"]["kl_to_policy"] is None
    _print_demo_summary(summary, "t")
    assert f"best-of-4 (analytic KL {result['kl_analytic']:.2f}): RM score" in capsys.readouterr().out


@pytest.mark.parametrize("old_record", [
    {"config": {"seed": 0}, "inputs": {}},  # task version 1 recorded the seed alone
    {"config": {"seed": 0, "task_version": 2}, "inputs": {}},  # version 2 first kept its version as a config field
])
def test_a_data_dir_of_another_task_version_is_made_again(tmp_path, old_record):
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text("{}")
    (data / "stage_inputs.json").write_text(json.dumps(old_record))
    lines: list[str] = []
    assert not StageRecord(data, done_marker="manifest.json").reuse(demo_data_record(0), lines.append)
    assert "made from other inputs" in lines[0] and "task_version" in lines[0]
    assert (tmp_path / "data.stale" / "manifest.json").is_file()
    (data / "manifest.json").write_text("{}")  # made again: now it is reused
    assert StageRecord(data, done_marker="manifest.json").reuse(demo_data_record(0), lines.append)
    assert not StageRecord(data, done_marker="manifest.json").reuse(demo_data_record(1), lines.append)
