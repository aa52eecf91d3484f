"""EOS truncation, the missing-EOS penalty and per-token shaped rewards against hand arithmetic."""

from __future__ import annotations

import pytest
import torch

from tether.errors import ConfigError
from tether.rl.rewards import apply_missing_eos_penalty, shaped_rewards, truncate_at_eos

F64 = torch.float64
EOS, PAD = 2, 0
NAN = float("nan")


def close(actual: torch.Tensor, expected, tol: float = 1e-12) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), rtol=tol, atol=tol)


# ---------------------------------------------------------------- truncate_at_eos


def test_truncate_at_eos_middle_end_absent_and_first():
    response_ids = torch.tensor([
        [5, 2, 7, 8],  # EOS in the middle: 7, 8 after it become pad
        [5, 6, 7, 2],  # EOS at the last position
        [5, 6, 7, 8],  # no EOS: truncated by the length limit, all 4 tokens real
        [2, 9, 2, 3],  # EOS at position 0; the later EOS is after the end too
    ])
    ids, mask, has_eos = truncate_at_eos(response_ids, eos_id=EOS, pad_id=PAD)
    assert ids.tolist() == [[5, 2, 0, 0], [5, 6, 7, 2], [5, 6, 7, 8], [2, 0, 0, 0]]
    assert mask.tolist() == [
        [True, True, False, False],
        [True, True, True, True],
        [True, True, True, True],
        [True, False, False, False],
    ]
    assert has_eos.tolist() == [True, True, False, True]
    assert mask.dtype == torch.bool and has_eos.dtype == torch.bool
    assert response_ids[0].tolist() == [5, 2, 7, 8]  # the input is not modified


def test_truncate_at_eos_keeps_a_sampled_pad_token_before_the_eos():
    ids, mask, has_eos = truncate_at_eos(torch.tensor([[5, PAD, EOS, PAD]]), eos_id=EOS, pad_id=PAD)
    assert ids.tolist() == [[5, PAD, EOS, PAD]]
    assert mask.tolist() == [[True, True, True, False]]  # only the EOS decides where a response ends
    assert has_eos.tolist() == [True]


def test_truncate_at_eos_rejects_pad_equal_to_eos():
    with pytest.raises(ConfigError, match="distinct from EOS"):
        truncate_at_eos(torch.tensor([[5, 2, 2]]), eos_id=2, pad_id=2)
    with pytest.raises(ValueError, match=r"\(B,R\)"):
        truncate_at_eos(torch.tensor([5, 2]), eos_id=EOS, pad_id=PAD)


# ---------------------------------------------------------------- missing-EOS penalty


def test_missing_eos_penalty_only_on_rows_without_eos():
    score = torch.tensor([1.0, -0.5, 2.0], dtype=F64)
    has_eos = torch.tensor([True, False, False])
    close(apply_missing_eos_penalty(score, has_eos, 1.5), [1.0, -0.5 - 1.5, 2.0 - 1.5])
    assert apply_missing_eos_penalty(score, has_eos, None) is score
    close(apply_missing_eos_penalty(score, has_eos, 0.0), [1.0, -0.5, 2.0])
    close(apply_missing_eos_penalty(score, torch.tensor([True, True, True]), 10.0), [1.0, -0.5, 2.0])
    close(score, [1.0, -0.5, 2.0])  # the input is not modified
    with pytest.raises(ValueError, match="missing_eos_penalty"):
        apply_missing_eos_penalty(score, has_eos, -1.0)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        apply_missing_eos_penalty(score, has_eos[:2], 1.0)


# ---------------------------------------------------------------- shaped rewards

SCORE = torch.tensor([2.0, -1.0, 0.5], dtype=F64)
KL = torch.tensor([[0.1, -0.2, 0.3, NAN], [0.4, 0.5, 9.0, 9.0], [0.2, 7.0, 7.0, 7.0]], dtype=F64)
MASK = torch.tensor([[True, True, True, False], [True, True, False, False], [True, False, False, False]])


def test_shaped_rewards_by_hand():
    rewards = shaped_rewards(SCORE, KL, MASK, kl_coef=0.5)
    close(rewards, [
        [-0.05, 0.1, -0.15 + 2.0, 0.0],  # score at position 2, the last real token; the nan pad is ignored
        [-0.2, -0.25 - 1.0, 0.0, 0.0],  # score at position 1
        [-0.1 + 0.5, 0.0, 0.0, 0.0],  # a one-token response: score at position 0
    ])
    # per row, rewards sum to score − β·Σ kl over real tokens
    close(rewards.sum(dim=1), [2.0 - 0.5 * 0.2, -1.0 - 0.5 * 0.9, 0.5 - 0.5 * 0.2])


def test_shaped_rewards_with_zero_kl_coef_is_the_score_alone():
    close(shaped_rewards(SCORE, KL, MASK, kl_coef=0.0), [[0, 0, 2.0, 0], [0, -1.0, 0, 0], [0.5, 0, 0, 0]])


def test_shaped_rewards_full_row_and_empty_row():
    score = torch.tensor([3.0, 4.0], dtype=F64)
    kl = torch.tensor([[0.1, 0.2, 0.3], [NAN, NAN, NAN]], dtype=F64)
    mask = torch.tensor([[True, True, True], [False, False, False]])
    # row 0 uses all R tokens (no EOS): score at R − 1; row 1 has no real token: all 0, its score dropped
    close(shaped_rewards(score, kl, mask, kl_coef=1.0), [[-0.1, -0.2, -0.3 + 3.0], [0.0, 0.0, 0.0]])


def test_shaped_rewards_from_truncate_at_eos():
    ids, mask, has_eos = truncate_at_eos(torch.tensor([[5, 2, 7], [5, 6, 7]]), eos_id=EOS, pad_id=PAD)
    assert ids.tolist() == [[5, 2, PAD], [5, 6, 7]]
    score = apply_missing_eos_penalty(torch.tensor([1.0, 1.0], dtype=F64), has_eos, 0.25)
    kl = torch.full((2, 3), 0.5, dtype=F64)  # (2,3)
    # row 0 ends at its EOS (position 1); row 1 has no EOS: penalised score 0.75 at position 2
    close(shaped_rewards(score, kl, mask, kl_coef=0.1), [[-0.05, -0.05 + 1.0, 0.0], [-0.05, -0.05, -0.05 + 0.75]])


def test_shaped_rewards_match_a_plain_loop():
    g = torch.Generator().manual_seed(0)
    batch, length = 6, 7
    score = torch.randn(batch, generator=g, dtype=F64)  # (B,)
    kl = torch.randn(batch, length, generator=g, dtype=F64)  # (B,R)
    lengths = [0, 1, 3, 7, 5, 2]
    mask = torch.tensor([[t < n for t in range(length)] for n in lengths])  # (B,R) right padding
    expected = torch.zeros(batch, length, dtype=F64)  # (B,R)
    for b in range(batch):
        for t in range(lengths[b]):
            expected[b, t] = -0.3 * kl[b, t]
        if lengths[b]:
            expected[b, lengths[b] - 1] += score[b]
    close(shaped_rewards(score, kl, mask, kl_coef=0.3), expected, tol=1e-15)


def test_shaped_rewards_shape_errors():
    with pytest.raises(ValueError, match=r"need \(B,\), \(B,R\), \(B,R\)"):
        shaped_rewards(SCORE[:2], KL, MASK, kl_coef=0.1)
    with pytest.raises(ValueError, match=r"need \(B,\), \(B,R\), \(B,R\)"):
        shaped_rewards(SCORE, KL, MASK[:, :3], kl_coef=0.1)
