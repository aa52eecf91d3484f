"""`tether bon` through a subprocess on the tiny model: its outputs, an SFT run on its export, its errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from synthetic_run import make_bon_inputs

ROOT = Path(__file__).resolve().parents[2]


def tether(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tether.cli.main", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model_dir):
    return make_bon_inputs(tmp_path_factory.mktemp("cli"), tiny_model_dir)


def test_bon_writes_result_candidates_and_an_sft_dataset_sft_trains_on(files, tiny_model_dir):
    out = files["root"] / "bon"
    proc = tether("bon", "--policy", str(tiny_model_dir), "--reward-model", str(files["rm"]), "--prompts",
                  str(files["prompts"]), "--n", "3", "--out", str(out), "--max-new-tokens", "6", "--seed", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "log N − (N−1)/N = 0.432 nats" in proc.stdout and "win rate vs" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["kl_analytic"] == pytest.approx(math.log(3) - 2 / 3) and result["prompts"] == 4
    assert result["proxy_after"] >= result["proxy_before"]  # the max of each prompt's scores is ≥ their mean
    assert result["vs_baseline"]["wins"] + result["vs_baseline"]["ties"] + result["vs_baseline"]["losses"] == 4
    candidates = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    assert [len(c["candidates"]) for c in candidates] == [3] * 4
    for c in candidates:
        scores = [x["score"] for x in c["candidates"]]
        assert scores[c["chosen"]] == max(scores)
    evaluated = json.loads((out / "eval.json").read_text())
    assert set(evaluated["policies"]) == {"baseline", "bon3"}
    # every chosen response is in sft.jsonl or counted as dropped (a random tiny model often runs to 6 tokens)
    assert result["sft_examples"] + sum(result["sft_dropped"].values()) == 4
    if result["sft_examples"]:
        from tether.data.validate import load_records

        assert len(load_records(out / "sft.jsonl", "sft")[0]) == result["sft_examples"]


def test_bon_at_another_temperature_reports_the_kl_to_the_policy_itself(files, tiny_model_dir):
    out = files["root"] / "bon-t"
    proc = tether("bon", "--policy", str(tiny_model_dir), "--scorer", "gold", "--prompts", str(files["prompts"]),
                  "--n", "3", "--out", str(out), "--max-new-tokens", "6", "--temperature", "0.3", "--baseline", "none")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    assert result["kl_to_policy"] == pytest.approx(result["kl_analytic"] + result["tempered_shift"])
    lo, hi = result["kl_to_policy_ci"]
    assert lo <= result["kl_to_policy"] <= hi and result["temperature"] == 0.3
    assert "KL to the policy at T 0.3 ≤ log N − (N−1)/N = 0.432 nats; to the policy itself ≤ " in proc.stdout


def test_bon_without_a_reward_model_is_one_line(files, tiny_model_dir):
    assert_one_line_error(tether("bon", "--policy", str(tiny_model_dir), "--prompts", str(files["prompts"]),
                                 "--out", str(files["root"] / "x")), "--reward-model")


def test_bon_with_a_kl_coef_picks_by_score_plus_beta_log_pi(files, tiny_model_dir):
    out = files["root"] / "bon-reg"
    proc = tether("bon", "--policy", str(tiny_model_dir), "--reward-model", str(files["rm"]), "--prompts",
                  str(files["prompts"]), "--n", "3", "--out", str(out), "--max-new-tokens", "6", "--seed", "1",
                  "--kl-coef", "0.5", "--baseline", "none")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(selection: score + 0.5·log π)" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["kl_coef"] == 0.5 and "policy_logprob_after" in result
    for c in (json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()):
        selection = [x["score"] + 0.5 * x["policy_logprob"] for x in c["candidates"]]
        assert selection[c["chosen"]] == max(selection)
    assert_one_line_error(tether("bon", "--policy", str(tiny_model_dir), "--scorer", "gold", "--prompts",
                                 str(files["prompts"]), "--out", str(files["root"] / "y"), "--kl-coef", "0.1"),
                          "--kl-coef")
