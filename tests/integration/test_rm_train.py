"""Reward-model training on a tiny offline model: it learns a separable preference, evaluation and the
bias shift are right, resume reproduces the uninterrupted run, the saved model reloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tether.runtime.config import load_config
from tether.runtime.metrics import read_metrics
from tether.train.reward import RMConfig, train


def write_pairs(path: Path, n: int = 64, offset: int = 0) -> Path:
    """Chosen = a short correct answer; rejected = a padded one (the demo's concise-vs-padded contrast)."""
    with path.open("w") as f:
        for i in range(offset, offset + n):
            q = f"What is {i} plus {i}?"
            f.write(json.dumps({"prompt": [{"role": "user", "content": q}], "chosen": f"{2 * i}.",
                                "rejected": f"Great question! I think it might be {2 * i}, but I am not sure.",
                                "meta": {"id": i}}) + "\n")
    return path


def rm_cfg(model_dir: Path, tmp: Path, out: str, *extra: str) -> RMConfig:
    return load_config(RMConfig, None, [
        "--output_dir", str(tmp / out), "--model.name", str(model_dir), "--model.max_length", "64",
        "--data.train_files", f"[{write_pairs(tmp / 'train.jsonl')}]",
        "--data.eval_file", str(write_pairs(tmp / "eval.jsonl", 16, offset=500)),
        "--data.norm_file", str(tmp / "norm.jsonl"),
        "--train.max_steps", "4", "--train.batch_size", "8", "--train.micro_batch_size", "4",
        "--train.learning_rate", "3e-3", "--train.warmup_ratio", "0", "--train.logging_steps", "1",
        "--train.eval_steps", "0", "--train.report_to", "[]", *extra])


@pytest.fixture
def norm_file(tmp_path, sft_file):
    return sft_file(tmp_path / "norm.jsonl", n=16)


def test_rm_learns_and_normalises(tiny_model_dir, tmp_path, norm_file):
    result = train(rm_cfg(tiny_model_dir, tmp_path, "rm", "--train.max_steps", "16"))
    assert result.eval["eval/accuracy"] == 1.0  # held-out prompts never trained on
    assert result.eval["eval/margin"] > 0
    curve = [m["loss/reward"] for m in read_metrics(tmp_path / "rm" / "metrics.jsonl") if "loss/reward" in m]
    assert curve[-1] < 0.05 < curve[0]
    # the saved model reloads with its bias shift, and the reference demonstrations now score ~0 on average
    from tether.data.tokenization import encode_sft_examples
    from tether.data.validate import load_records
    from tether.models.loading import load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel
    from tether.models.scoring import score_sequences

    rm = ScalarHeadModel.from_pretrained(tmp_path / "rm").eval()
    assert float(rm.bias_shift) == pytest.approx(result.bias_shift)
    tok = load_tokenizer(str(tmp_path / "rm"))
    examples, _ = encode_sft_examples(tok, load_records(norm_file, "sft")[0], 64)
    scores = score_sequences(rm, [e.prompt_ids for e in examples], [e.response_ids for e in examples],
                             tok.pad_token_id)
    assert sum(scores) / len(scores) == pytest.approx(0.0, abs=1e-4)
    saved = json.loads((tmp_path / "rm" / "result.json").read_text())
    assert saved["eval/accuracy"] == 1.0 and saved["train_pairs"] == 64
    # the final held-out scores saved beside the model are the saved model's own scores (bias shift included),
    # so the pipeline's evaluation can read them instead of scoring the pairs again
    from tether.data.validate import load_many
    from tether.eval.reward_eval import HELD_OUT_SCORES, encode_within, load_held_out_scores
    from tether.models.scoring import score_pairs

    held_out, _ = load_many([str(tmp_path / "eval.jsonl")], "preference", "auto", False)
    encoded, _ = encode_within(tok, held_out, 64)
    chosen, rejected = load_held_out_scores(tmp_path / "rm" / HELD_OUT_SCORES, encoded)
    fresh_c, fresh_r = score_pairs(rm, encoded, tok.pad_token_id)
    assert chosen == pytest.approx(fresh_c, abs=1e-4) and rejected == pytest.approx(fresh_r, abs=1e-4)
    assert abs(result.bias_shift) > 1e-3  # the shift is not trivially zero, so the check above can fail


def test_rm_resume_reproduces_the_uninterrupted_run(tiny_model_dir, tmp_path, norm_file):
    from tether.eval.reward_eval import HELD_OUT_SCORES

    train(rm_cfg(tiny_model_dir, tmp_path, "straight"))
    (tmp_path / "resumed").mkdir()
    (tmp_path / "resumed" / HELD_OUT_SCORES).write_text("{}")  # an earlier run's scores in the same dir
    train(rm_cfg(tiny_model_dir, tmp_path, "resumed"), interrupt_at_step=2)
    assert not (tmp_path / "resumed" / HELD_OUT_SCORES).exists()  # gone until this run's final scores are saved
    train(rm_cfg(tiny_model_dir, tmp_path, "resumed"))

    def losses(run):
        return [m["loss/reward"] for m in read_metrics(tmp_path / run / "metrics.jsonl") if "loss/reward" in m]

    assert len(losses("resumed")) == 4
    assert losses("resumed") == pytest.approx(losses("straight"), rel=1e-6, abs=1e-7)


def test_rm_lora_trains_only_adapters_and_head(tiny_model_dir, tmp_path, norm_file):
    result = train(rm_cfg(tiny_model_dir, tmp_path, "lora", "--model.use_lora", "true", "--model.lora_r", "4"))
    assert torch.isfinite(torch.tensor(result.eval["eval/margin"]))
    assert (tmp_path / "lora" / "score_head.safetensors").is_file()


def test_logged_loss_is_the_global_batch_loss_however_it_is_split(tiny_model_dir, tmp_path, norm_file):
    train(rm_cfg(tiny_model_dir, tmp_path, "mb4"))
    train(rm_cfg(tiny_model_dir, tmp_path, "mb8", "--train.micro_batch_size", "8"))

    def first(run):
        return next(m["loss/reward"] for m in read_metrics(tmp_path / run / "metrics.jsonl") if "loss/reward" in m)

    assert first("mb4") == pytest.approx(first("mb8"), rel=1e-5)
    assert 0.3 < first("mb8") < 1.5  # ~log 2 at a random head: not halved by microbatching


def test_two_processes_follow_the_one_process_loss_curve(tiny_model_dir, tmp_path, norm_file):
    """Each process scores half of every step's pairs (in forwards of similar-length rows); gradients are averaged
    over processes, so the loss curve and the held-out accuracy match the 1-process run."""
    from launch import launch_two_processes
    from tether.runtime.config import save_config

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the 2 processes below
    try:
        one = train(rm_cfg(tiny_model_dir, tmp_path, "one"))
    finally:
        torch.set_num_threads(threads)
    save_config(rm_cfg(tiny_model_dir, tmp_path, "two"), tmp_path / "two.yaml")
    launch_two_processes("rm", tmp_path / "two.yaml")
    assert json.loads((tmp_path / "two" / "result.json").read_text())["num_processes"] == 2

    def curve(run: str) -> list[float]:
        return [m["loss/reward"] for m in read_metrics(tmp_path / run / "metrics.jsonl") if "loss/reward" in m]

    assert len(curve("one")) == 4 and curve("two") == pytest.approx(curve("one"), rel=1e-4)
    two = json.loads((tmp_path / "two" / "result.json").read_text())
    assert two["eval/accuracy"] == one.eval["eval/accuracy"]


def test_shared_prompt_forward_follows_the_row_by_row_loss_curve(tiny_model_dir, tmp_path, norm_file):
    """`train.share_prompts` (each pair's prompt forwarded once) changes the work, not the run."""
    runs = {share: train(rm_cfg(tiny_model_dir, tmp_path, share, "--train.share_prompts", share))
            for share in ("true", "false")}

    def curve(run: str) -> list[float]:
        return [m["loss/reward"] for m in read_metrics(tmp_path / run / "metrics.jsonl") if "loss/reward" in m]

    assert len(curve("true")) == 4 and curve("true") == pytest.approx(curve("false"), rel=1e-4)
    assert runs["true"].eval["eval/accuracy"] == runs["false"].eval["eval/accuracy"]
    # 4 steps at lr 3e-3 amplify float rounding: the shifts agree to ~2e-4 relative
    assert runs["true"].bias_shift == pytest.approx(runs["false"].bias_shift, rel=1e-3)


def write_ranked_replies(path: Path, n: int = 16) -> Path:
    """Three replies per prompt ranked short > plain > padded: all three pairs for even i, one for odd i (so
    prompts, microbatches and processes hold different pair counts)."""
    with path.open("w") as f:
        for i in range(n):
            prompt = [{"role": "user", "content": f"What is {i} plus {i}?"}]
            best, plain, padded = f"{2 * i}.", f"It is {2 * i}.", f"Great question! It might be {2 * i}, not sure."
            for chosen, rejected in ([(best, plain), (best, padded), (plain, padded)] if i % 2 == 0
                                     else [(best, padded)]):
                f.write(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}) + "\n")
    return path


def loss_curve(run: Path) -> list[float]:
    return [m["loss/reward"] for m in read_metrics(run / "metrics.jsonl") if "loss/reward" in m]


def test_grouping_prompts_with_one_pair_each_changes_nothing(tiny_model_dir, tmp_path, norm_file):
    """With one pair per prompt a step draws the same pairs either way: the same loss curve."""
    for run, grouped in (("pairs", "false"), ("grouped", "true")):
        train(rm_cfg(tiny_model_dir, tmp_path, run, "--group_by_prompt", grouped))
    assert len(loss_curve(tmp_path / "grouped")) == 4
    assert loss_curve(tmp_path / "grouped") == pytest.approx(loss_curve(tmp_path / "pairs"), rel=1e-4)


@pytest.mark.parametrize("share", ["true", "false"])
def test_grouped_step_loss_is_the_mean_over_every_pair_of_its_prompts(tiny_model_dir, tmp_path, norm_file, share):
    """Step 1 draws all 8 prompts (16 pairs, 24 distinct replies); its logged loss is the Bradley–Terry mean over
    the 16 pairs, computed here from the untrained model's score of each (prompt, reply)."""
    from tether.data.tokenization import encode_pairs, group_pairs
    from tether.data.validate import load_records
    from tether.losses.reward import bradley_terry_loss
    from tether.models.loading import load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel
    from tether.models.scoring import score_sequences

    data = write_ranked_replies(tmp_path / "ranked.jsonl", n=8)
    train(rm_cfg(tiny_model_dir, tmp_path, "grouped", "--group_by_prompt", "true", "--data.train_files",
                 f"[{data}]", "--train.max_steps", "1", "--train.share_prompts", share))
    tok = load_tokenizer(str(tiny_model_dir))
    pairs, _ = encode_pairs(tok, load_records(data, "preference")[0], 64)
    groups = group_pairs(pairs)
    assert len(groups) == 8 and sum(len(g.pairs) for g in groups) == 16
    model = ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, pooling="last", seed=0).eval()
    with torch.no_grad():
        scores = [score_sequences(model, [g.prompt_ids] * len(g.replies), g.replies, tok.pad_token_id, 8)
                  for g in groups]
    chosen = torch.tensor([s[c] for g, s in zip(groups, scores) for c, _ in g.pairs])
    rejected = torch.tensor([s[r] for g, s in zip(groups, scores) for _, r in g.pairs])
    expected, _ = bradley_terry_loss(chosen, rejected)
    assert loss_curve(tmp_path / "grouped")[0] == pytest.approx(float(expected), rel=1e-4)


def test_grouped_two_processes_follow_the_one_process_loss_curve(tiny_model_dir, tmp_path, norm_file):
    """Processes hold different pair counts each step; the loss is still the mean over the global step's pairs."""
    from launch import launch_two_processes
    from tether.runtime.config import save_config

    data = write_ranked_replies(tmp_path / "ranked.jsonl")
    extra = ("--group_by_prompt", "true", "--data.train_files", f"[{data}]")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the 2 processes below
    try:
        train(rm_cfg(tiny_model_dir, tmp_path, "one", *extra))
    finally:
        torch.set_num_threads(threads)
    save_config(rm_cfg(tiny_model_dir, tmp_path, "two", *extra), tmp_path / "two.yaml")
    launch_two_processes("rm", tmp_path / "two.yaml")
    assert len(loss_curve(tmp_path / "one")) == 4
    assert loss_curve(tmp_path / "two") == pytest.approx(loss_curve(tmp_path / "one"), rel=1e-4)


def test_head_lr_multiplier_moves_the_head_faster_and_resumes_exactly(tiny_model_dir, tmp_path, norm_file):
    from tether.models.loading import load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel

    fast = ("--head_lr_multiplier", "30")
    train(rm_cfg(tiny_model_dir, tmp_path, "slow", "--train.learning_rate", "1e-4"))
    train(rm_cfg(tiny_model_dir, tmp_path, "fast", "--train.learning_rate", "1e-4", *fast))
    train(rm_cfg(tiny_model_dir, tmp_path, "resumed", "--train.learning_rate", "1e-4", *fast), interrupt_at_step=2)
    train(rm_cfg(tiny_model_dir, tmp_path, "resumed", "--train.learning_rate", "1e-4", *fast))
    assert loss_curve(tmp_path / "resumed") == pytest.approx(loss_curve(tmp_path / "fast"), rel=1e-6, abs=1e-7)
    start = ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), load_tokenizer(str(tiny_model_dir)), seed=0)

    def head_moved(run: str) -> float:
        return float((ScalarHeadModel.from_pretrained(tmp_path / run).head.weight - start.head.weight).abs().max())

    # Adam moves a weight by at most ~lr per step: 4 steps at 1e-4 against 4 at 3e-3
    assert head_moved("slow") < 5e-4 < 5e-3 < head_moved("fast")
