"""GAE and advantage whitening against hand arithmetic, a plain-loop reference and padding invariance."""

from __future__ import annotations

import pytest
import torch

from tether.ops import masked_mean, masked_var
from tether.rl.advantages import gae, whiten_advantages

F64 = torch.float64
NAN, INF = float("nan"), float("inf")

REWARDS = [0.1, -0.2, 1.0]
VALUES = [0.5, 0.4, 0.8]


def close(actual: torch.Tensor, expected, tol: float = 1e-12) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), rtol=tol, atol=tol)


def row(*values: float) -> torch.Tensor:
    return torch.tensor([values], dtype=F64)  # (1,R)


def test_gae_by_hand_gamma_1_lambda_095():
    advantages, returns = gae(row(*REWARDS), row(*VALUES), torch.ones(1, 3, dtype=torch.bool), 1.0, 0.95)
    # δ2 = 1.0 + 0 − 0.8 = 0.2 (V after the last token is 0)
    # δ1 = −0.2 + 0.8 − 0.4 = 0.2
    # δ0 = 0.1 + 0.4 − 0.5 = 0.0
    # A2 = 0.2;  A1 = 0.2 + 0.95·0.2 = 0.39;  A0 = 0.0 + 0.95·0.39 = 0.3705
    close(advantages, [[0.3705, 0.39, 0.2]])
    close(returns, [[0.3705 + 0.5, 0.39 + 0.4, 0.2 + 0.8]])


def test_gae_by_hand_gamma_09_lambda_1_is_discounted_return_minus_value():
    advantages, returns = gae(row(*REWARDS), row(*VALUES), torch.ones(1, 3, dtype=torch.bool), 0.9, 1.0)
    # G2 = 1.0;  G1 = −0.2 + 0.9·1.0 = 0.7;  G0 = 0.1 + 0.9·0.7 = 0.73
    # A = G − V = (0.73 − 0.5, 0.7 − 0.4, 1.0 − 0.8) = (0.23, 0.3, 0.2); returns = G
    close(advantages, [[0.23, 0.3, 0.2]])
    close(returns, [[0.73, 0.7, 1.0]])


def test_gae_lambda_0_is_one_step_td():
    advantages, _ = gae(row(*REWARDS), row(*VALUES), torch.ones(1, 3, dtype=torch.bool), 1.0, 0.0)
    close(advantages, [[0.0, 0.2, 0.2]])  # the δ_t of the first test


def test_pads_get_zero_and_padding_changes_nothing_on_real_tokens():
    mask = torch.ones(1, 3, dtype=torch.bool)
    expected_adv, expected_ret = gae(row(*REWARDS), row(*VALUES), mask, 1.0, 0.95)
    rewards = torch.tensor([
        [0.1, -0.2, 1.0, 5.0, NAN],  # right padding holding junk
        [9.0, INF, 0.1, -0.2, 1.0],  # left padding
        [0.1, 7.0, -0.2, 1.0, -3.0],  # a hole and a right pad
        [0.1, -0.2, 1.0, 0.0, 0.0],  # right padding holding zeros
    ], dtype=F64)  # (4,5)
    values = torch.tensor([
        [0.5, 0.4, 0.8, 3.0, INF],
        [NAN, -2.0, 0.5, 0.4, 0.8],
        [0.5, NAN, 0.4, 0.8, 6.0],
        [0.5, 0.4, 0.8, 0.0, 0.0],
    ], dtype=F64)  # (4,5)
    mask = torch.tensor([
        [True, True, True, False, False],
        [False, False, True, True, True],
        [True, False, True, True, False],
        [True, True, True, False, False],
    ])
    advantages, returns = gae(rewards, values, mask, 1.0, 0.95)
    for b in range(4):
        close(advantages[b][mask[b]], expected_adv[0])
        close(returns[b][mask[b]], expected_ret[0])
        close(advantages[b][~mask[b]], [0.0, 0.0])
        close(returns[b][~mask[b]], [0.0, 0.0])


def plain_gae(rewards: list[float], values: list[float], gamma: float, lam: float) -> list[float]:
    """The textbook loop over one unpadded row: A_t = Σ_l (γλ)^l δ_{t+l}."""
    n = len(rewards)
    deltas = [rewards[t] + gamma * (values[t + 1] if t + 1 < n else 0.0) - values[t] for t in range(n)]
    return [sum((gamma * lam) ** (u - t) * deltas[u] for u in range(t, n)) for t in range(n)]


def test_gae_matches_plain_loop_on_a_ragged_batch():
    g = torch.Generator().manual_seed(0)
    lengths = [6, 1, 4, 0, 3]
    rewards = torch.randn(5, 6, generator=g, dtype=F64)  # (B,R)
    values = torch.randn(5, 6, generator=g, dtype=F64)  # (B,R)
    mask = torch.tensor([[t < n for t in range(6)] for n in lengths])  # (B,R)
    advantages, returns = gae(rewards, values, mask, gamma=0.97, gae_lambda=0.9)
    for b, n in enumerate(lengths):
        expected = plain_gae(rewards[b, :n].tolist(), values[b, :n].tolist(), 0.97, 0.9)
        close(advantages[b, :n], expected, tol=1e-13)
        close(returns[b, :n], [a + v for a, v in zip(expected, values[b, :n].tolist())], tol=1e-13)
        assert (advantages[b, n:] == 0).all() and (returns[b, n:] == 0).all()


def test_gae_outputs_are_detached_and_inputs_checked():
    values = row(*VALUES).requires_grad_(True)
    advantages, returns = gae(row(*REWARDS), values, torch.ones(1, 3, dtype=torch.bool))
    assert not advantages.requires_grad and not returns.requires_grad
    with pytest.raises(ValueError, match=r"must all be \(B,R\)"):
        gae(row(*REWARDS), row(0.5, 0.4), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="gae_lambda"):
        gae(row(*REWARDS), row(*VALUES), torch.ones(1, 3, dtype=torch.bool), gae_lambda=1.5)


def test_whitening_masked_mean_0_var_1_and_pads_0():
    advantages = torch.tensor([[1.0, 2.0, 3.0, NAN], [4.0, 6.0, INF, 0.5]], dtype=F64)  # (2,4)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    whitened = whiten_advantages(advantages, mask)
    close(masked_mean(whitened, mask), 0.0)
    close(masked_var(whitened, mask), 1.0, tol=1e-8)  # eps 1e-8 in the variance
    assert whitened[~mask].tolist() == [0.0, 0.0, 0.0]
    # by hand: kept 1,2,3,4,6: mean 3.2, unbiased variance 14.8/4 = 3.7
    close(whitened[0, 0], (1.0 - 3.2) / (3.7 + 1e-8) ** 0.5)
    kept_mean = whiten_advantages(advantages, mask, shift_mean=False)
    close(masked_mean(kept_mean, mask), 3.2)
    close(masked_var(kept_mean, mask), 1.0, tol=1e-8)
    assert kept_mean[~mask].tolist() == [0.0, 0.0, 0.0]
