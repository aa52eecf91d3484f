"""`tether eval compare` and `tether report` through a subprocess (tiny model; a synthetic run dir), and their
one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from synthetic_run import make_bon_inputs, make_run

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


def test_eval_compare_gold_judge_with_rm_proxy_and_kl(files, tiny_model_dir):
    out = files["root"] / "cmp.json"
    export = files["root"] / "pairs.jsonl"
    proc = tether("eval", "compare", "--a", str(tiny_model_dir), "--b", str(tiny_model_dir), "--prompts",
                  str(files["prompts"]), "--judge", "gold", "--reward-model", str(files["rm"]), "--reference",
                  str(tiny_model_dir), "--samples", "2", "--max-new-tokens", "5", "--out", str(out),
                  "--export-pairs", str(export))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["win_rate"]["ties"] == 4 and report["win_rate"]["a_vs_b"] == 0.5  # a policy vs itself
    assert abs(report["policies"]["a"]["kl"]["kl"]) < 1e-4
    assert report["policies"]["a"]["proxy_mean"] == pytest.approx(report["policies"]["b"]["proxy_mean"])
    assert "win rate A vs B (gold): 50.0%" in proc.stdout and "self-similarity" in proc.stdout
    assert len(export.read_text().splitlines()) == 4


def test_eval_compare_bad_judge_is_one_line(files):
    assert_one_line_error(tether("eval", "compare", "--a", "x", "--b", "y", "--prompts", str(files["prompts"]),
                                 "--judge", "judge-me.jsonl"), "--judge", "judge-me.jsonl")


def test_report_command_and_its_error(tmp_path):
    run = make_run(tmp_path)
    proc = tether("report", str(run))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run / "report.html").is_file() and json.loads((run / "report.json").read_text())["run"] == "demo"
    assert_one_line_error(tether("report", str(tmp_path / "missing")), "missing", "no such run directory")
