"""Per-token KL estimators between the policy and the reference, and the KL-coefficient controllers.

Estimators (Schulman 2020, "Approximating KL Divergence", http://joschu.net/blog/kl-approx.html). The
response tokens are sampled from the policy π, so with log-ratio d = log π(y_t) − log π_ref(y_t) of the
sampled token and r = π_ref / π = exp(−d):

    k1 = d                      unbiased for KL(π‖π_ref); one token can be negative; high variance
    k2 = ½·d²                   always ≥ 0, low variance, biased (its mean is not the KL in general)
    k3 = (r − 1) − log r        unbiased (E_π[r] = 1, so E[k3] = E[−log r] = E[k1]), always ≥ 0
                                (log r ≤ r − 1), low variance when π ≈ π_ref

Each estimator maps ``logprobs (B,R)`` and ``ref_logprobs (B,R)`` (per-token log-probabilities of the
sampled tokens) to ``(B,R)``. ``KL_ESTIMATORS`` maps a name to its function; ``per_token_kl`` looks the
name up there and zeroes padding. k3 is computed as ``expm1(−d) + d``: no rounding of r − 1 near r = 1
(relative error about 2·eps/|d| for small |d|, far below the KL itself).

Controllers (Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences", §2.2): the PPO
coefficient β (``kl_coef``) of the per-token KL penalty is either fixed or adapted towards a target KL:

    e = clip(KL / target − 1, −0.2, 0.2)
    β ← β · (1 + e · n / horizon)

where KL is the current per-sequence KL of the rollout and n the number of samples (steps) it covered.
Both controllers expose ``.value`` (β, a Python float), ``.update(current_kl, n_steps)``, and
``state_dict()`` / ``load_state_dict()`` so that a resumed run continues with exactly the same β.

Health (``kl_health``): a rule of thumb for the mean per-sequence KL of a rollout, in nats. Below 1 the
policy has barely changed; 2–6 is the usual working range of RLHF runs; above 10 the policy is drifting
away from the reference (warn: the proxy reward is likely being over-optimised, Gao et al. 2022);
above 20 it is catastrophic (stop). A clearly negative k1 estimate means the sampler's and the
trainer's logprobs disagree (temperature, padding, dropout), not that the policy moved.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import torch

from tether.errors import ConfigError, TrainingError

__all__ = [
    "KL_ESTIMATORS",
    "AdaptiveKLController",
    "FixedKLController",
    "KLController",
    "KLHealth",
    "kl_health",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "per_token_kl",
]

# The ±0.2 clip of the proportional error (Ziegler et al. 2019): bounds how fast β can move per update.
_MAX_PROPORTIONAL_ERROR = 0.2


def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k1 = log π − log π_ref per sampled token: unbiased for KL(π‖π_ref), negative where π < π_ref."""
    return logprobs - ref_logprobs  # (B,R)


def kl_k2(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k2 = ½·(log π − log π_ref)² per sampled token: ≥ 0 and low-variance, but biased."""
    return 0.5 * (logprobs - ref_logprobs).square()  # (B,R)


def kl_k3(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """k3 = (r − 1) − log r with r = exp(log π_ref − log π) per sampled token: unbiased and ≥ 0."""
    log_r = ref_logprobs - logprobs  # (B,R)
    return torch.expm1(log_r) - log_r  # (B,R)


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "k1": kl_k1,
    "k2": kl_k2,
    "k3": kl_k3,
}
"""Per-token KL estimators by name: ``fn(logprobs (B,R), ref_logprobs (B,R)) -> (B,R)``."""


def per_token_kl(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    response_mask: torch.Tensor | None = None,
    estimator: str = "k1",
) -> torch.Tensor:
    """The named estimator of KL(π‖π_ref) at every response token, 0 at padding.

    Args:
        logprobs: ``(B,R)`` policy log-probabilities of the sampled response tokens.
        ref_logprobs: ``(B,R)`` reference log-probabilities of the same tokens.
        response_mask: ``(B,R)`` True at real tokens; padded entries of the result are exactly 0 (even
            where the inputs hold nan/inf there). None keeps every entry.
        estimator: a key of ``KL_ESTIMATORS`` (``"k1"``, ``"k2"`` or ``"k3"``).

    Returns:
        ``(B,R)`` per-token KL estimates. Summing over R gives the per-sequence estimate.

    Raises:
        ConfigError: unknown ``estimator`` name.
    """
    if estimator not in KL_ESTIMATORS:
        raise ConfigError(f"unknown KL estimator {estimator!r}: choose one of {', '.join(sorted(KL_ESTIMATORS))}")
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(f"logprobs {tuple(logprobs.shape)} and ref_logprobs {tuple(ref_logprobs.shape)} disagree")
    kl = KL_ESTIMATORS[estimator](logprobs, ref_logprobs)  # (B,R)
    if response_mask is None:
        return kl
    return torch.where(response_mask.bool(), kl, torch.zeros((), dtype=kl.dtype, device=kl.device))  # (B,R)


class KLController(Protocol):
    """What the PPO trainer needs from a KL controller."""

    value: float

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> float: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class FixedKLController:
    """A constant β: ``update`` never changes ``value``."""

    def __init__(self, kl_coef: float) -> None:
        if not (math.isfinite(kl_coef) and kl_coef >= 0):
            raise ValueError(f"kl_coef must be a finite number ≥ 0, got {kl_coef}")
        self.value = float(kl_coef)

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> float:
        """Does nothing (the signature matches AdaptiveKLController); returns ``value``."""
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])

    def __repr__(self) -> str:
        return f"FixedKLController(value={self.value!r})"


class AdaptiveKLController:
    """Proportional controller of β towards a target KL: Ziegler et al. 2019, §2.2.

        e = clip(current_kl / target − 1, −0.2, 0.2)
        β ← β · (1 + e · n_steps / horizon)

    Args:
        init_kl_coef: the starting β (> 0; β stays 0 forever if it starts at 0).
        target: the per-sequence KL (nats) the controller steers towards (> 0).
        horizon: how many samples it takes β to move by a factor of about e^0.2 when the error stays
            clipped (> 0); Ziegler et al. use 10000.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float) -> None:
        if not (math.isfinite(init_kl_coef) and init_kl_coef > 0):
            raise ValueError(f"init_kl_coef must be a finite number > 0, got {init_kl_coef}")
        if not (math.isfinite(target) and target > 0):
            raise ValueError(f"target (KL) must be a finite number > 0, got {target}")
        if not (math.isfinite(horizon) and horizon > 0):
            raise ValueError(f"horizon must be a finite number > 0, got {horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> float:
        """Move β after a rollout of ``n_steps`` samples whose mean per-sequence KL was ``current_kl``.

        Returns the new ``value``. Raises TrainingError when ``current_kl`` is nan/inf (β would stay
        poisoned for the rest of the run), ValueError when ``n_steps`` is negative or so large
        (≥ 5·horizon) that β could become ≤ 0.
        """
        kl = float(current_kl)
        if not math.isfinite(kl):
            raise TrainingError(f"KL controller: current KL is {kl} (policy diverged from the reference?)")
        if n_steps < 0 or n_steps * _MAX_PROPORTIONAL_ERROR >= self.horizon:
            raise ValueError(f"n_steps must be in [0, 5·horizon = {5 * self.horizon:g}), got {n_steps}")
        proportional_error = min(max(kl / self.target - 1.0, -_MAX_PROPORTIONAL_ERROR), _MAX_PROPORTIONAL_ERROR)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """β only: target and horizon come from the (possibly edited) config of the resumed run."""
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])

    def __repr__(self) -> str:
        return f"AdaptiveKLController(value={self.value!r}, target={self.target!r}, horizon={self.horizon!r})"


class KLHealth(NamedTuple):
    """The verdict of ``kl_health`` on a mean per-sequence KL."""

    verdict: str
    """One of: negative, barely-changed, moving, healthy, high, drifting, catastrophic."""
    message: str
    """A one-line explanation for the console and the logs."""
    warn: bool
    """True when a user should look (negative, drifting, catastrophic)."""
    stop: bool
    """True when the run should stop (catastrophic, or not a number)."""


def kl_health(kl: float) -> KLHealth:
    """The rule of thumb for a mean per-sequence KL(π‖π_ref) in nats (see the module docstring).

    Bands: < −1 negative; [−1, 1) barely-changed; [1, 2) moving; [2, 6] healthy; (6, 10] high;
    (10, 20] drifting (warn); > 20 or not finite: catastrophic (stop).
    """
    kl = float(kl)
    if not math.isfinite(kl):
        return KLHealth("catastrophic", f"KL is {kl}: the policy or the reference produced non-finite logprobs",
                        True, True)
    if kl > 20.0:
        return KLHealth("catastrophic", f"KL {kl:.2f} nats (> 20): catastrophic drift from the reference", True, True)
    if kl > 10.0:
        return KLHealth("drifting", f"KL {kl:.2f} nats (> 10): drifting from the reference; the proxy reward is "
                        "likely being hacked (raise kl_coef or lower the learning rate)", True, False)
    if kl > 6.0:
        return KLHealth("high", f"KL {kl:.2f} nats (6–10): high; watch the held-out gold score", False, False)
    if kl >= 2.0:
        return KLHealth("healthy", f"KL {kl:.2f} nats (2–6): healthy", False, False)
    if kl >= 1.0:
        return KLHealth("moving", f"KL {kl:.2f} nats (1–2): the policy is starting to move", False, False)
    if kl >= -1.0:
        return KLHealth("barely-changed", f"KL {kl:.2f} nats (< 1): the policy has barely changed", False, False)
    return KLHealth("negative", f"KL {kl:.2f} nats (< −1): sampler and trainer logprobs disagree (temperature? "
                    "padding? dropout?)", True, False)
