"""KL estimators and KL controllers against hand arithmetic (float64) and a Monte Carlo check of bias."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

from tether.errors import ConfigError, TrainingError
from tether.rl.kl import (
    KL_ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    kl_k1,
    kl_k2,
    kl_k3,
    per_token_kl,
)

F64 = torch.float64

# d = logp − ref = (0.5, −1.0, 0.0)
LOGPROBS = torch.tensor([[-1.0, -2.0, -0.5]], dtype=F64)  # (1,3)
REF_LOGPROBS = torch.tensor([[-1.5, -1.0, -0.5]], dtype=F64)  # (1,3)


def close(actual: torch.Tensor, expected, tol: float = 1e-12) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), rtol=tol, atol=tol)


# ---------------------------------------------------------------- estimators


def test_k1_by_hand_and_negative_on_a_token():
    k1 = kl_k1(LOGPROBS, REF_LOGPROBS)
    close(k1, [[0.5, -1.0, 0.0]])
    assert k1[0, 1].item() < 0  # the policy puts less mass than the reference on this token


def test_k2_by_hand():
    close(kl_k2(LOGPROBS, REF_LOGPROBS), [[0.5 * 0.25, 0.5 * 1.0, 0.0]])


def test_k3_by_hand():
    # log r = ref − logp = (−0.5, 1.0, 0): (r − 1) − log r = (e^−0.5 − 1 + 0.5, e − 1 − 1, 1 − 1 − 0)
    close(kl_k3(LOGPROBS, REF_LOGPROBS), [[math.exp(-0.5) - 0.5, math.e - 2.0, 0.0]])
    # small d = 1e-6: log r = −d, (r − 1) − log r = expm1(−d) + d = d²/2 − d³/6 + … = 5e-13 − 1.7e-19;
    # exp(−d) − 1 + d in float64 is off by 1.6e-17 (rel. 3e-5); expm1(−d) + d by ~1e-22 (rel. 2e-10)
    tiny = kl_k3(torch.tensor([1e-6], dtype=F64), torch.tensor([0.0], dtype=F64))
    assert abs(tiny.item() - (0.5e-12 - 1e-18 / 6)) < 1e-9 * 0.5e-12


def test_k2_and_k3_never_negative():
    g = torch.Generator().manual_seed(0)
    logprobs = -torch.rand(64, 32, generator=g, dtype=F64) * 8  # (64,32)
    ref = -torch.rand(64, 32, generator=g, dtype=F64) * 8  # (64,32)
    assert (kl_k1(logprobs, ref) < 0).any()
    assert (kl_k2(logprobs, ref) >= 0).all()
    assert (kl_k3(logprobs, ref) >= 0).all()


# p = (0.5, 0.3, 0.2), q = (0.2, 0.3, 0.5): KL(p‖q) = 0.5·ln 2.5 + 0 + 0.2·ln 0.4 = 0.3·ln 2.5
P = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
Q = torch.tensor([0.2, 0.3, 0.5], dtype=F64)
TRUE_KL = 0.3 * math.log(2.5)  # 0.274887...


def test_exact_expectations_k1_k3_unbiased_k2_biased():
    logp, logq = P.log().unsqueeze(0), Q.log().unsqueeze(0)  # (1,3) every token of the vocabulary
    for name in ("k1", "k3"):
        assert abs((P * KL_ESTIMATORS[name](logp, logq)[0]).sum().item() - TRUE_KL) < 1e-15
    # E[k2] = ½·(0.5 + 0.2)·(ln 2.5)² = 0.35·(ln 2.5)² = 0.29385 ≠ 0.27489
    expected_k2 = 0.35 * math.log(2.5) ** 2
    assert abs((P * kl_k2(logp, logq)[0]).sum().item() - expected_k2) < 1e-15


def test_monte_carlo_k1_k3_unbiased():
    g = torch.Generator().manual_seed(1234)
    tokens = torch.multinomial(P, 200_000, replacement=True, generator=g)  # (N,) sampled from p
    logprobs = P.log()[tokens].unsqueeze(0)  # (1,N)
    ref_logprobs = Q.log()[tokens].unsqueeze(0)  # (1,N)
    means = {name: fn(logprobs, ref_logprobs).mean().item() for name, fn in KL_ESTIMATORS.items()}
    # standard errors at N = 2e5: k1 ≈ 0.0018, k3 ≈ 0.0005, so 1e-2 is > 5 standard errors
    assert abs(means["k1"] - TRUE_KL) < 1e-2
    assert abs(means["k3"] - TRUE_KL) < 1e-2
    # k2's bias (0.29385 − 0.27489 = 0.019) is visible at this tolerance: the check can fail
    assert abs(means["k2"] - TRUE_KL) > 1e-2


def test_per_token_kl_registry_mask_and_unknown_name():
    logprobs = torch.tensor([[-1.0, -2.0, float("nan")]], dtype=F64)  # (1,3) nan at the pad
    ref = torch.tensor([[-1.5, -1.0, float("-inf")]], dtype=F64)  # (1,3)
    mask = torch.tensor([[True, True, False]])
    close(per_token_kl(logprobs, ref, mask, estimator="k1"), [[0.5, -1.0, 0.0]])
    close(per_token_kl(logprobs, ref, mask, estimator="k2"), [[0.125, 0.5, 0.0]])
    close(per_token_kl(logprobs, ref, mask, estimator="k3"), [[math.exp(-0.5) - 0.5, math.e - 2.0, 0.0]])
    assert torch.isnan(per_token_kl(logprobs, ref, estimator="k1")[0, 2])  # no mask: nothing zeroed
    assert set(KL_ESTIMATORS) == {"k1", "k2", "k3"}
    with pytest.raises(ConfigError, match="unknown KL estimator 'k4'"):
        per_token_kl(logprobs, ref, mask, estimator="k4")
    with pytest.raises(ValueError, match="disagree"):
        per_token_kl(logprobs, ref[:, :2])


# ---------------------------------------------------------------- controllers


def test_fixed_controller_never_changes():
    ctl = FixedKLController(0.05)
    for kl in (0.0, 1.0, 100.0, -3.0):
        assert ctl.update(kl, 256) == 0.05
    assert ctl.value == 0.05
    with pytest.raises(ValueError, match="kl_coef"):
        FixedKLController(-0.1)


def test_adaptive_controller_by_hand():
    ctl = AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=10_000)
    # KL 6.6: e = 6.6/6 − 1 = 0.1 (inside the clip): β = 0.1·(1 + 0.1·256/10000) = 0.1·1.00256
    assert abs(ctl.update(6.6, 256) - 0.100256) < 1e-15
    # KL 6 = target: e = 0, β unchanged
    assert abs(ctl.update(torch.tensor(6.0, dtype=F64), 500) - 0.100256) < 1e-15
    # KL 4.8: e = −0.2 (at the clip edge): β ·= 1 − 0.2·100/10000 = 0.998 → 0.100256·0.998 = 0.100055488
    assert abs(ctl.update(4.8, 100) - 0.100055488) < 1e-15
    assert abs(ctl.value - 0.100055488) < 1e-15


def test_adaptive_controller_clips_the_error_at_plus_minus_0_2():
    up = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    # KL 9: e = 0.5 → clipped to 0.2: β = 0.1·(1 + 0.2·256/10000) = 0.1·1.00512 = 0.100512
    assert abs(up.update(9.0, 256) - 0.100512) < 1e-15
    unclipped = 0.1 * (1 + 0.5 * 256 / 10_000)  # 0.101280: what the update would be without the clip
    assert abs(up.value - unclipped) > 5e-4
    far_up = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    assert far_up.update(600.0, 256) == up.value  # any KL above 1.2·target moves β the same
    down = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    # KL 1.5: e = −0.75 → −0.2: β = 0.1·(1 − 0.2·256/10000) = 0.1·0.99488 = 0.099488
    assert abs(down.update(1.5, 256) - 0.099488) < 1e-15
    zero_kl = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    assert zero_kl.update(0.0, 256) == down.value


def test_adaptive_controller_rejects_bad_input():
    with pytest.raises(ValueError, match="target"):
        AdaptiveKLController(0.1, target=0.0, horizon=10_000)
    with pytest.raises(ValueError, match="horizon"):
        AdaptiveKLController(0.1, target=6.0, horizon=0)
    with pytest.raises(ValueError, match="init_kl_coef"):
        AdaptiveKLController(0.0, target=6.0, horizon=10_000)
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    with pytest.raises(TrainingError, match="nan"):
        ctl.update(float("nan"), 256)
    with pytest.raises(ValueError, match="n_steps"):
        ctl.update(1.0, 50_000)  # 1 − 0.2·5 = 0: β would reach 0
    assert ctl.value == 0.1  # failed updates leave β alone


@pytest.mark.parametrize("roundtrip", ["dict", "json", "torch"])
def test_state_dict_restores_beta_exactly(roundtrip):
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    for kl in (9.0, 6.3, 2.0, 7.1):
        ctl.update(kl, 256)
    state = ctl.state_dict()
    if roundtrip == "json":
        state = json.loads(json.dumps(state))
    elif roundtrip == "torch":
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        state = torch.load(buffer)
    resumed = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    assert resumed.value != ctl.value
    resumed.load_state_dict(state)
    assert resumed.value == ctl.value  # bit-exact
    for kl in (5.0, 8.0):
        assert resumed.update(kl, 256) == ctl.update(kl, 256)
    fixed = FixedKLController(0.05)
    other = FixedKLController(0.2)
    other.load_state_dict(fixed.state_dict())
    assert other.value == 0.05
