"""The CLI through a subprocess, as a user runs it: the configs the README shows, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def tether(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tether.cli.main", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=600)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_sft_from_the_demo_config_with_overrides(tiny_model_dir, tmp_path, sft_file):
    data = sft_file(tmp_path / "sft.jsonl")
    proc = tether("sft", "--config", str(ROOT / "configs/demo/sft.yaml"), "--model.name", str(tiny_model_dir),
                  "--data.train_file", str(data), "--output_dir", str(tmp_path / "run"), "--train.max_steps", "2",
                  "--train.batch_size", "4", "--train.micro_batch_size", "2", "--train.save_steps", "0",
                  "--train.eval_steps", "0", "--train.report_to", "[]")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sft: 2 steps" in proc.stdout
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "max_steps: 2" in saved and str(tiny_model_dir) in saved  # the resolved config is replayable
    assert json.loads((tmp_path / "run" / "result.json").read_text())["steps"] == 2


def test_unknown_config_field_is_one_line(tmp_path):
    assert_one_line_error(tether("sft", "--config", str(ROOT / "configs/demo/sft.yaml"), "--train.lerning_rate", "1"),
                          "train.lerning_rate", "did you mean 'train.learning_rate'")


def test_bad_yaml_value_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_size: eight\n")
    assert_one_line_error(tether("sft", "--config", str(bad)), "bad.yaml", "train.batch_size")


def test_missing_data_file_is_one_line(tiny_model_dir, tmp_path, sft_file):
    assert_one_line_error(tether("sft", "--model.name", str(tiny_model_dir), "--data.train_file",
                                 str(tmp_path / "nope.jsonl"), "--output_dir", str(tmp_path / "run")), "nope.jsonl")


def test_bad_rows_refuse_the_run_with_one_line(tiny_model_dir, tmp_path, sft_file):
    data = sft_file(tmp_path / "sft.jsonl", n=8)
    with data.open("a") as f:
        f.write('{"prompt": [{"role": "user", "content": "Hi"}], "completion": "  "}\n{not json\n')
    proc = tether("sft", "--model.name", str(tiny_model_dir), "--data.train_file", str(data),
                  "--output_dir", str(tmp_path / "run"), "--train.report_to", "[]")
    assert_one_line_error(proc, "sft.jsonl", "2 bad rows")


def test_unknown_model_dir_is_one_line(tmp_path, sft_file):
    data = sft_file(tmp_path / "sft.jsonl")
    proc = tether("sft", "--model.name", str(tmp_path / "no-such-model"), "--data.train_file", str(data),
                  "--output_dir", str(tmp_path / "run"))
    assert_one_line_error(proc, "no-such-model")


def test_data_validate_lists_each_bad_row(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "Q1", "chosen": "A", "rejected": "B"}, {"prompt": "Q2", "chosen": "same", "rejected": "same"},
            {"prompt": "Q3", "chosen": "", "rejected": "B"}, {"prompt": "Q4", "chosen": "A"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = tether("data", "validate", str(path), "--kind", "preference")
    assert proc.returncode == 1
    assert f"{path}:2:" in proc.stdout and f"{path}:3:" in proc.stdout and f"{path}:4:" in proc.stdout
    assert f"{path}:1:" not in proc.stdout


def test_data_make_demo_and_models_list(tmp_path):
    proc = tether("data", "make", "demo", "--out", str(tmp_path / "d"), "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["seed"] == 1
    proc = tether("models", "list")
    assert proc.returncode == 0 and "smollm2-135m-instruct" in proc.stdout


def test_rm_and_dpo_commands_run_from_the_demo_configs(tiny_model_dir, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"What is {i} plus {i}?", "chosen": f"{2 * i}.",
                                         "rejected": f"Maybe {2 * i + 1}?"}) + "\n" for i in range(24)))
    common = ["--model.name", str(tiny_model_dir), "--train.max_steps", "2", "--train.batch_size", "4",
              "--train.micro_batch_size", "2", "--train.report_to", "[]", "--train.save_steps", "0",
              "--train.eval_steps", "0", "--model.max_length", "64"]
    proc = tether("dpo", "--config", str(ROOT / "configs/demo/dpo.yaml"), "--loss", "simpo", "--data.format", "auto",
                  "--data.train_files", f"[{pairs}]", "--output_dir", str(tmp_path / "dpo"),
                  "--data.eval_fraction", "0.2", *common)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "simpo: 2 steps" in proc.stdout
    proc = tether("rm", "--config", str(ROOT / "configs/demo/rm.yaml"), "--data.train_files", f"[{pairs}]",
                  "--data.eval_file", "null", "--data.norm_file", "null", "--data.format", "auto",
                  "--output_dir", str(tmp_path / "rm"), *common)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rm: 2 steps" in proc.stdout and "held-out accuracy" in proc.stdout
    proc = tether("eval", "rm", "--model", str(tmp_path / "rm"), "--pairs", str(pairs),
                  "--out", str(tmp_path / "e.json"), "--by", "family", "--likelihood-of", str(tiny_model_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["n_pairs"] == 24 and len(report["reliability"]) == 10
    baseline = report["likelihood_baseline"]
    assert baseline["n_pairs"] == 24 and baseline["policy"] == str(tiny_model_dir)
    assert 0 <= baseline["accuracy_sum"] <= 1 and "log-likelihood under" in proc.stdout
    assert report["by"]["family"] == {"(none)": {"n": 24, "accuracy": report["accuracy"]}}  # no family field
    proc = tether("eval", "rm", "--model", str(tmp_path / "rm"), "--pairs", str(pairs), "--by", "correctness")
    assert proc.returncode != 0 and "correctness needs demo-task pairs" in proc.stderr
    assert "Traceback" not in proc.stderr
    for stage in ("sft", "rm", "dpo"):
        assert tether("config", stage).returncode == 0


def test_eval_policy_samples_k_per_prompt_and_refuses_bad_options(tiny_model_dir, tmp_path):
    proc = tether("data", "make", "demo", "--out", str(tmp_path / "d"))
    assert proc.returncode == 0, proc.stderr
    common = ("eval", "policy", "--model", str(tiny_model_dir), "--baseline", str(tiny_model_dir), "--prompts",
              str(tmp_path / "d" / "eval_prompts.jsonl"), "--limit", "3", "--max-new-tokens", "6")
    proc = tether(*common, "--samples", "2", "--interleave", "--out", str(tmp_path / "e.json"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads((tmp_path / "e.json").read_text())
    rows = [json.loads(line)["policy"] for line in (tmp_path / "e_samples.jsonl").read_text().splitlines()]
    assert len({r["family"] for r in rows}) == 3  # interleaved: the first 3 prompts are from 3 families
    assert out["policies"]["policy"]["n"] == out["policies"]["baseline"]["n"] == 6
    c = out["comparisons"]["policy_vs_baseline"]
    # the same model with the same seed samples the same responses: every pair ties
    assert (c["wins"], c["ties"], c["losses"], c["win_rate"]) == (0, 6, 0, 0.5)
    assert_one_line_error(tether(*common, "--samples", "-1"), "--samples must be >= 0")


def test_data_label_with_gold_and_with_a_reward_model(tiny_model_dir, tmp_path):
    from tether.models.loading import load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel

    assert tether("data", "make", "demo", "--out", str(tmp_path / "d")).returncode == 0
    tokenizer = load_tokenizer(str(tiny_model_dir))
    ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tokenizer, seed=3).save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    common = ("data", "label", "--prompts", str(tmp_path / "d" / "eval_prompts.jsonl"), "--model",
              str(tiny_model_dir), "--k", "3", "--limit", "4", "--max-new-tokens", "6")
    for labeller in ("gold", "rm"):
        extra = ("--reward-model", str(tmp_path / "rm")) if labeller == "rm" else ()
        out = tmp_path / f"{labeller}.jsonl"
        proc = tether(*common, "--labeller", labeller, *extra, "--out", str(out))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"pairs to {out}" in proc.stdout
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert all(r["chosen"] != r["rejected"] for r in rows)
        if labeller == "rm":  # a random head scores distinct responses differently: every prompt gives a pair
            assert len(rows) >= 4
    assert_one_line_error(tether(*common, "--labeller", "rm", "--out", str(tmp_path / "x.jsonl")),
                          "--labeller rm needs --reward-model")
    assert_one_line_error(tether(*common, "--labeller", "rm", "--reward-model", str(tmp_path / "rm"),
                                 "--missing-eos-penalty", "-1", "--out", str(tmp_path / "x.jsonl")),
                          "--missing-eos-penalty must be ≥ 0")


def test_data_counterfactual_makes_gold_judged_minimal_pairs(tmp_path):
    from tether.data.gold_judge import gold_score

    assert tether("data", "make", "demo", "--out", str(tmp_path / "d")).returncode == 0
    out = tmp_path / "cf.jsonl"
    proc = tether("data", "counterfactual", "--pairs", str(tmp_path / "d" / "preference.jsonl"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) > 100 and f"wrote {len(rows)} minimal pairs to {out}" in proc.stdout
    for r in rows:
        assert r["meta"]["pair_type"] == "counterfactual"
        assert gold_score(r["meta"], r["chosen"]).correct and not gold_score(r["meta"], r["rejected"]).correct
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away."}) + "\n")
    assert_one_line_error(tether("data", "counterfactual", "--pairs", str(plain), "--out", str(tmp_path / "x.jsonl")),
                          "pair 1: counterfactual pairs need demo-task meta")
