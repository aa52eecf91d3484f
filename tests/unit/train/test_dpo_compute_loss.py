"""The trainer's loss adapter for KTO: labels from the rows, z0 from the caller (kto_reference_point)."""

import math

import pytest
import torch

from tether.train.dpo import DPOConfig, compute_loss, policy_sides


def _policy(chosen):
    chosen = torch.tensor(chosen, dtype=torch.float64)
    return {"chosen": chosen, "chosen_mean": chosen / 2}  # KTO's policy forward scores the examples only


def test_kto_stats_by_hand():
    policy = _policy([-4.0, -6.0, -5.0, -3.0])
    ref = torch.tensor([[-5.0, -8.0, 0, 0], [-6.0, -7.0, 0, 0], [-4.0, -6.0, 0, 0], [-3.0, -8.0, 0, 0]],
                       dtype=torch.float64)  # columns: chosen, rejected, chosen_mean, rejected_mean
    batch = {"margin": torch.tensor([1.0, 0.0, 1.0, 0.0])}  # desirable, undesirable, desirable, undesirable
    cfg = DPOConfig(loss="kto", beta=0.5)
    # the step's mismatched log-ratios averaged −1.25: z0 = max(0, −1.25) = 0
    point = (torch.tensor(0.0, dtype=torch.float64), torch.tensor(-1.25, dtype=torch.float64))
    loss, stats = compute_loss(cfg, policy, ref, batch, n_global=4, kto_point=point)
    assert stats["kto/mismatched_logratio"].item() == -1.25
    assert stats["kto/kl"].item() == 0.0
    # r = (1, 0, −1, 0); desirable 1 − σ(β·r), undesirable 1 − σ(−β·r)
    sig = lambda a: 1 / (1 + math.exp(-a))  # noqa: E731
    expected = ((1 - sig(0.5)) + (1 - sig(0.0)) + (1 - sig(-0.5)) + (1 - sig(0.0))) / 4
    assert abs(loss.item() - expected) < 1e-12
    assert stats["kto/desirable_fraction"].item() == 0.5
    assert stats["kto/desirable_reward"].item() == 0.0  # β·(1 + −1)/2
    assert stats["policy/logratio"].item() == 0.0  # mean of r over the examples, not the mismatched rows


def test_kto_positive_z0_shifts_the_loss():
    policy = _policy([-4.0, -6.0])
    ref = torch.tensor([[-4.0, -8.0, 0, 0], [-6.0, -6.0, 0, 0]], dtype=torch.float64)
    point = (torch.tensor(1.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    loss, stats = compute_loss(DPOConfig(loss="kto", beta=0.1), policy, ref, {"margin": torch.tensor([1.0, 0.0])}, 2,
                               point)
    assert stats["kto/kl"].item() == 1.0
    sig = lambda a: 1 / (1 + math.exp(-a))  # noqa: E731
    # r = (0, 0), z0 = 1: desirable 1 − σ(0.1·(0 − 1)), undesirable 1 − σ(0.1·(1 − 0))
    assert loss.item() == pytest.approx(((1 - sig(-0.1)) + (1 - sig(0.1))) / 2, abs=1e-12)


def test_kto_without_its_reference_point_is_refused():
    with pytest.raises(ValueError, match="kto_point"):
        compute_loss(DPOConfig(loss="kto"), _policy([-1.0]), torch.zeros(1, 4), {"margin": torch.tensor([1.0])}, 1)


def test_only_kto_skips_the_rejected_rows():
    assert policy_sides(DPOConfig(loss="kto")) == ("chosen",)
    for loss in ("dpo", "ipo", "orpo", "simpo"):
        assert policy_sides(DPOConfig(loss=loss)) == ("chosen", "rejected")
