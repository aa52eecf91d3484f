"""The KL health rule of thumb: < 1 barely changed, 2–6 healthy, > 10 warn, > 20 stop."""

from __future__ import annotations

import pytest

from tether.rl.kl import kl_health


@pytest.mark.parametrize("kl, verdict, warn, stop", [
    (-3.0, "negative", True, False),  # a clearly negative k1 estimate: logprob mismatch, not movement
    (-0.2, "barely-changed", False, False),  # small negative: estimator noise
    (0.0, "barely-changed", False, False),
    (0.999, "barely-changed", False, False),
    (1.0, "moving", False, False),
    (2.0, "healthy", False, False),
    (4.0, "healthy", False, False),
    (6.0, "healthy", False, False),
    (6.5, "high", False, False),
    (10.0, "high", False, False),
    (10.5, "drifting", True, False),
    (20.0, "drifting", True, False),
    (20.5, "catastrophic", True, True),
    (float("nan"), "catastrophic", True, True),
    (float("inf"), "catastrophic", True, True),
])
def test_kl_health_bands(kl, verdict, warn, stop):
    health = kl_health(kl)
    assert (health.verdict, health.warn, health.stop) == (verdict, warn, stop)
    assert health.message and "\n" not in health.message


def test_messages_name_the_kl():
    assert "3.20 nats" in kl_health(3.2).message
    assert "> 20" in kl_health(25.0).message
