"""Reward-model accuracy per group of pairs (`tether eval rm --by`): the grouping and the arithmetic by hand."""

from __future__ import annotations

import pytest

from tether.data.records import PreferencePair
from tether.errors import DataError
from tether.eval.reward_eval import accuracy_by, encode_within, evaluate_reward_model, pair_group, save_held_out_scores

META = {"family": "arithmetic", "kind": "number", "answer": "86", "aliases": ["86"], "given": ["10", "76"],
        "distractors": ["87", "84"], "vocab": None, "statement": "10 + 76 = {answer}."}
PROMPT = [{"role": "user", "content": "Compute 10 plus 76."}]


def _pair(chosen: str, rejected: str, **meta) -> PreferencePair:
    return PreferencePair(PROMPT, chosen, rejected, meta=META | meta)


def test_correctness_groups_follow_the_gold_judge():
    assert pair_group(_pair("10 + 76 = 86.", "10 + 76 = 96."), "correctness") == "right over wrong"
    assert pair_group(_pair("86.", "Sure! 10 + 76 = 86. Happy to help!"), "correctness") == "right over right"
    assert pair_group(_pair("Maybe 96.", "176."), "correctness") == "wrong over wrong"
    # listing two candidates is never right; no answer at all is not right either
    assert pair_group(_pair("86 or 87.", "I don't know."), "correctness") == "wrong over wrong"
    assert pair_group(_pair("96.", "86."), "correctness") == "wrong over right"


def test_meta_groups_and_a_missing_field():
    assert pair_group(_pair("86.", "96."), "family") == "arithmetic"
    assert pair_group(PreferencePair(PROMPT, "a.", "b."), "family") == "(none)"


def test_correctness_needs_demo_meta():
    with pytest.raises(DataError, match="correctness needs demo-task pairs"):
        pair_group(PreferencePair(PROMPT, "a.", "b.", meta={"family": "x"}), "correctness")


def test_accuracy_by_hand():
    # group a: 1 > 0 (win), 2 == 2 (tie, half), 1 < 3 (loss) -> 1.5 / 3; group b: 0 < 1 -> 0
    out = accuracy_by(["a", "b", "a", "a"], [1.0, 0.0, 2.0, 1.0], [0.0, 1.0, 2.0, 3.0])
    assert list(out) == ["a", "b"]
    assert out["a"] == {"n": 3, "accuracy": 0.5} and out["b"] == {"n": 1, "accuracy": 0.0}


def test_groups_line_up_with_the_pairs_kept_after_dropping_over_long_ones(tiny_model_dir):
    from tether.models.loading import freeze, load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel

    tokenizer = load_tokenizer(str(tiny_model_dir))
    rm = freeze(ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tokenizer))
    pairs = [_pair("10 + 76 = 86.", "10 + 76 = 96.", family="short"),
             _pair("86.", "Well " * 200 + "86.", family="long"),  # over any small max_length
             _pair("96.", "86.", family="short")]
    report = evaluate_reward_model(rm, tokenizer, pairs, max_length=128, by=("family", "correctness"))
    assert report["n_pairs"] == 2 and report["dropped_over_long"] == 1
    assert report["by"]["family"] == {"short": {"n": 2, "accuracy": report["accuracy"]}}
    assert set(report["by"]["correctness"]) == {"right over wrong", "wrong over right"}
    assert all(d["n"] == 1 for d in report["by"]["correctness"].values())


class _NoModel:
    """Stands in for a reward model that must not be called."""

    def __call__(self, *args, **kwargs):
        raise AssertionError("the reward model was called")


def test_saved_held_out_scores_are_used_only_for_the_same_pairs(tiny_model_dir, tmp_path):
    from tether.models.loading import freeze, load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel

    tokenizer = load_tokenizer(str(tiny_model_dir))
    pairs = [_pair("10 + 76 = 86.", "10 + 76 = 96."), _pair("86.", "Sure! 86."), _pair("96.", "86.")]
    encoded, _ = encode_within(tokenizer, pairs, 128)
    save_held_out_scores(tmp_path / "scores.json", encoded, [1.0, 0.0, 2.0], [0.0, 1.0, 2.0])
    # the same pairs: the saved scores, and no forward pass (win, loss, tie -> 1.5 / 3)
    report = evaluate_reward_model(_NoModel(), tokenizer, pairs, 128, scores_file=tmp_path / "scores.json")
    assert report["accuracy"] == 0.5 and report["margin"] == pytest.approx(0.0)
    # other pairs (one response changed), or another order: scored again by the model
    rm = freeze(ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tokenizer))
    for other in ([*pairs[:2], _pair("96.", "87.")], pairs[::-1]):
        fresh = evaluate_reward_model(rm, tokenizer, other, 128)
        assert evaluate_reward_model(rm, tokenizer, other, 128, scores_file=tmp_path / "scores.json") == fresh
    # no file: scored by the model, as without scores_file
    assert evaluate_reward_model(rm, tokenizer, pairs, 128, scores_file=tmp_path / "absent.json") == \
        evaluate_reward_model(rm, tokenizer, pairs, 128)


def test_likelihood_baseline_ranks_pairs_by_the_policys_own_logprobs(tiny_model_dir):
    import torch

    from tether.data.tokenization import encode_prompt, encode_response
    from tether.eval.reward_eval import likelihood_baseline
    from tether.models.loading import freeze, load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model_dir))
    policy = freeze(load_causal_lm(str(tiny_model_dir), tokenizer))
    texts = [("10 + 76 = 86.", "10 + 76 = 96. It is."), ("86.", "Well, 86."), ("96.", "86 is it."),
             ("x" * 400, "86.")]  # the last pair is over max_length and dropped

    def logp(text: str) -> tuple[float, int]:  # a plain forward of one unpadded sequence
        p, r = encode_prompt(tokenizer, PROMPT), encode_response(tokenizer, text)
        ids = torch.tensor([p + r])
        with torch.no_grad():
            lp = torch.log_softmax(policy(ids).logits[0, :-1].float(), -1)
        return float(lp[torch.arange(len(p) - 1, len(p) + len(r) - 1), torch.tensor(r)].sum()), len(r)

    sums = [(logp(c), logp(r)) for c, r in texts[:3]]
    want_sum = sum(1.0 if c[0] > r[0] else 0.0 for c, r in sums) / 3
    want_mean = sum(1.0 if c[0] / c[1] > r[0] / r[1] else 0.0 for c, r in sums) / 3
    pairs = [_pair(c, r, family="f") for c, r in texts]
    report = likelihood_baseline(policy, tokenizer, pairs, max_length=200, by=("family",))
    assert report["n_pairs"] == 3 and report["dropped_over_long"] == 1
    assert report["accuracy_sum"] == pytest.approx(want_sum) and report["accuracy_mean"] == pytest.approx(want_mean)
    assert report["by"]["family"] == {"f": {"n": 3, "accuracy_sum": report["accuracy_sum"],
                                            "accuracy_mean": report["accuracy_mean"]}}
    with pytest.raises(DataError, match="no pair fits max_length 5"):
        likelihood_baseline(policy, tokenizer, pairs, max_length=5)
