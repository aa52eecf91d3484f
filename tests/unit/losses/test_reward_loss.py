"""bradley_terry_loss against hand arithmetic, its symmetries, microbatch invariance and stability."""

from __future__ import annotations

import math

import pytest
import torch

from tether.losses.reward import bradley_terry_loss

F64 = torch.float64
LOG2 = math.log(2.0)


def nll(x: float) -> float:
    """−log σ(x) written out: log(1 + e^(−x))."""
    return math.log1p(math.exp(-x))


def test_by_hand():
    chosen = torch.tensor([1.0, 0.5, 2.0, -1.0], dtype=F64)  # (4,)
    rejected = torch.tensor([0.0, 0.5, -1.0, 1.0], dtype=F64)  # (4,)
    loss, stats = bradley_terry_loss(chosen, rejected)
    # diffs 1, 0, 3, -2: σ(1) = 0.7310585786300049 → −log σ(1) = 0.31326168751822286; −log σ(0) = log 2
    assert abs(-math.log(0.7310585786300049) - 0.31326168751822286) < 1e-15
    expected = (0.31326168751822286 + LOG2 + nll(3.0) + nll(-2.0)) / 4
    assert abs(nll(-2.0) - (2.0 + nll(2.0))) < 1e-15  # −log σ(−x) = x − log σ(x)
    assert abs(loss.item() - expected) < 1e-12
    assert abs(stats["loss/reward"].item() - expected) < 1e-12
    assert stats["reward/accuracy"].item() == pytest.approx((1 + 0.5 + 1 + 0) / 4, abs=1e-15)  # tie = 0.5
    assert stats["reward/margin"].item() == pytest.approx((1 + 0 + 3 - 2) / 4, abs=1e-15)
    assert stats["reward/chosen_score"].item() == pytest.approx(2.5 / 4, abs=1e-15)
    assert stats["reward/rejected_score"].item() == pytest.approx(0.5 / 4, abs=1e-15)
    assert all(not v.requires_grad for v in stats.values())


def test_equal_scores_give_log2():
    scores = torch.tensor([0.3, -7.0, 12.0], dtype=F64)
    loss, stats = bradley_terry_loss(scores, scores.clone())
    assert abs(loss.item() - LOG2) < 1e-15
    assert stats["reward/accuracy"].item() == 0.5


def test_margin_shifts_the_difference():
    chosen = torch.tensor([2.0, 1.0], dtype=F64)
    rejected = torch.tensor([0.0, 0.5], dtype=F64)
    margin = torch.tensor([2.0, 0.0], dtype=F64)
    loss, stats = bradley_terry_loss(chosen, rejected, margin=margin)
    # pair 0: 2 − 0 − 2 = 0 → log 2; pair 1: 0.5 − 0 → −log σ(0.5)
    assert abs(loss.item() - (LOG2 + nll(0.5)) / 2) < 1e-12
    # the margin is a pure shift of the difference: (r_c − m, r_r) gives the same loss
    shifted, _ = bradley_terry_loss(chosen - margin, rejected)
    assert abs(loss.item() - shifted.item()) < 1e-15
    # a scalar margin broadcasts; accuracy and the reported margin ignore it
    loss_scalar, stats_scalar = bradley_terry_loss(chosen, rejected, margin=1.0)
    assert abs(loss_scalar.item() - (nll(1.0) + nll(-0.5)) / 2) < 1e-12
    assert stats_scalar["reward/accuracy"].item() == 1.0 == stats["reward/accuracy"].item()
    assert stats_scalar["reward/margin"].item() == pytest.approx(1.25, abs=1e-15)


def test_swapping_chosen_and_rejected():
    g = torch.Generator().manual_seed(0)
    chosen = torch.randn(8, generator=g, dtype=F64)
    rejected = torch.randn(8, generator=g, dtype=F64)
    loss, stats = bradley_terry_loss(chosen, rejected)
    loss_swapped, stats_swapped = bradley_terry_loss(rejected, chosen)
    assert stats_swapped["reward/margin"].item() == pytest.approx(-stats["reward/margin"].item(), abs=1e-15)
    assert stats_swapped["reward/accuracy"].item() == pytest.approx(1 - stats["reward/accuracy"].item())
    # −log σ(−x) − (−log σ(x)) = x, so the summed losses differ by exactly the summed margins
    assert (loss_swapped - loss).item() * 8 == pytest.approx((chosen - rejected).sum().item(), abs=1e-12)


def test_microbatch_invariance_with_global_num_pairs():
    g = torch.Generator().manual_seed(1)
    chosen = torch.randn(7, generator=g, dtype=F64, requires_grad=True)
    rejected = torch.randn(7, generator=g, dtype=F64)
    margin = torch.rand(7, generator=g, dtype=F64)
    full, _ = bradley_terry_loss(chosen, rejected, margin=margin, center_coef=0.1)
    full.backward()
    grad_full = chosen.grad.clone()
    chosen.grad = None
    total = torch.zeros((), dtype=F64)
    for part in (slice(0, 2), slice(2, 3), slice(3, 7)):  # uneven microbatches of 2, 1, 4
        piece, _ = bradley_terry_loss(chosen[part], rejected[part], margin=margin[part], num_pairs=7,
                                      center_coef=0.1)
        piece.backward()
        total = total + piece.detach()
    assert abs(total.item() - full.item()) < 1e-12
    torch.testing.assert_close(chosen.grad, grad_full, atol=1e-14, rtol=0)
    # the per-microbatch default (its own mean) would weight the single pair 7/3 more: not invariant
    own_means = sum(bradley_terry_loss(chosen[p], rejected[p], margin=margin[p], center_coef=0.1)[0].item()
                    for p in (slice(0, 2), slice(2, 3), slice(3, 7)))
    assert abs(own_means - full.item()) > 1e-3


def test_center_coef_by_hand():
    chosen = torch.tensor([1.0, 3.0], dtype=F64)
    rejected = torch.tensor([0.0, 1.0], dtype=F64)
    loss, _ = bradley_terry_loss(chosen, rejected, center_coef=0.01)
    expected = (nll(1.0) + 0.01 * 1.0**2 + nll(2.0) + 0.01 * 4.0**2) / 2
    assert abs(loss.item() - expected) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_stable_at_extreme_scores(dtype):
    chosen = torch.tensor([1e4, -1e4, 0.0], dtype=dtype, requires_grad=True)
    rejected = torch.tensor([-1e4, 1e4, 0.0], dtype=dtype)
    loss, stats = bradley_terry_loss(chosen, rejected)
    # pair 0: −log σ(2e4) ≈ e^(−2e4) = 0; pair 1: −log σ(−2e4) = 2e4 + tiny; pair 2: log 2
    expected = (0.0 + 2e4 + LOG2) / 3
    assert torch.isfinite(loss)
    assert abs(loss.item() - expected) < 1e-2 * (1 if dtype == torch.float32 else 1e-8)
    loss.backward()
    assert torch.isfinite(chosen.grad).all()
    # d/dr_c of −log σ(d)/3 = −σ(−d)/3: 0 for the easy pair, −1/3 for the hopeless one, −1/6 at the tie
    torch.testing.assert_close(chosen.grad.double(), torch.tensor([0.0, -1 / 3, -1 / 6], dtype=F64),
                               atol=1e-7, rtol=0)
    assert stats["reward/accuracy"].item() == pytest.approx(0.5)


def test_empty_batch_and_shape_errors():
    loss, _ = bradley_terry_loss(torch.zeros(0), torch.zeros(0))
    assert loss.item() == 0.0
    with pytest.raises(ValueError, match="must both be"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="must both be"):
        bradley_terry_loss(torch.zeros(3, 1), torch.zeros(3, 1))
