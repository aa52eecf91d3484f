"""The DPO family on a tiny offline model: every loss trains; DPO starts at log 2 (policy == reference);
cached reference logprobs equal recomputed ones; ORPO/SimPO compute no reference; resume is exact."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tether.runtime.config import load_config
from tether.runtime.metrics import read_metrics
from tether.train.dpo import REF_CACHE, DPOConfig, train


def write_pairs(path: Path, n: int = 48) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}],
                                "chosen": f"{2 * i}.", "rejected": f"I think it might be {2 * i + 1}, not sure.",
                                "meta": {"id": i}}) + "\n")
    return path


def dpo_cfg(model_dir: Path, tmp: Path, out: str, loss: str, *extra: str) -> DPOConfig:
    return load_config(DPOConfig, None, [
        "--output_dir", str(tmp / out), "--loss", loss, "--model.name", str(model_dir), "--model.max_length", "64",
        "--data.train_files", f"[{write_pairs(tmp / 'pairs.jsonl')}]", "--data.eval_fraction", "0.2",
        "--train.max_steps", "4", "--train.batch_size", "8", "--train.micro_batch_size", "4",
        "--train.learning_rate", "1e-3", "--train.warmup_ratio", "0", "--train.logging_steps", "1",
        "--train.eval_steps", "0", "--train.report_to", "[]", *extra])


def curve(run: Path, key: str) -> list[float]:
    return [m[key] for m in read_metrics(run / "metrics.jsonl") if key in m]


@pytest.mark.parametrize("loss", ["dpo", "ipo", "kto", "orpo", "simpo"])
def test_every_loss_trains(tiny_model_dir, tmp_path, loss):
    result = train(dpo_cfg(tiny_model_dir, tmp_path, loss, loss, "--train.max_steps", "8"))
    losses = curve(tmp_path / loss, f"loss/{loss}")
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]
    assert "eval/loss" in result.eval
    needs_ref = loss in ("dpo", "ipo", "kto")
    assert (tmp_path / loss / REF_CACHE).is_file() == needs_ref  # ORPO/SimPO never compute a reference


def test_dpo_starts_at_log_two_and_margin_grows(tiny_model_dir, tmp_path):
    train(dpo_cfg(tiny_model_dir, tmp_path, "run", "dpo", "--train.max_steps", "8"))
    losses = curve(tmp_path / "run", "loss/dpo")
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)  # step 1 is computed before any update
    margins = curve(tmp_path / "run", "dpo/margin")
    assert margins[0] == pytest.approx(0.0, abs=1e-5) and margins[-1] > 0


def test_cached_reference_equals_recomputed(tiny_model_dir, tmp_path):
    from tether.data.collators import collate_pairs
    from tether.models.loading import load_causal_lm, load_tokenizer
    from tether.train.dpo import load_examples, pair_logps

    cfg = dpo_cfg(tiny_model_dir, tmp_path, "run", "dpo")
    train(cfg)
    cache = torch.load(tmp_path / "run" / REF_CACHE)["train"]
    tok = load_tokenizer(str(tiny_model_dir), 64)
    ref = load_causal_lm(str(tiny_model_dir), tok).eval()
    examples, _ = load_examples(cfg, tok)
    idx = sorted(cache)[:6]
    with torch.no_grad():
        lp = pair_logps(ref, collate_pairs([examples[i] for i in idx], tok.pad_token_id), "cpu")
    expected = torch.stack([lp["chosen"], lp["rejected"], lp["chosen_mean"], lp["rejected_mean"]], -1)
    torch.testing.assert_close(torch.stack([cache[i] for i in idx]), expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # forwards of 2 rows of similar length (the CPU default groups 4): the same values
        grouped = pair_logps(ref, collate_pairs([examples[i] for i in idx], tok.pad_token_id), "cpu", group_rows=2)
    for key in ("chosen", "rejected", "chosen_mean", "rejected_mean"):
        torch.testing.assert_close(grouped[key], lp[key], atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # one side alone (KTO): the same values as that half of the two-sided forward
        rejected = pair_logps(ref, collate_pairs([examples[i] for i in idx], tok.pad_token_id), "cpu",
                              sides=("rejected",))
    assert set(rejected) == {"rejected", "rejected_mean"}
    torch.testing.assert_close(rejected["rejected"], lp["rejected"], atol=1e-5, rtol=1e-5)


def test_kto_reference_point_is_the_mean_mismatched_logratio_of_the_whole_batch(tiny_model_dir, tmp_path):
    from tether.data.collators import collate_pairs
    from tether.models.loading import load_causal_lm, load_tokenizer
    from tether.train.dpo import kto_reference_point, load_examples, pair_logps

    cfg = dpo_cfg(tiny_model_dir, tmp_path, "kto", "kto")
    tok = load_tokenizer(str(tiny_model_dir), 64)
    policy = load_causal_lm(str(tiny_model_dir), tok).eval()
    examples, _ = load_examples(cfg, tok)
    idx = list(range(8))
    with torch.no_grad():
        lp = pair_logps(policy, collate_pairs([examples[i] for i in idx], tok.pad_token_id), "cpu")
    ref = torch.stack([lp["chosen"], lp["rejected"], lp["chosen_mean"], lp["rejected_mean"]], -1) - 0.5  # (8,4)
    ref[:4] += 1.5  # mismatched log-ratios: −1 for rows 0–3, +0.5 for rows 4–7 → mean −0.25

    z0, mean = kto_reference_point(policy, examples, [idx[:4], idx[4:]], [ref[:4], ref[4:]], tok.pad_token_id, "cpu")
    assert mean.item() == pytest.approx(-0.25, abs=1e-4) and z0.item() == 0.0  # clamped, over both chunks
    z0, mean = kto_reference_point(policy, examples, [idx[4:]], [ref[4:]], tok.pad_token_id, "cpu")
    assert mean.item() == pytest.approx(0.5, abs=1e-4) and z0.item() == pytest.approx(0.5, abs=1e-4)


def test_dpo_resume_reproduces_the_uninterrupted_run(tiny_model_dir, tmp_path):
    train(dpo_cfg(tiny_model_dir, tmp_path, "straight", "dpo"))
    train(dpo_cfg(tiny_model_dir, tmp_path, "resumed", "dpo"), interrupt_at_step=2)
    train(dpo_cfg(tiny_model_dir, tmp_path, "resumed", "dpo"))
    assert curve(tmp_path / "resumed", "loss/dpo") == pytest.approx(curve(tmp_path / "straight", "loss/dpo"),
                                                                    rel=1e-6, abs=1e-7)


def test_lora_reference_is_the_base_with_adapters_off(tiny_model_dir, tmp_path):
    train(dpo_cfg(tiny_model_dir, tmp_path, "lora", "dpo", "--model.use_lora", "true", "--model.lora_r", "4"))
    losses = curve(tmp_path / "lora", "loss/dpo")
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)  # LoRA B = 0 at init: policy == base
    assert not (tmp_path / "lora" / REF_CACHE).exists()


@pytest.mark.parametrize("loss", ["dpo", "simpo", "kto"])
def test_two_processes_follow_the_one_process_loss_curve(tiny_model_dir, tmp_path, loss):
    """With and without a cached reference: each process takes half of every step's pairs; the loss curve matches
    the 1-process run. KTO: z0 is gathered over the processes, so both runs use the whole batch's z0."""
    from launch import launch_two_processes
    from tether.runtime.config import save_config

    extra = []
    if loss == "kto":  # desirable rows only: the policy raises the mismatched answers too, so z0 leaves 0
        rows = tmp_path / "feedback.jsonl"
        rows.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}],
                                            "completion": f"{2 * i}.", "label": True}) + "\n" for i in range(48)))
        extra = ["--data.kto_unpaired_file", str(rows), "--beta", "5"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the 2 processes below
    try:
        train(dpo_cfg(tiny_model_dir, tmp_path, "one", loss, *extra))
    finally:
        torch.set_num_threads(threads)
    save_config(dpo_cfg(tiny_model_dir, tmp_path, "two", loss, *extra), tmp_path / "two.yaml")
    launch_two_processes("dpo", tmp_path / "two.yaml")
    assert json.loads((tmp_path / "two" / "result.json").read_text())["num_processes"] == 2
    assert len(curve(tmp_path / "one", f"loss/{loss}")) == 4
    assert curve(tmp_path / "two", f"loss/{loss}") == pytest.approx(curve(tmp_path / "one", f"loss/{loss}"), rel=1e-4)
    if loss == "kto":  # a z0 of 0 at every step would not tell a gathered z0 from a per-process one
        assert max(curve(tmp_path / "one", "kto/kl")) > 0
        assert curve(tmp_path / "two", "kto/kl") == pytest.approx(curve(tmp_path / "one", "kto/kl"), rel=1e-4)


@pytest.mark.parametrize("loss", ["dpo", "kto"])
def test_shared_prompt_forward_follows_the_row_by_row_loss_curve(tiny_model_dir, tmp_path, loss):
    """`train.share_prompts` (each prompt forwarded once, replies continue from its KV cache) changes the work,
    not the run: same reference cache, same loss curve, same held-out loss as one forward per prompt+reply."""
    results = {share: train(dpo_cfg(tiny_model_dir, tmp_path, f"{loss}-{share}", loss, "--train.share_prompts", share))
               for share in ("true", "false")}
    assert curve(tmp_path / f"{loss}-true", f"loss/{loss}") == pytest.approx(
        curve(tmp_path / f"{loss}-false", f"loss/{loss}"), rel=1e-4, abs=1e-6)
    assert results["true"].eval["eval/loss"] == pytest.approx(results["false"].eval["eval/loss"], rel=1e-4)
    shared, rows = (torch.load(tmp_path / f"{loss}-{s}" / REF_CACHE) for s in ("true", "false"))
    for i, row in rows["train"].items():
        torch.testing.assert_close(shared["train"][i], row, atol=1e-4, rtol=1e-5)
