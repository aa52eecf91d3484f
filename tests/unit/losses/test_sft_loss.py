"""sft_loss against hand arithmetic, and its microbatch-split invariance under a global num_tokens."""

from __future__ import annotations

import math

import torch

from tether.losses.sft import sft_loss

F64 = torch.float64


def tiny_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sequence, vocab 3: two trained tokens with known probabilities, one prompt token."""
    logits = torch.tensor(
        [
            [
                [0.0, 0.0, 0.0],  # uniform: p(label 1) = 1/3
                [math.log(2.0), 0.0, 0.0],  # p(label 0) = 2 / (2 + 1 + 1) = 1/2
                [5.0, 0.0, 0.0],  # not trained on
            ]
        ],
        dtype=F64,
    )  # (1,3,3)
    labels = torch.tensor([[1, 0, -100]])  # (1,3): -100 outside the mask must be harmless
    loss_mask = torch.tensor([[True, True, False]])  # (1,3)
    return logits, labels, loss_mask


def test_sft_loss_by_hand():
    logits, labels, loss_mask = tiny_batch()
    loss, stats = sft_loss(logits, labels, loss_mask)
    expected = (math.log(3) + math.log(2)) / 2
    assert abs(loss.item() - expected) < 1e-12
    assert abs(stats["loss/sft"].item() - expected) < 1e-12
    assert abs(stats["sft/nll"].item() - expected) < 1e-12
    assert stats["sft/num_tokens"].item() == 2
    assert stats["sft/accuracy"].item() == 0.5  # row 0 argmax is 0 (≠ 1), row 1 argmax is 0 (= 0)


def test_sft_loss_num_tokens_divides_the_sum():
    logits, labels, loss_mask = tiny_batch()
    loss, stats = sft_loss(logits, labels, loss_mask, num_tokens=4)
    assert abs(loss.item() - (math.log(3) + math.log(2)) / 4) < 1e-12
    assert abs(stats["sft/nll"].item() - (math.log(3) + math.log(2)) / 2) < 1e-12  # own token mean


def test_sft_loss_with_no_trained_tokens_is_zero():
    logits, labels, _ = tiny_batch()
    loss, stats = sft_loss(logits, labels, torch.zeros(1, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    assert stats["sft/num_tokens"].item() == 0


def test_microbatch_split_with_global_num_tokens_equals_full_batch():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 6, 7, generator=gen, dtype=F64, requires_grad=True)  # (B,T,V)
    labels = torch.randint(0, 7, (5, 6), generator=gen)  # (B,T)
    loss_mask = torch.rand(5, 6, generator=gen) > 0.5  # (B,T): uneven token counts per row
    loss_mask[0] = True  # make the rows clearly unequal
    loss_mask[1, 1:] = False

    full, _ = sft_loss(logits, labels, loss_mask)
    (full_grad,) = torch.autograd.grad(full, logits)

    total = int(loss_mask.sum())
    split_losses = [
        sft_loss(logits[rows], labels[rows], loss_mask[rows], num_tokens=total)[0]
        for rows in (slice(0, 1), slice(1, 3), slice(3, 5))
    ]
    summed = torch.stack(split_losses).sum()
    (split_grad,) = torch.autograd.grad(summed, logits)
    assert abs(summed.item() - full.item()) < 1e-12
    torch.testing.assert_close(split_grad, full_grad, rtol=1e-12, atol=1e-12)

    # The naive alternative (mean of per-microbatch token means) differs: the test can fail.
    naive = torch.stack(
        [sft_loss(logits[r], labels[r], loss_mask[r])[0] for r in (slice(0, 1), slice(1, 3), slice(3, 5))]
    ).mean()
    assert abs(naive.item() - full.item()) > 1e-3


def test_sft_loss_on_flat_response_positions_matches_padded_form():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 5, generator=gen, dtype=F64)  # (B,T,V)
    labels = torch.randint(0, 5, (2, 4), generator=gen)  # (B,T)
    loss_mask = torch.tensor([[False, True, True, True], [False, False, True, True]])  # (B,T)
    padded, _ = sft_loss(logits, labels, loss_mask)
    flat, _ = sft_loss(logits[loss_mask], labels[loss_mask], torch.ones(5, dtype=torch.bool))  # (N,V)
    assert abs(padded.item() - flat.item()) < 1e-12
