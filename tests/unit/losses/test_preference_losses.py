"""Preference losses (DPO, IPO, KTO, ORPO, SimPO) against hand arithmetic, their invariances and stability."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from tether.losses.preference import (
    PREFERENCE_LOSSES,
    LossSpec,
    dpo,
    ipo,
    kto,
    kto_kl_estimate,
    orpo,
    simpo,
)

F64 = torch.float64
LOG2 = math.log(2.0)


def t(*values: float, dtype: torch.dtype = F64, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype, requires_grad=requires_grad)  # (B,)


def nll(x: float) -> float:
    """−log σ(x) written out: log(1 + e^(−x))."""
    return math.log1p(math.exp(-x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def call(name: str, logps: dict[str, torch.Tensor], **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Call a registry loss the way a trainer does: the spec says which inputs it takes (no name checks)."""
    spec = PREFERENCE_LOSSES[name]
    if spec.data == "unpaired":
        return spec.fn(logps["policy"], logps["ref"], logps["labels"], logps["kl"], **kwargs)
    refs = (logps["ref_chosen"], logps["ref_rejected"]) if spec.needs_reference else ()
    return spec.fn(logps["policy_chosen"], logps["policy_rejected"], *refs, **kwargs)


def random_logps(n: int, seed: int, requires_grad: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def logp() -> torch.Tensor:
        return -torch.rand(n, generator=g, dtype=F64) * 3 - 0.05  # (n,) in (−3.05, −0.05): valid mean logprobs

    return {
        "policy_chosen": logp().requires_grad_(requires_grad),
        "policy_rejected": logp().requires_grad_(requires_grad),
        "ref_chosen": logp(),
        "ref_rejected": logp(),
        "policy": logp().requires_grad_(requires_grad),
        "ref": logp(),
        "labels": torch.rand(n, generator=g) > 0.4,  # (n,)
        "kl": torch.tensor(0.3, dtype=F64),
    }


# ---------------------------------------------------------------- DPO


def test_dpo_by_hand():
    pc, pr = t(-10.0, -5.0, -8.0), t(-12.0, -5.0, -7.0)
    rc, rr = t(-11.0, -5.0, -8.0), t(-11.5, -5.0, -9.0)
    loss, stats = dpo(pc, pr, rc, rr, beta=0.1)
    # logratios: chosen (1, 0, 0), rejected (−0.5, 0, 2); h = 0.1·(1.5, 0, −2) = (0.15, 0, −0.2)
    # −log σ(0.15) = log(1 + e^−0.15) = log(1.8607079764250578) = 0.6209567... ; −log σ(0) = log 2
    assert abs(math.exp(-0.15) - 0.8607079764250578) < 1e-16
    assert abs(nll(0.15) - math.log(1.8607079764250578)) < 1e-15
    expected = (math.log(1.8607079764250578) + LOG2 + math.log(1 + math.exp(0.2))) / 3
    assert abs(loss.item() - expected) < 1e-14
    assert abs(stats["loss/dpo"].item() - expected) < 1e-14
    assert stats["dpo/chosen_reward"].item() == pytest.approx(0.1 * (1 + 0 + 0) / 3, abs=1e-15)
    assert stats["dpo/rejected_reward"].item() == pytest.approx(0.1 * (-0.5 + 0 + 2) / 3, abs=1e-15)
    assert stats["dpo/margin"].item() == pytest.approx((0.15 + 0 - 0.2) / 3, abs=1e-15)
    assert stats["dpo/accuracy"].item() == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-15)  # tie = 0.5
    assert all(not v.requires_grad for v in stats.values())


def test_dpo_gradient_by_hand():
    pc, pr = t(-10.0, requires_grad=True), t(-12.0, requires_grad=True)
    rc = t(-11.0, requires_grad=True)  # a reference that still carries a graph: treated as a constant
    loss, _ = dpo(pc, pr, rc, t(-11.5), beta=0.1)
    loss.backward()
    assert rc.grad is None
    # dL/dπ_c = −β·σ(−h) = −0.1·σ(−0.15); dL/dπ_r = +0.1·σ(−0.15)
    assert abs(pc.grad.item() - (-0.1 * sigmoid(-0.15))) < 1e-15
    assert abs(pr.grad.item() - (0.1 * sigmoid(-0.15))) < 1e-15


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.5])
def test_dpo_at_policy_equal_reference_is_log2_for_every_pair(label_smoothing):
    g = torch.Generator().manual_seed(0)
    chosen = -torch.rand(6, generator=g, dtype=F64) * 100  # (6,)
    rejected = -torch.rand(6, generator=g, dtype=F64) * 100  # (6,)
    for i in range(6):
        loss, stats = dpo(chosen[i : i + 1], rejected[i : i + 1], chosen[i : i + 1].clone(),
                          rejected[i : i + 1].clone(), beta=0.3, label_smoothing=label_smoothing)
        assert abs(loss.item() - LOG2) < 1e-15
        assert stats["dpo/margin"].item() == 0.0
        assert stats["dpo/accuracy"].item() == 0.5


def test_dpo_label_smoothing_formula():
    pc, pr, rc, rr = t(-10.0, -6.0), t(-12.0, -4.0), t(-11.0, -6.0), t(-11.5, -5.0)
    # h = 0.1·(1.5, −1) = (0.15, −0.1)
    loss, _ = dpo(pc, pr, rc, rr, beta=0.1, label_smoothing=0.2)
    expected = (0.8 * nll(0.15) + 0.2 * nll(-0.15) + 0.8 * nll(-0.1) + 0.2 * nll(0.1)) / 2
    assert abs(loss.item() - expected) < 1e-14
    # −log σ(−h) = h − log σ(h), so the smoothed loss is the plain loss plus ε·mean(h)
    plain, _ = dpo(pc, pr, rc, rr, beta=0.1)
    assert abs(loss.item() - (plain.item() + 0.2 * (0.15 - 0.1) / 2)) < 1e-14
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo(pc, pr, rc, rr, label_smoothing=0.6)


@pytest.mark.parametrize("name", ["dpo", "ipo", "orpo", "simpo"])
def test_swapping_chosen_and_rejected_flips_the_margin(name):
    logps = random_logps(8, seed=1)
    swapped = dict(logps, policy_chosen=logps["policy_rejected"], policy_rejected=logps["policy_chosen"],
                   ref_chosen=logps["ref_rejected"], ref_rejected=logps["ref_chosen"])
    _, stats = call(name, logps)
    _, stats_swapped = call(name, swapped)
    assert abs(stats["dpo/margin"].item()) > 1e-3
    assert stats_swapped["dpo/margin"].item() == pytest.approx(-stats["dpo/margin"].item(), abs=1e-15)
    assert stats_swapped["dpo/accuracy"].item() == pytest.approx(1 - stats["dpo/accuracy"].item(), abs=1e-15)
    assert stats_swapped["dpo/chosen_reward"].item() == stats["dpo/rejected_reward"].item()


def test_dpo_swap_changes_the_loss_by_the_mean_h():
    logps = random_logps(5, seed=2)
    loss, stats = call("dpo", logps, beta=0.2)
    swapped = dict(logps, policy_chosen=logps["policy_rejected"], policy_rejected=logps["policy_chosen"],
                   ref_chosen=logps["ref_rejected"], ref_rejected=logps["ref_chosen"])
    loss_swapped, _ = call("dpo", swapped, beta=0.2)
    # −log σ(−h) − (−log σ(h)) = h per pair, and dpo/margin is mean h
    assert abs((loss_swapped - loss).item() - stats["dpo/margin"].item()) < 1e-14


# ---------------------------------------------------------------- IPO


def test_ipo_by_hand():
    pc, pr, rc, rr = t(-10.0, -6.0), t(-12.0, -4.0), t(-11.0, -6.0), t(-11.5, -5.0)
    loss, stats = ipo(pc, pr, rc, rr, beta=0.1)
    # h = (1 − (−0.5), 0 − 1) = (1.5, −1); 1/(2β) = 5: (1.5 − 5)² = 12.25, (−1 − 5)² = 36
    assert abs(loss.item() - (12.25 + 36.0) / 2) < 1e-12
    assert stats["loss/ipo"].item() == loss.item()
    assert stats["dpo/margin"].item() == pytest.approx(0.1 * (1.5 - 1) / 2, abs=1e-15)
    assert stats["dpo/accuracy"].item() == 0.5


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_ipo_at_policy_equal_reference(beta):
    logps = random_logps(4, seed=3, requires_grad=False)
    loss, _ = ipo(logps["ref_chosen"], logps["ref_rejected"], logps["ref_chosen"], logps["ref_rejected"],
                  beta=beta)
    assert abs(loss.item() - (1 / (2 * beta)) ** 2) < 1e-13


# ---------------------------------------------------------------- KTO


def test_kto_by_hand():
    policy, ref = t(-5.0, -7.0, -3.0, -4.0), t(-6.0, -6.0, -3.5, -4.0)
    labels = torch.tensor([True, False, True, False])
    loss, stats = kto(policy, ref, labels, torch.tensor(0.2, dtype=F64), beta=0.5,
                      desirable_weight=1.0, undesirable_weight=1.5)
    # r = (1, −1, 0.5, 0), z0 = 0.2
    # desirable:   1 − σ(0.5·(1 − 0.2)) = 1 − σ(0.4);   1 − σ(0.5·(0.5 − 0.2)) = 1 − σ(0.15)
    # undesirable: 1.5·(1 − σ(0.5·(0.2 + 1))) = 1.5·(1 − σ(0.6));   1.5·(1 − σ(0.5·0.2)) = 1.5·(1 − σ(0.1))
    expected = ((1 - sigmoid(0.4)) + 1.5 * (1 - sigmoid(0.6)) + (1 - sigmoid(0.15)) + 1.5 * (1 - sigmoid(0.1))) / 4
    assert abs(loss.item() - expected) < 1e-15
    assert stats["kto/kl"].item() == pytest.approx(0.2, abs=1e-16)
    assert stats["kto/desirable_reward"].item() == pytest.approx(0.5 * (1 + 0.5) / 2, abs=1e-15)
    assert stats["kto/undesirable_reward"].item() == pytest.approx(0.5 * (-1 + 0) / 2, abs=1e-15)
    assert stats["kto/desirable_fraction"].item() == 0.5
    assert all(not v.requires_grad for v in stats.values())


def test_kto_z0_is_clamped_at_zero_and_detached():
    policy, ref = t(-5.0, -7.0, requires_grad=True), t(-6.0, -6.0)
    labels = torch.tensor([True, False])
    negative = torch.tensor(-3.0, dtype=F64, requires_grad=True)
    loss, stats = kto(policy, ref, labels, negative, beta=0.5)
    # z0 = max(0, −3) = 0; r = (1, −1): (1 − σ(0.5·1)) + (1 − σ(0.5·(0 + 1))) over 2
    assert abs(loss.item() - (1 - sigmoid(0.5))) < 1e-15
    assert stats["kto/kl"].item() == 0.0
    zero, _ = kto(policy, ref, labels, 0.0, beta=0.5)  # a float works too
    assert loss.item() == zero.item()
    unclamped_would_be = ((1 - sigmoid(0.5 * (1 + 3))) + (1 - sigmoid(0.5 * (-3 + 1)))) / 2
    assert abs(loss.item() - unclamped_would_be) > 1e-3
    loss.backward()
    assert negative.grad is None  # no gradient into the reference point
    assert torch.isfinite(policy.grad).all()


def test_kto_weights_and_policy_equal_reference():
    logps = random_logps(6, seed=4, requires_grad=False)
    labels = torch.tensor([True, True, False, True, False, False])
    loss, stats = kto(logps["ref"], logps["ref"].clone(), labels, 0.0, beta=0.1, desirable_weight=1.0,
                      undesirable_weight=4 / 3)
    # r = 0, z0 = 0: every example costs w·(1 − σ(0)) = w/2
    assert abs(loss.item() - (3 * 0.5 + 3 * (4 / 3) * 0.5) / 6) < 1e-15
    assert stats["kto/desirable_reward"].item() == 0.0


def test_kto_only_one_kind_of_label():
    loss, stats = kto(t(-1.0, -2.0), t(-2.0, -2.0), torch.tensor([True, True]), 0.0, beta=1.0)
    assert abs(loss.item() - ((1 - sigmoid(1.0)) + (1 - sigmoid(0.0))) / 2) < 1e-15
    assert stats["kto/undesirable_reward"].item() == 0.0  # none: 0, not nan
    assert stats["kto/desirable_fraction"].item() == 1.0


def test_kto_kl_estimate():
    policy_mm = t(-5.0, -6.0, -7.0, requires_grad=True)
    z0 = kto_kl_estimate(policy_mm, t(-5.5, -6.5, -6.7))
    assert abs(z0.item() - (0.5 + 0.5 - 0.3) / 3) < 1e-15  # mean(π − ref)
    assert not z0.requires_grad and z0.shape == ()
    assert kto_kl_estimate(t(-5.0, -6.0), t(-4.0, -6.5)).item() == 0.0  # mean −0.25 → clamped to 0
    assert kto_kl_estimate(t(), t()).item() == 0.0


# ---------------------------------------------------------------- ORPO


def test_orpo_by_hand():
    # p_c = (0.8, 0.6), p_r = (0.5, 0.2): odds_c = (4, 1.5), odds_r = (1, 0.25)
    pc, pr = t(math.log(0.8), math.log(0.6)), t(math.log(0.5), math.log(0.2))
    loss, stats = orpo(pc, pr, beta=0.1)
    # −log σ(log(o_c/o_r)) = log(1 + o_r/o_c): log(1 + 1/4) = log 1.25, log(1 + 0.25/1.5) = log(7/6)
    l_or = (math.log(1.25), math.log(7 / 6))
    sft = (-math.log(0.8), -math.log(0.6))  # default NLL = −mean logp of the chosen response
    expected = (sft[0] + 0.1 * l_or[0] + sft[1] + 0.1 * l_or[1]) / 2
    assert abs(loss.item() - expected) < 1e-14
    assert stats["orpo/log_odds_ratio"].item() == pytest.approx((math.log(4) + math.log(6)) / 2, abs=1e-14)
    assert stats["orpo/nll"].item() == pytest.approx((sft[0] + sft[1]) / 2, abs=1e-15)
    assert stats["dpo/chosen_reward"].item() == pytest.approx(0.1 * (math.log(0.8) + math.log(0.6)) / 2, abs=1e-15)
    assert stats["dpo/accuracy"].item() == 1.0


def test_orpo_sft_term():
    pc, pr = t(math.log(0.8), math.log(0.6)), t(math.log(0.5), math.log(0.2))
    chosen_nll = t(2.0, 3.0, requires_grad=True)
    loss, stats = orpo(pc, pr, chosen_nll, beta=0.5)
    assert abs(loss.item() - (2.0 + 0.5 * math.log(1.25) + 3.0 + 0.5 * math.log(7 / 6)) / 2) < 1e-14
    assert stats["orpo/nll"].item() == 2.5
    loss.backward()
    torch.testing.assert_close(chosen_nll.grad, t(0.5, 0.5), atol=0, rtol=0)  # d/d NLL_i = 1/N
    no_or, _ = orpo(pc, pr, chosen_nll, beta=0.0)  # β = 0: pure SFT
    assert no_or.item() == 2.5


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_orpo_log_odds_stable_near_zero(dtype):
    # rejected p = 1/2 has log odds 0, so orpo/log_odds_ratio is the chosen log odds alone.
    # logp = −a, a = 1e-8: 1 − e^−a = a − a²/2 + … so log(1 − e^−a) = log a − a/2 + O(a²) and
    # log odds = −a − (log a − a/2) = −log a − a/2 = 8·ln 10 − 5e-9 = 18.420680743952367 − 5e-9
    assert abs(-math.log(1e-8) - 18.420680743952367) < 1e-14
    pc = torch.tensor([-1e-8], dtype=dtype, requires_grad=True)
    pr = torch.tensor([math.log(0.5)], dtype=dtype)
    loss, stats = orpo(pc, pr, beta=1.0)
    tol = 1e-12 if dtype == F64 else 2e-6
    assert abs(stats["orpo/log_odds_ratio"].item() - (18.420680743952367 - 5e-9)) < tol * 18.42
    # with o_r = 1: L_OR = log(1 + 1/o_c) = log(1/p_c) = −logp_c = 1e-8; the NLL term is also 1e-8
    assert abs(loss.item() - 2e-8) < (1e-20 if dtype == F64 else 1e-13)
    loss.backward()
    assert torch.isfinite(pc.grad).all()


@pytest.mark.parametrize("logp", [-1e-3, math.log(0.5) - 1e-9, math.log(0.5) + 1e-9, -0.5, -0.7, -3.0, -50.0])
def test_orpo_log_odds_across_the_branch_switch(logp):
    _, stats = orpo(t(logp), t(math.log(0.5)), beta=1.0)
    if logp == -1e-3:  # log(1 − e^−a) = log a − a/2 + a²/24 − O(a⁴): log odds = −log a − a/2 − a²/24
        a = 1e-3
        expected = -math.log(a) - a / 2 - a**2 / 24
    else:  # away from 0, p/(1 − p) in plain arithmetic is accurate
        p = math.exp(logp)
        expected = math.log(p / (1 - p))
    assert abs(stats["orpo/log_odds_ratio"].item() - expected) < 1e-13 * max(1.0, abs(expected))


def test_orpo_finite_at_logp_zero():
    pc = t(0.0, requires_grad=True)  # float32 log-softmax can return exactly 0 (p = 1)
    loss, stats = orpo(pc, t(-1.0), beta=0.1)
    assert torch.isfinite(loss) and torch.isfinite(stats["orpo/log_odds_ratio"])
    loss.backward()
    assert torch.isfinite(pc.grad).all()


# ---------------------------------------------------------------- SimPO


def test_simpo_by_hand_and_gamma():
    pc, pr = t(-1.0, -0.5), t(-1.5, -0.25)
    loss, stats = simpo(pc, pr, beta=2.0, gamma=0.5)
    # h = 2·avg_c − 2·avg_r − 0.5: (−2 + 3 − 0.5, −1 + 0.5 − 0.5) = (0.5, −1)
    assert abs(loss.item() - (nll(0.5) + nll(-1.0)) / 2) < 1e-15
    assert stats["dpo/margin"].item() == pytest.approx((1.0 - 0.5) / 2, abs=1e-15)  # γ excluded
    assert stats["dpo/chosen_reward"].item() == pytest.approx(2.0 * (-1.5) / 2, abs=1e-15)
    # γ = 1 puts pair 0 exactly at h = 0: log 2
    at_margin, _ = simpo(pc[:1], pr[:1], beta=2.0, gamma=1.0)
    assert abs(at_margin.item() - LOG2) < 1e-15
    # γ is in reward units (after β): gamma_beta_ratio 0.25 at β = 2 is γ = 0.5
    no_gamma, _ = simpo(pc, pr, beta=2.0, gamma=0.0)
    assert abs(no_gamma.item() - (nll(1.0) + nll(-0.5)) / 2) < 1e-15
    smoothed, _ = simpo(pc, pr, beta=2.0, gamma=0.5, label_smoothing=0.1)
    assert abs(smoothed.item() - (0.9 * nll(0.5) + 0.1 * nll(-0.5) + 0.9 * nll(-1.0) + 0.1 * nll(1.0)) / 2) < 1e-15


# ---------------------------------------------------------------- all losses


@pytest.mark.parametrize("name", sorted(PREFERENCE_LOSSES))
def test_microbatch_invariance_with_global_count(name):
    logps = random_logps(7, seed=5)
    grad_inputs = [logps[k] for k in ("policy_chosen", "policy_rejected", "policy")]
    count_arg = "num_examples" if PREFERENCE_LOSSES[name].data == "unpaired" else "num_pairs"
    full, _ = call(name, logps)
    full_grads = torch.autograd.grad(full, grad_inputs, allow_unused=True)
    parts = (slice(0, 2), slice(2, 3), slice(3, 7))  # uneven microbatches of 2, 1, 4

    def piece(p: slice, **kw) -> torch.Tensor:
        return call(name, {k: (v if k == "kl" else v[p]) for k, v in logps.items()}, **kw)[0]

    total = sum(piece(p, **{count_arg: 7}) for p in parts)
    split_grads = torch.autograd.grad(total, grad_inputs, allow_unused=True)
    assert abs(total.item() - full.item()) < 1e-13
    for a, b in zip(full_grads, split_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, atol=1e-14, rtol=0)
    # the per-microbatch default (each its own mean) weights the single example 7/3 more: not invariant
    own_means = sum(piece(p).item() for p in parts)
    assert abs(own_means - full.item()) > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name", sorted(PREFERENCE_LOSSES))
def test_finite_gradients_at_extreme_logprobs(name, dtype):
    big = -1e4
    logps = {
        "policy_chosen": torch.tensor([big, 0.0, big, -1.0], dtype=dtype, requires_grad=True),
        "policy_rejected": torch.tensor([0.0, big, big, -1.0], dtype=dtype, requires_grad=True),
        "ref_chosen": torch.tensor([0.0, big, -1.0, big], dtype=dtype),
        "ref_rejected": torch.tensor([big, 0.0, -1.0, big], dtype=dtype),
        "policy": torch.tensor([big, 0.0, big, -1.0], dtype=dtype, requires_grad=True),
        "ref": torch.tensor([0.0, big, -1.0, big], dtype=dtype),
        "labels": torch.tensor([True, False, False, True]),
        "kl": torch.tensor(0.0, dtype=dtype),
    }
    loss, stats = call(name, logps)
    assert torch.isfinite(loss)
    assert all(torch.isfinite(v).all() for v in stats.values())
    loss.backward()
    grads = [logps[k].grad for k in ("policy_chosen", "policy_rejected", "policy") if logps[k].grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_dpo_gradient_at_extreme_logprobs_by_hand():
    pc = t(-1e4, requires_grad=True)
    loss, _ = dpo(pc, t(0.0), t(0.0), t(0.0), beta=0.1)
    # h = 0.1·(−1e4) = −1000: −log σ(−1000) = 1000 + log(1 + e^−1000) = 1000; dL/dπ_c = −β·σ(1000) = −0.1
    assert loss.item() == 1000.0
    loss.backward()
    assert pc.grad.item() == -0.1


def test_registry():
    assert set(PREFERENCE_LOSSES) == {"dpo", "ipo", "kto", "orpo", "simpo"}
    expected = {  # name: (fn, needs_reference, length_normalised, data)
        "dpo": (dpo, True, False, "pairs"),
        "ipo": (ipo, True, True, "pairs"),
        "kto": (kto, True, False, "unpaired"),
        "orpo": (orpo, False, True, "pairs"),
        "simpo": (simpo, False, True, "pairs"),
    }
    for name, (fn, needs_reference, length_normalised, data) in expected.items():
        spec = PREFERENCE_LOSSES[name]
        assert (spec.fn, spec.needs_reference, spec.length_normalised, spec.data) == (
            fn, needs_reference, length_normalised, data)
        assert spec.description and "\n" not in spec.description
    with pytest.raises(dataclasses.FrozenInstanceError):
        PREFERENCE_LOSSES["dpo"].fn = ipo  # type: ignore[misc]
    assert isinstance(PREFERENCE_LOSSES["dpo"], LossSpec)


def test_empty_batch_and_shape_errors():
    loss, _ = dpo(t(), t(), t(), t())
    assert loss.item() == 0.0
    loss, _ = kto(t(), t(), torch.zeros(0, dtype=torch.bool), 0.0)
    assert loss.item() == 0.0
    with pytest.raises(ValueError, match=r"must all be \(B,\)"):
        dpo(t(1.0, 2.0), t(1.0), t(1.0), t(1.0))
    with pytest.raises(ValueError, match=r"must all be \(B,\)"):
        simpo(torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="beta"):
        ipo(t(1.0), t(1.0), t(1.0), t(1.0), beta=0.0)
