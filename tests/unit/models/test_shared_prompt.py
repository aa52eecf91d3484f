"""Forwarding each prompt once (KV cache shared by its replies) gives the row-by-row results, with gradients."""

import pytest
import torch

from tether.data.collators import collate_pair_prompts, collate_pairs, collate_prompt_replies
from tether.data.tokenization import EncodedPair
from tether.models.logprobs import sequence_logprobs
from tether.models.shared_prompt import reply_groups, shared_prompt_logprobs


def _pairs(eos: int) -> list[EncodedPair]:
    # prompts of 3, 1 and 4 tokens (left padding differs), replies of 1 to 5 tokens (right padding differs)
    return [EncodedPair([1, 40, 41], [50, 51, eos], [52, eos]), EncodedPair([1], [53, eos], [54, 55, 56, 57, eos]),
            EncodedPair([1, 43, 44, 45], [eos], [58, 59, eos])]


def _params(model):
    return [p for p in model.parameters() if p.requires_grad]


def test_logprobs_and_gradients_equal_row_by_row(tiny):
    model, tok = tiny
    pairs = _pairs(tok.eos_token_id)
    rows = collate_pairs(pairs, tok.pad_token_id)
    total_rows, count_rows = sequence_logprobs(model, rows)  # (6,)
    grads_rows = torch.autograd.grad(total_rows.sum(), _params(model), allow_unused=True)

    total, count = shared_prompt_logprobs(model, collate_pair_prompts(pairs, tok.pad_token_id))  # (6,)
    torch.testing.assert_close(total, total_rows, atol=1e-5, rtol=1e-5)
    assert count.tolist() == count_rows.tolist() == [3, 2, 1, 2, 5, 3]
    grads = torch.autograd.grad(total.sum(), _params(model), allow_unused=True)
    for g, r in zip(grads, grads_rows):
        assert (g is None) == (r is None)
        if g is not None:
            torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)


def test_temperature_and_one_token_replies(tiny):
    model, tok = tiny
    eos = tok.eos_token_id
    pairs = [EncodedPair([1, 40], [eos], [eos]), EncodedPair([1, 41, 42], [eos], [eos])]  # no reply pass at all
    with torch.no_grad():
        total, count = shared_prompt_logprobs(model, collate_pair_prompts(pairs, tok.pad_token_id), temperature=0.7)
        expected, _ = sequence_logprobs(model, collate_pairs(pairs, tok.pad_token_id), temperature=0.7)
    torch.testing.assert_close(total, expected, atol=1e-5, rtol=1e-5)
    assert count.tolist() == [1, 1, 1, 1]


def test_reply_groups_across_prompts_match_one_call_in_row_order(tiny):
    model, tok = tiny
    eos = tok.eos_token_id
    # three samples of prompt 0 and two of prompt 1, replies of 1 to 4 tokens
    batch = collate_prompt_replies([[1, 40, 41], [1, 42]], [[50, eos], [51, 52, 53, eos], [eos], [54, eos], [eos]],
                                   [0, 0, 0, 1, 1], tok.pad_token_id)
    assert [g.tolist() for g in reply_groups(batch["reply_mask"], 2)] == [[1, 0], [3, 2], [4]]  # longest first
    assert [g.tolist() for g in reply_groups(batch["reply_mask"], 0)] == [[1, 0, 3, 2, 4]]
    with pytest.raises(ValueError, match="group_rows"):
        reply_groups(batch["reply_mask"], -1)
    rows = collate_pairs([EncodedPair([1, 40, 41], r, [eos]) for r in ([50, eos], [51, 52, 53, eos], [eos])]
                         + [EncodedPair([1, 42], r, [eos]) for r in ([54, eos], [eos])], tok.pad_token_id)
    with torch.no_grad():
        expected, _ = sequence_logprobs(model, rows)  # (10,): the five replies are the chosen rows 0..4
        for group_rows in (0, 1, 2, 4):
            total, count = shared_prompt_logprobs(model, batch, group_rows=group_rows)
            torch.testing.assert_close(total, expected[:5], atol=1e-5, rtol=1e-5)
            assert count.tolist() == [2, 4, 1, 2, 1]


def test_scalar_head_scores_equal_row_by_row_for_both_poolings(tiny_model_dir):
    from tether.models.loading import load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel
    from tether.train.reward import _score_pairs

    tok = load_tokenizer(str(tiny_model_dir))
    pairs = _pairs(tok.eos_token_id)
    for pooling in ("last", "mean"):
        rm = ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), tok, pooling=pooling, seed=3)
        chosen_rows, rejected_rows = _score_pairs(rm, collate_pairs(pairs, tok.pad_token_id), "cpu")
        grads_rows = torch.autograd.grad((chosen_rows - rejected_rows).sum(), _params(rm))
        for group_rows in (0, 2):
            chosen, rejected = _score_pairs(rm, collate_pair_prompts(pairs, tok.pad_token_id), "cpu", group_rows)
            torch.testing.assert_close(chosen, chosen_rows, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(rejected, rejected_rows, atol=1e-5, rtol=1e-5)
            grads = torch.autograd.grad((chosen - rejected).sum(), _params(rm))
            for g, r in zip(grads, grads_rows):
                torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)
    # per_token on a shared batch (a value model's V_t): tests/unit/train/test_ppo_shared_prompts.py


def test_scoring_helpers_forward_distinct_prompts_once_and_keep_input_order(tiny, tiny_model_dir, monkeypatch):
    from tether.data.collators import collate_sft
    from tether.data.tokenization import EncodedExample
    from tether.models import scoring
    from tether.models.loading import load_tokenizer
    from tether.models.scalar_head import ScalarHeadModel

    model, tok = tiny
    eos = tok.eos_token_id
    prompts = [[1, 40, 41], [1, 42], [1, 40, 41], [1, 43, 44, 45], [1, 42], [1, 40, 41]]
    replies = [[50, eos], [51, 52, 53, eos], [eos], [54, eos], [55, eos], [56, 57, eos]]
    monkeypatch.setattr(scoring, "_PROMPTS_PER_BATCH", 2)  # 3 distinct prompts: two batches
    rows = collate_sft([EncodedExample(p, r) for p, r in zip(prompts, replies)], tok.pad_token_id)
    with torch.no_grad():
        expected, expected_n = sequence_logprobs(model, rows | {"response_mask": rows["loss_mask"]})
    logp, n = scoring.response_logprobs(model, prompts, replies, tok.pad_token_id, batch_size=2)
    torch.testing.assert_close(torch.tensor(logp), expected, atol=1e-5, rtol=1e-5)
    assert n == expected_n.tolist() == [2, 4, 1, 2, 2, 3]

    rm = ScalarHeadModel.from_pretrained_lm(str(tiny_model_dir), load_tokenizer(str(tiny_model_dir)), seed=1)
    with torch.no_grad():
        expected_scores = rm(rows["input_ids"], rows["attention_mask"], rows["position_ids"])  # (6,)
    scores = scoring.score_sequences(rm, prompts, replies, tok.pad_token_id, batch_size=2)
    torch.testing.assert_close(torch.tensor(scores), expected_scores, atol=1e-5, rtol=1e-5)
    # an empty response (a truncated reply that decoded to nothing) takes the row layout, same scores
    with_empty = scoring.score_sequences(rm, [*prompts, [1, 42]], [*replies, []], tok.pad_token_id, batch_size=2)
    torch.testing.assert_close(torch.tensor(with_empty[:6]), expected_scores, atol=1e-5, rtol=1e-5)
