"""The trainer's loss adapter for KTO: labels from the pair rows, z0 from the mismatched completions."""

import math

import torch

from tether.train.dpo import DPOConfig, compute_loss


def _policy(chosen, rejected):
    chosen, rejected = torch.tensor(chosen, dtype=torch.float64), torch.tensor(rejected, dtype=torch.float64)
    return {"chosen": chosen, "rejected": rejected, "chosen_mean": chosen / 2, "rejected_mean": rejected / 2}


def test_kto_stats_by_hand():
    # rows: chosen = the example's completion, rejected = the mismatched completion (another row's)
    policy = _policy([-4.0, -6.0, -5.0, -3.0], [-9.0, -8.0, -7.0, -10.0])
    ref = torch.tensor([[-5.0, -8.0, 0, 0], [-6.0, -7.0, 0, 0], [-4.0, -6.0, 0, 0], [-3.0, -8.0, 0, 0]],
                       dtype=torch.float64)  # columns: chosen, rejected, chosen_mean, rejected_mean
    batch = {"margin": torch.tensor([1.0, 0.0, 1.0, 0.0])}  # desirable, undesirable, desirable, undesirable
    cfg = DPOConfig(loss="kto", beta=0.5)
    loss, stats = compute_loss(cfg, policy, ref, batch, n_global=4)
    # mismatched log-ratios: −1, −1, −1, −2 → mean −1.25, so z0 = max(0, −1.25) = 0
    assert stats["kto/mismatched_logratio"].item() == -1.25
    assert stats["kto/kl"].item() == 0.0
    # r = (1, 0, −1, 0); desirable 1 − σ(β·r), undesirable 1 − σ(−β·r)
    sig = lambda a: 1 / (1 + math.exp(-a))  # noqa: E731
    expected = ((1 - sig(0.5)) + (1 - sig(0.0)) + (1 - sig(-0.5)) + (1 - sig(0.0))) / 4
    assert abs(loss.item() - expected) < 1e-12
    assert stats["kto/desirable_fraction"].item() == 0.5
    assert stats["kto/desirable_reward"].item() == 0.0  # β·(1 + −1)/2


def test_kto_positive_estimate_is_z0():
    policy = _policy([-4.0, -6.0], [-7.0, -5.0])
    ref = torch.tensor([[-4.0, -8.0, 0, 0], [-6.0, -6.0, 0, 0]], dtype=torch.float64)
    _, stats = compute_loss(DPOConfig(loss="kto", beta=0.1), policy, ref, {"margin": torch.tensor([1.0, 0.0])}, 2)
    assert stats["kto/mismatched_logratio"].item() == 1.0  # (1 + 1) / 2
    assert stats["kto/kl"].item() == 1.0
