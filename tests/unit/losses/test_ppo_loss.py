"""PPO clipped policy and value losses and explained variance against hand arithmetic (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from tether.losses.ppo import clipped_policy_loss, clipped_value_loss, explained_variance

F64 = torch.float64
NAN, INF = float("nan"), float("inf")


def close(actual: torch.Tensor, expected, tol: float = 1e-12) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), rtol=tol, atol=tol)


# ---------------------------------------------------------------- policy loss


def test_ratio_one_gives_minus_mean_advantage():
    old = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, NAN]], dtype=F64)  # (2,3)
    logprobs = old.clone().requires_grad_(True)  # (2,3) ratio exactly 1 at every real token
    advantages = torch.tensor([[1.0, -2.0, 0.5], [3.0, -1.0, 100.0]], dtype=F64)  # (2,3)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    loss, stats = clipped_policy_loss(logprobs, old, advantages, mask, clip_range=0.2)
    # mean A over the 5 real tokens = (1 − 2 + 0.5 + 3 − 1)/5 = 0.3
    close(loss, -0.3)
    assert stats["policy/clipfrac"].item() == 0.0
    assert stats["policy/approx_kl"].item() == 0.0
    assert stats["policy/ratio_mean"].item() == 1.0 and stats["policy/ratio_max"].item() == 1.0
    loss.backward()
    # the plain policy gradient: ∂L/∂logp_t = −A_t / N at real tokens, 0 at the pad
    close(logprobs.grad, [[-1.0 / 5, 2.0 / 5, -0.5 / 5], [-3.0 / 5, 1.0 / 5, 0.0]])


def test_clipping_by_hand_for_positive_and_negative_advantages():
    ratios = [1.5, 0.5, 0.5, 1.1]
    advantages = torch.tensor([[2.0, -1.0, 1.0, -2.0]], dtype=F64)  # (1,4)
    old = torch.tensor([[-1.0, -1.0, -2.0, -0.5]], dtype=F64)  # (1,4)
    logprobs = (old + torch.tensor([ratios], dtype=F64).log()).requires_grad_(True)  # (1,4)
    mask = torch.ones(1, 4, dtype=torch.bool)
    loss, stats = clipped_policy_loss(logprobs, old, advantages, mask, clip_range=0.2)
    # t0: A = +2, ρ = 1.5: max(−3.0, −2·1.2 = −2.4) = −2.4   clipped term selected
    # t1: A = −1, ρ = 0.5: max(0.5, 1·0.8 = 0.8) = 0.8       clipped term selected
    # t2: A = +1, ρ = 0.5: max(−0.5, −0.8) = −0.5            outside the range but unclipped (pessimistic)
    # t3: A = −2, ρ = 1.1: max(2.2, 2.2) = 2.2               inside the range
    close(loss, (-2.4 + 0.8 - 0.5 + 2.2) / 4)  # 0.025
    assert stats["policy/clipfrac"].item() == 0.5  # 2 of 4 (|ρ − 1| > ε alone would say 3 of 4)
    close(stats["policy/ratio_mean"], (1.5 + 0.5 + 0.5 + 1.1) / 4)
    close(stats["policy/ratio_max"], 1.5)
    k3 = [(r - 1) - math.log(r) for r in ratios]  # KL(π_old‖π_θ) per token, k3
    close(stats["policy/approx_kl"], sum(k3) / 4)
    close(stats["loss/policy"], loss.detach())
    assert all(not v.requires_grad for v in stats.values())
    loss.backward()
    # clipped tokens get no gradient; t2: −A·ρ/N = −0.5/4; t3: −A·ρ/N = 2.2/4
    close(logprobs.grad, [[0.0, 0.0, -0.125, 0.55]])


def test_policy_loss_ignores_padded_positions():
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(3, 5, generator=g, dtype=F64) * 3  # (3,5)
    logprobs = old + 0.4 * torch.randn(3, 5, generator=g, dtype=F64)  # (3,5) some ratios outside 1 ± 0.2
    advantages = torch.randn(3, 5, generator=g, dtype=F64)  # (3,5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)

    def run(lp, o, a):
        lp = lp.clone().requires_grad_(True)
        loss, stats = clipped_policy_loss(lp, o, a, mask, clip_range=0.2)
        loss.backward()
        return loss, stats, lp.grad

    loss, stats, grad = run(logprobs, old, advantages)
    junk = ~mask
    loss2, stats2, grad2 = run(
        logprobs.masked_fill(junk, NAN), old.masked_fill(junk, -INF), advantages.masked_fill(junk, 1e6)
    )
    assert loss2.item() == loss.item()
    assert all(stats2[k].item() == stats[k].item() for k in stats)
    assert torch.equal(grad2, grad) and (grad[junk] == 0).all()
    assert stats["policy/clipfrac"].item() > 0  # the random ratios do exercise the clip


def test_policy_loss_microbatch_split_with_global_token_count():
    g = torch.Generator().manual_seed(1)
    old = -torch.rand(4, 6, generator=g, dtype=F64)  # (4,6)
    logprobs = old + 0.3 * torch.randn(4, 6, generator=g, dtype=F64)  # (4,6)
    advantages = torch.randn(4, 6, generator=g, dtype=F64)  # (4,6)
    mask = torch.tensor([[t < n for t in range(6)] for n in (6, 2, 5, 1)])  # (4,6) 14 real tokens
    full, _ = clipped_policy_loss(logprobs, old, advantages, mask)
    parts = [clipped_policy_loss(logprobs[s], old[s], advantages[s], mask[s], num_tokens=14)[0]
             for s in (slice(0, 1), slice(1, 4))]
    close(parts[0] + parts[1], full.item(), tol=1e-14)
    own_means = sum(clipped_policy_loss(logprobs[s], old[s], advantages[s], mask[s])[0].item()
                    for s in (slice(0, 1), slice(1, 4)))
    assert abs(own_means - full.item()) > 1e-3  # each microbatch's own mean is not the same loss


def test_policy_loss_checks_and_empty_batch():
    x = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"must all be \(B,R\)"):
        clipped_policy_loss(x, x, x[:, :2], torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="clip_range"):
        clipped_policy_loss(x, x, x, torch.ones(2, 3, dtype=torch.bool), clip_range=0.0)
    loss, stats = clipped_policy_loss(x, x, x, torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0 and all(torch.isfinite(v) for v in stats.values())


# ---------------------------------------------------------------- value loss


def test_value_loss_by_hand_with_clipping():
    # tokens t0..t4 in two rows; the pad holds nan
    old_values = torch.tensor([[1.0, 1.0, 0.0], [0.5, 0.0, NAN]], dtype=F64)  # (2,3)
    values = torch.tensor([[1.5, 1.5, 0.1], [-0.5, -0.3, NAN]], dtype=F64).requires_grad_(True)  # (2,3)
    returns = torch.tensor([[2.0, 1.0, -1.0], [0.0, -1.0, NAN]], dtype=F64)  # (2,3)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    loss, stats = clipped_value_loss(values, old_values, returns, mask, value_clip_range=0.2)
    # t0: V_clip = 1.0 + 0.2 = 1.2:  (1.5 − 2)² = 0.25, (1.2 − 2)² = 0.64   → 0.64 clipped selected
    # t1: V_clip = 1.2:              (1.5 − 1)² = 0.25, (1.2 − 1)² = 0.04   → 0.25
    # t2: V_clip = 0.1 (inside):     (0.1 + 1)² = 1.21, 1.21                → 1.21
    # t3: V_clip = 0.5 − 0.2 = 0.3:  (−0.5)² = 0.25,    0.3² = 0.09         → 0.25
    # t4: V_clip = 0 − 0.2 = −0.2:   (−0.3 + 1)² = 0.49, (−0.2 + 1)² = 0.64 → 0.64 clipped selected
    close(loss, 0.5 * (0.64 + 0.25 + 1.21 + 0.25 + 0.64) / 5)  # 0.299
    close(stats["value/clipfrac"], 2 / 5)
    close(stats["value/error"], (0.25 + 0.25 + 1.21 + 0.25 + 0.49) / 5)  # 0.49
    close(stats["loss/value"], loss.detach())
    assert all(not v.requires_grad for v in stats.values())
    loss.backward()
    # ∂/∂V of ½(V − R)²/N = (V − R)/N where the unclipped term counts, 0 where the clipped one is selected
    close(values.grad, [[0.0, 0.5 / 5, 1.1 / 5], [-0.5 / 5, 0.0, 0.0]])


def test_value_loss_without_clipping_active_is_half_mse_and_ignores_pads():
    values = torch.tensor([[1.0, 2.0, 5.0]], dtype=F64)  # (1,3)
    returns = torch.tensor([[1.5, 1.0, INF]], dtype=F64)  # (1,3)
    mask = torch.tensor([[True, True, False]])
    loss, stats = clipped_value_loss(values, values, returns, mask, value_clip_range=0.2)
    close(loss, 0.5 * (0.25 + 1.0) / 2)  # V = V_old: both terms equal, the plain ½·MSE
    assert stats["value/clipfrac"].item() == 0.0
    with pytest.raises(ValueError, match="value_clip_range"):
        clipped_value_loss(values, values, returns, mask, value_clip_range=-1.0)


# ---------------------------------------------------------------- explained variance


def test_explained_variance():
    returns = torch.tensor([[1.0, 2.0, 3.0], [4.0, NAN, NAN]], dtype=F64)  # (2,3)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    assert explained_variance(returns.clone(), returns, mask).item() == 1.0  # perfect values
    mean_values = torch.full((2, 3), 2.5, dtype=F64)  # (2,3) the mean of the real returns 1,2,3,4
    close(explained_variance(mean_values, returns, mask), 0.0)
    # values (1, 2, 3, 3): residual (0, 0, 0, 1) has variance 0.25 − 0.0625 = 0.1875; Var[R] = 1.25
    values = torch.tensor([[1.0, 2.0, 3.0], [3.0, 7.0, 7.0]], dtype=F64)  # (2,3)
    close(explained_variance(values, returns, mask), 1 - 0.1875 / 1.25)  # 0.85
    worse = torch.tensor([[4.0, 3.0, 2.0], [1.0, 0.0, 0.0]], dtype=F64)  # (2,3) anti-correlated
    # residual (−3, −1, 1, 3): variance 5; EV = 1 − 5/1.25 = −3
    close(explained_variance(worse, returns, mask), -3.0)
    flat = torch.ones(1, 3, dtype=F64)  # (1,3) returns with zero variance: undefined
    assert math.isnan(explained_variance(flat, flat, torch.ones(1, 3, dtype=torch.bool)).item())
