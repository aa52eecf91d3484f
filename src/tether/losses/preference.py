"""Direct preference losses (DPO, IPO, KTO, ORPO, SimPO) on per-sequence log-probabilities, and their registry.

Every loss here is a pure function of sequence log-probabilities — ``(B,)`` float tensors, one number per
response: log π(y | x) summed over the response tokens, or its per-token mean where the loss is defined
on length-normalised log-probabilities (``LossSpec.length_normalised``). No model, tokenizer or batch
layout appears here; the trainer computes the log-probabilities and the registry tells it which ones
each loss wants.

Notation (as in the papers): π_c, π_r are the policy's log-probabilities of the chosen (preferred) and
rejected responses, ref_c, ref_r the frozen reference model's, β the loss's temperature / strength.
``−log σ(x)`` is always computed as ``-logsigmoid(x)`` (= softplus(−x)), exact and finite for any finite
``x``. Reference log-probabilities are treated as constants (detached).

Why ``num_pairs`` (``num_examples`` for KTO): as in ``losses/sft.py`` and ``losses/reward.py``, each loss is
the sum over this batch's pairs divided by ``num_pairs``; the caller passes the pair count of the whole
global batch, so the summed microbatch (or per-process) losses equal the full-batch mean however the
batch is split. The default is this batch's size ``B`` (an empty batch gives a loss of 0).

Stats (all detached, means over this batch): ``loss/<name>`` (the loss), and for the paired losses the
implicit rewards ``dpo/chosen_reward`` and ``dpo/rejected_reward`` (β·(π − ref) for DPO and IPO, as
in TRL; β·(mean log-prob) for the reference-free ORPO and SimPO), ``dpo/margin`` (mean chosen − rejected
reward) and ``dpo/accuracy`` (fraction of pairs whose chosen reward is higher; ties count 0.5). KTO,
which has no pairs, reports ``kto/*`` instead; ORPO adds ``orpo/log_odds_ratio`` and ``orpo/nll``.

The registry ``PREFERENCE_LOSSES`` maps a name to a ``LossSpec``: the trainer looks a loss up by name and
reads from the spec which inputs to compute (reference or not, summed or mean log-probabilities, pairs
or unpaired examples) — no branching on names. Call conventions by ``data`` and ``needs_reference``:

    pairs, reference:     fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=..., num_pairs=...)
    pairs, no reference:  fn(policy_chosen, policy_rejected, beta=..., num_pairs=...)
    unpaired (KTO):       fn(policy_logps, ref_logps, labels, kl_estimate, beta=..., num_examples=...)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "PREFERENCE_LOSSES",
    "LossSpec",
    "dpo",
    "ipo",
    "kto",
    "kto_kl_estimate",
    "orpo",
    "simpo",
]

Stats = dict[str, torch.Tensor]
_LOG_HALF = -math.log(2.0)


def _check_1d(**tensors: torch.Tensor) -> int:
    """Every tensor must be ``(B,)`` with the same ``B``; returns ``B`` or raises a one-line ValueError."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    sizes = {s for s in shapes.values()}
    if len(sizes) != 1 or len(next(iter(sizes))) != 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"{listed} must all be (B,) with the same B")
    return next(iter(sizes))[0]


def _check_beta(beta: float) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")


def _check_label_smoothing(label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing <= 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5], got {label_smoothing}")


def _divisor(local: int, num: float | torch.Tensor | None) -> float | torch.Tensor:
    return max(local, 1) if num is None else num


def _smoothed_nll(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """−(1 − ε)·log σ(h) − ε·log σ(−h) per pair (ε = 0: the plain −log σ(h))."""
    nll = -F.logsigmoid(logits)  # (B,)
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * F.logsigmoid(-logits)  # (B,)
    return nll


def _pair_stats(name: str, loss: torch.Tensor, chosen_reward: torch.Tensor, rejected_reward: torch.Tensor) -> Stats:
    """The shared paired-loss stats over this batch (call under no_grad)."""
    count = max(chosen_reward.shape[0], 1)
    diff = chosen_reward - rejected_reward  # (B,)
    wins = (diff > 0).to(diff.dtype) + 0.5 * (diff == 0).to(diff.dtype)  # (B,) ties count 0.5
    return {
        f"loss/{name}": loss.detach(),
        "dpo/chosen_reward": chosen_reward.detach().sum() / count,
        "dpo/rejected_reward": rejected_reward.detach().sum() / count,
        "dpo/margin": diff.detach().sum() / count,
        "dpo/accuracy": wins.sum() / count,
    }


def dpo(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    num_pairs: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Direct Preference Optimization: Rafailov et al. 2023, "Direct Preference Optimization", eq. 7.

        h = β·[(π_c − ref_c) − (π_r − ref_r)]
        L = (1 / N) · Σ_i [ −(1 − ε)·log σ(h_i) − ε·log σ(−h_i) ]

    With ε = ``label_smoothing`` > 0 this is conservative DPO (Mitchell 2023, "A note on DPO with noisy
    preferences and relationship to IPO"): each label is taken to be flipped with probability ε. Since
    −log σ(−h) = h − log σ(h), the smoothed loss is the plain loss plus ε·mean(h). At policy == reference
    h = 0 and every pair's loss is log 2, whatever ε.

    Args:
        policy_chosen_logps: ``(B,)`` policy log π(y_c | x), summed over the response tokens.
        policy_rejected_logps: ``(B,)`` policy log π(y_r | x), summed.
        ref_chosen_logps: ``(B,)`` reference log π_ref(y_c | x), summed (constant; detached here).
        ref_rejected_logps: ``(B,)`` reference log π_ref(y_r | x), summed (constant; detached here).
        beta: β > 0, the strength of the implicit KL tether to the reference.
        label_smoothing: ε in [0, 0.5], the assumed probability that a preference label is wrong.
        num_pairs: the divisor N; default ``B``. Pass the global batch's pair count when the batch is split.

    Returns:
        ``(loss, stats)``: the scalar loss and detached stats ``loss/dpo``, ``dpo/chosen_reward`` (mean
        β·(π_c − ref_c)), ``dpo/rejected_reward`` (mean β·(π_r − ref_r)), ``dpo/margin`` (their mean
        difference, = mean h) and ``dpo/accuracy`` (chosen reward > rejected reward, ties 0.5).
    """
    n = _check_1d(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                  ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    _check_beta(beta)
    _check_label_smoothing(label_smoothing)
    chosen_logratios = policy_chosen_logps - ref_chosen_logps.detach()  # (B,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps.detach()  # (B,)
    logits = beta * (chosen_logratios - rejected_logratios)  # (B,) h
    loss = _smoothed_nll(logits, label_smoothing).sum() / _divisor(n, num_pairs)  # ()
    with torch.no_grad():
        stats = _pair_stats("dpo", loss, beta * chosen_logratios, beta * rejected_logratios)
    return loss, stats


def ipo(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    num_pairs: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Identity Preference Optimisation: Azar et al. 2023, "A General Theoretical Paradigm to Understand
    Learning from Human Preferences", eq. 17 (the sampled IPO loss; β is the paper's τ).

        h_i = (π_c − ref_c) − (π_r − ref_r)
        L = (1 / N) · Σ_i ( h_i − 1 / (2β) )²

    IPO regresses the log-ratio gap to the fixed target 1/(2β) instead of pushing it to infinity, so it
    does not overfit deterministic preferences. At policy == reference every pair's loss is (1/(2β))².

    Which log-probabilities: the function takes whatever it is given. IPO is usually applied to
    length-AVERAGED log-probabilities (per-token mean; TRL does so, and 1/(2β) is then on a per-token
    scale); tether's trainer passes mean log-probabilities for IPO (``PREFERENCE_LOSSES["ipo"]`` has
    ``length_normalised=True``). Passing summed log-probabilities gives the paper's literal formula.

    Args:
        policy_chosen_logps, policy_rejected_logps: ``(B,)`` policy log-probabilities (mean or summed,
            as the caller decides; all four inputs the same kind).
        ref_chosen_logps, ref_rejected_logps: ``(B,)`` reference log-probabilities (detached here).
        beta: β = τ > 0; larger β means a smaller target gap 1/(2β), i.e. a tighter tether.
        num_pairs: the divisor N; default ``B``. Pass the global batch's pair count when the batch is split.

    Returns:
        ``(loss, stats)``: the scalar loss and detached stats ``loss/ipo`` and the ``dpo/*`` stats with
        implicit rewards β·(π − ref), as for DPO (so ``dpo/margin`` = β·mean h).
    """
    n = _check_1d(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                  ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    _check_beta(beta)
    chosen_logratios = policy_chosen_logps - ref_chosen_logps.detach()  # (B,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps.detach()  # (B,)
    h = chosen_logratios - rejected_logratios  # (B,)
    loss = (h - 1.0 / (2.0 * beta)).square().sum() / _divisor(n, num_pairs)  # ()
    with torch.no_grad():
        stats = _pair_stats("ipo", loss, beta * chosen_logratios, beta * rejected_logratios)
    return loss, stats


def kto_kl_estimate(policy_mismatched_logps: torch.Tensor, ref_mismatched_logps: torch.Tensor) -> torch.Tensor:
    """The KTO reference point z0: Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic
    Optimization", §4 (the estimate of KL(π_θ ‖ π_ref) used in eq. 8).

        z0 = max(0, mean_j [ log π_θ(y'_j | x_j) − log π_ref(y'_j | x_j) ])      (detached)

    over MISMATCHED (prompt, completion) pairs: completion y'_j is another example's completion, e.g. the
    completions shifted by one within the batch (x_j paired with y_{j−1 mod B}), so the average estimates
    the policy's KL to the reference on completions it is not being trained on. The caller forms those
    pairs and computes their summed log-probabilities; this function only averages, clamps at 0 (a KL is
    never negative; a negative sample mean is noise) and detaches (the paper does not back-propagate
    through z0). With several processes, gather both tensors over processes before calling so every
    process uses the same z0.

    Args:
        policy_mismatched_logps: ``(M,)`` policy log-probabilities of the mismatched completions, summed.
        ref_mismatched_logps: ``(M,)`` reference log-probabilities of the same, summed.

    Returns:
        ``()`` detached scalar z0 ≥ 0 (0 for an empty batch).
    """
    m = _check_1d(policy_mismatched_logps=policy_mismatched_logps, ref_mismatched_logps=ref_mismatched_logps)
    with torch.no_grad():
        diff = policy_mismatched_logps - ref_mismatched_logps  # (M,)
        return (diff.sum() / max(m, 1)).clamp(min=0.0)  # ()


def kto(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    labels: torch.Tensor,
    kl_estimate: torch.Tensor | float,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    num_examples: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Kahneman–Tversky Optimization: Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect
    Theoretic Optimization", eq. 8. Unpaired data: each example is one completion labelled desirable or
    undesirable.

        r_i = π_i − ref_i,   z0 = max(0, kl_estimate)   (detached)
        desirable:    ℓ_i = w_d · (1 − σ(β·(r_i − z0)))
        undesirable:  ℓ_i = w_u · (1 − σ(β·(z0 − r_i)))
        L = (1 / N) · Σ_i ℓ_i

    (eq. 8 writes L = E[λ_y − v(x, y)] with v = λ_D σ(β(r − z0)) or λ_U σ(β(z0 − r)); 1 − σ(a) = σ(−a).)
    The paper suggests choosing the weights so that w_d·n_d / (w_u·n_u) lies in [1, 4/3], n_d and n_u
    being the numbers of desirable and undesirable examples. At policy == reference with z0 = 0 every
    example's loss is w/2.

    Args:
        policy_logps: ``(B,)`` policy log π(y | x), summed over the completion tokens.
        ref_logps: ``(B,)`` reference log π_ref(y | x), summed (detached here).
        labels: ``(B,)`` bool, True = desirable.
        kl_estimate: scalar KL estimate, normally ``kto_kl_estimate(...)``; clamped at 0 and detached here.
        beta: β > 0.
        desirable_weight: w_d = λ_D ≥ 0.
        undesirable_weight: w_u = λ_U ≥ 0.
        num_examples: the divisor N; default ``B``. Pass the global batch's example count when split.

    Returns:
        ``(loss, stats)``: the scalar loss and detached stats ``loss/kto``, ``kto/kl`` (z0),
        ``kto/desirable_reward`` and ``kto/undesirable_reward`` (mean β·r over the desirable / undesirable
        examples of this batch; 0 where there are none) and ``kto/desirable_fraction`` (the share of desirable
        examples). Every stat is a mean over the batch's examples, so it stays a mean when a trainer averages
        microbatches weighted by their size (a count would not).
    """
    n = _check_1d(policy_logps=policy_logps, ref_logps=ref_logps, labels=labels)
    _check_beta(beta)
    desirable = labels.bool()  # (B,)
    z0 = torch.as_tensor(kl_estimate, dtype=policy_logps.dtype, device=policy_logps.device)  # ()
    z0 = z0.detach().clamp(min=0.0)  # ()
    logratios = policy_logps - ref_logps.detach()  # (B,) r
    desirable_losses = desirable_weight * torch.sigmoid(-beta * (logratios - z0))  # (B,) w_d(1 − σ(β(r − z0)))
    undesirable_losses = undesirable_weight * torch.sigmoid(-beta * (z0 - logratios))  # (B,) w_u(1 − σ(β(z0 − r)))
    losses = torch.where(desirable, desirable_losses, undesirable_losses)  # (B,)
    loss = losses.sum() / _divisor(n, num_examples)  # ()
    with torch.no_grad():
        rewards = beta * logratios  # (B,)
        num_desirable = desirable.sum()  # ()
        num_undesirable = (~desirable).sum()  # ()
        stats = {
            "loss/kto": loss.detach(),
            "kto/kl": z0,
            "kto/desirable_reward": torch.where(desirable, rewards, 0.0).sum() / num_desirable.clamp(min=1),
            "kto/undesirable_reward": torch.where(desirable, 0.0, rewards).sum() / num_undesirable.clamp(min=1),
            "kto/desirable_fraction": num_desirable / max(n, 1),
        }
    return loss, stats


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(x)) for x ≤ 0, accurate everywhere (Mächler 2012, "Accurately Computing log(1 − exp(−|a|))").

    Near 0, exp(x) rounds to 1 and log1p(−exp(x)) loses every digit (−inf in float32 at x = −1e-8);
    log(−expm1(x)) is exact there. Far from 0 expm1 loses the digits and log1p(−exp(x)) is exact. The
    switch is at x = −log 2. Each branch gets a safe stand-in for the other branch's inputs, so neither
    produces inf/nan that would leak into the gradient through ``torch.where``. x is clamped to at most
    −(smallest normal float) so that x = 0 (p = 1, which float32 log-softmax can return) stays finite.
    """
    x = x.clamp(max=-torch.finfo(x.dtype).tiny)  # (B,)
    near_zero = x > _LOG_HALF  # (B,)
    x_near = torch.where(near_zero, x, torch.full_like(x, -0.5))  # (B,)
    x_far = torch.where(near_zero, torch.full_like(x, -1.0), x)  # (B,)
    return torch.where(near_zero, torch.log(-torch.expm1(x_near)), torch.log1p(-torch.exp(x_far)))  # (B,)


def orpo(
    policy_chosen_logps_mean: torch.Tensor,
    policy_rejected_logps_mean: torch.Tensor,
    chosen_nll: torch.Tensor | None = None,
    beta: float = 0.1,
    num_pairs: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Odds Ratio Preference Optimization: Hong et al. 2024, "ORPO: Monolithic Preference Optimization
    without Reference Model", eqs. 6–7. No reference model: the SFT loss plus an odds-ratio penalty.

        log odds(y) = logp − log(1 − exp(logp)),  logp = mean per-token log π(y | x)   (eq. 2–4)
        L_OR,i = −log σ(log odds(y_c) − log odds(y_r))                                   (eq. 7)
        L = (1 / N) · Σ_i [ NLL_c,i + β · L_OR,i ]                                      (eq. 6; β = paper's λ)

    log(1 − exp(logp)) is computed stably (see ``_log1mexp``): the naive form is −inf in float32 at
    logp = −1e-8. Identity for checking: −log σ(log(o_c / o_r)) = log(1 + o_r / o_c).

    Args:
        policy_chosen_logps_mean: ``(B,)`` mean per-token policy log-probability of the chosen response.
        policy_rejected_logps_mean: ``(B,)`` the same for the rejected response.
        chosen_nll: ``(B,)`` per-pair SFT negative log-likelihood of the chosen response. Default ``None``
            uses −``policy_chosen_logps_mean`` (the token-mean NLL per pair, as in the paper); pass your
            own to weight the SFT term differently.
        beta: β = λ ≥ 0, the weight of the odds-ratio term (paper: 0.1).
        num_pairs: the divisor N; default ``B``. Pass the global batch's pair count when the batch is split.

    Returns:
        ``(loss, stats)``: the scalar loss and detached stats ``loss/orpo``, ``orpo/nll`` (mean chosen
        NLL), ``orpo/log_odds_ratio`` (mean log odds(y_c) − log odds(y_r)), and the ``dpo/*`` stats with
        rewards β·logp_mean (as in TRL).
    """
    if chosen_nll is None:
        chosen_nll = -policy_chosen_logps_mean  # (B,)
    n = _check_1d(policy_chosen_logps_mean=policy_chosen_logps_mean,
                  policy_rejected_logps_mean=policy_rejected_logps_mean, chosen_nll=chosen_nll)
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    log_odds_chosen = policy_chosen_logps_mean - _log1mexp(policy_chosen_logps_mean)  # (B,)
    log_odds_rejected = policy_rejected_logps_mean - _log1mexp(policy_rejected_logps_mean)  # (B,)
    log_odds_ratio = log_odds_chosen - log_odds_rejected  # (B,)
    odds_ratio_loss = -F.logsigmoid(log_odds_ratio)  # (B,)
    loss = (chosen_nll + beta * odds_ratio_loss).sum() / _divisor(n, num_pairs)  # ()
    with torch.no_grad():
        count = max(n, 1)
        stats = _pair_stats("orpo", loss, beta * policy_chosen_logps_mean, beta * policy_rejected_logps_mean)
        stats["orpo/nll"] = chosen_nll.detach().sum() / count
        stats["orpo/log_odds_ratio"] = log_odds_ratio.detach().sum() / count
    return loss, stats


def simpo(
    policy_chosen_logps_mean: torch.Tensor,
    policy_rejected_logps_mean: torch.Tensor,
    beta: float = 2.0,
    gamma: float = 0.5,
    label_smoothing: float = 0.0,
    num_pairs: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Simple Preference Optimization: Meng et al. 2024, "SimPO: Simple Preference Optimization with a
    Reference-Free Reward", eq. 6. No reference model; the reward is the length-normalised log-probability.

        h_i = β·avg_c − β·avg_r − γ,   avg = mean per-token log π(y | x)
        L = (1 / N) · Σ_i [ −(1 − ε)·log σ(h_i) − ε·log σ(−h_i) ]

    ``gamma`` is the paper's γ: the target reward margin, in reward units (it is subtracted after the β
    scaling). The SimPO repository's ``gamma_beta_ratio`` is γ/β, so pass ``gamma = gamma_beta_ratio *
    beta`` (e.g. β = 2.0, ratio 0.5 → γ = 1.0); TRL's ``simpo_gamma`` is already γ. ε = ``label_smoothing``
    as in conservative DPO (0 in the paper).

    Args:
        policy_chosen_logps_mean: ``(B,)`` mean per-token policy log-probability of the chosen response.
        policy_rejected_logps_mean: ``(B,)`` the same for the rejected response.
        beta: β > 0, the reward scale (paper: 2.0–2.5).
        gamma: γ, the target margin (paper: 0.5–1.6 depending on the setting).
        label_smoothing: ε in [0, 0.5].
        num_pairs: the divisor N; default ``B``. Pass the global batch's pair count when the batch is split.

    Returns:
        ``(loss, stats)``: the scalar loss and detached stats ``loss/simpo`` and the ``dpo/*`` stats with
        rewards β·avg (``dpo/margin`` excludes γ).
    """
    n = _check_1d(policy_chosen_logps_mean=policy_chosen_logps_mean,
                  policy_rejected_logps_mean=policy_rejected_logps_mean)
    _check_beta(beta)
    _check_label_smoothing(label_smoothing)
    chosen_rewards = beta * policy_chosen_logps_mean  # (B,)
    rejected_rewards = beta * policy_rejected_logps_mean  # (B,)
    logits = chosen_rewards - rejected_rewards - gamma  # (B,) h
    loss = _smoothed_nll(logits, label_smoothing).sum() / _divisor(n, num_pairs)  # ()
    with torch.no_grad():
        stats = _pair_stats("simpo", loss, chosen_rewards, rejected_rewards)
    return loss, stats


@dataclass(frozen=True)
class LossSpec:
    """What a trainer needs to know to call a preference loss.

    Attributes:
        fn: the loss function; returns ``(loss, stats)``.
        needs_reference: whether the loss takes reference-model log-probabilities (a reference forward).
        length_normalised: whether to pass mean per-token log-probabilities instead of summed ones.
        data: ``"pairs"`` (chosen/rejected per prompt) or ``"unpaired"`` (one completion + bool label).
        description: one line for help texts and docs.
    """

    fn: Callable[..., tuple[torch.Tensor, Stats]]
    needs_reference: bool
    length_normalised: bool
    data: Literal["pairs", "unpaired"]
    description: str


PREFERENCE_LOSSES: dict[str, LossSpec] = {
    "dpo": LossSpec(
        dpo, needs_reference=True, length_normalised=False, data="pairs",
        description="DPO (Rafailov et al. 2023): −log σ of the β-scaled log-ratio gap; cDPO via label_smoothing.",
    ),
    "ipo": LossSpec(
        ipo, needs_reference=True, length_normalised=True, data="pairs",
        description="IPO (Azar et al. 2023): squared distance of the log-ratio gap to 1/(2β), on mean logprobs.",
    ),
    "kto": LossSpec(
        kto, needs_reference=True, length_normalised=False, data="unpaired",
        description="KTO (Ethayarajh et al. 2024): unpaired desirable/undesirable labels against a KL reference point.",
    ),
    "orpo": LossSpec(
        orpo, needs_reference=False, length_normalised=True, data="pairs",
        description="ORPO (Hong et al. 2024): SFT loss plus a β-weighted log-odds-ratio penalty; no reference model.",
    ),
    "simpo": LossSpec(
        simpo, needs_reference=False, length_normalised=True, data="pairs",
        description="SimPO (Meng et al. 2024): −log σ(β·avg_c − β·avg_r − γ); no reference model.",
    ),
}
"""Preference losses by name; a trainer reads the spec to know which log-probabilities to compute."""
