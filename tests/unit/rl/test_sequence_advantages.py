"""RLOO and GRPO advantages against hand arithmetic and a plain loop; grouping errors."""

from __future__ import annotations

import math

import pytest
import torch

from tether.rl.advantages import SEQUENCE_ADVANTAGES, grpo_advantages, rloo_advantages

F64 = torch.float64


def test_rloo_by_hand():
    # group 1: R = (1, 2, 6); baselines (2+6)/2 = 4, (1+6)/2 = 3.5, (1+2)/2 = 1.5 → A = (−3, −1.5, 4.5)
    # group 2: R = (0, 0, 3); baselines 1.5, 1.5, 0 → A = (−1.5, −1.5, 3)
    returns = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0], dtype=F64)
    torch.testing.assert_close(rloo_advantages(returns, 3),
                               torch.tensor([-3.0, -1.5, 4.5, -1.5, -1.5, 3.0], dtype=F64), rtol=0, atol=1e-12)


def test_rloo_matches_a_plain_loop_and_sums_to_zero_per_group():
    g = torch.Generator().manual_seed(0)
    returns = torch.randn(12, generator=g, dtype=F64)
    k = 4
    expected = []
    for i in range(12):
        group = range(i // k * k, i // k * k + k)
        others = [float(returns[j]) for j in group if j != i]
        expected.append(float(returns[i]) - sum(others) / len(others))
    out = rloo_advantages(returns, k)
    torch.testing.assert_close(out, torch.tensor(expected, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(out.reshape(-1, k).sum(1), torch.zeros(3, dtype=F64), rtol=0, atol=1e-12)


def test_grpo_by_hand():
    # group R = (1, 2, 6): mean 3, unbiased var ((−2)² + (−1)² + 3²)/2 = 7, std √7
    # A = (−2, −1, 3) / (√7 + eps)
    eps = 1e-4
    out = grpo_advantages(torch.tensor([1.0, 2.0, 6.0], dtype=F64), 3, eps=eps)
    expected = torch.tensor([-2.0, -1.0, 3.0], dtype=F64) / (math.sqrt(7.0) + eps)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_grpo_tied_group_gets_zero_and_k2_is_plus_minus():
    out = grpo_advantages(torch.tensor([0.5, 0.5, 1.0, 3.0], dtype=F64), 2, eps=0.0)
    # group 1 tied → 0/0 would be nan without eps; with eps = 0 it is nan, so use the default eps below
    assert torch.isnan(out[:2]).all()
    out = grpo_advantages(torch.tensor([0.5, 0.5, 1.0, 3.0], dtype=F64), 2)
    # group 2: mean 2, unbiased std √2 → ±1/√2 (up to eps)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, -1 / (math.sqrt(2) + 1e-4), 1 / (math.sqrt(2) + 1e-4)],
                                                 dtype=F64), rtol=0, atol=1e-12)


def test_registry_and_errors():
    assert set(SEQUENCE_ADVANTAGES) == {"rloo", "grpo"}
    with pytest.raises(ValueError, match="k ≥ 2"):
        rloo_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="k ≥ 2"):
        grpo_advantages(torch.zeros(6), 1)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        rloo_advantages(torch.zeros(2, 3), 3)
