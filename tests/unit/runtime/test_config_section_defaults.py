"""A section whose default comes from the parent's default_factory keeps those defaults when a file or an
override sets only some of its fields (setting one field must not reset the others to the class defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.runtime.config import load_config


@dataclass
class Inner:
    a: int = 1
    """a."""
    b: float = 2.0
    """b."""


@dataclass
class Outer:
    inner: Inner = field(default_factory=lambda: Inner(a=10, b=20.0))
    """A section with non-class defaults."""
    plain: Inner = field(default_factory=Inner)
    """A section with the class defaults."""


def test_override_of_one_field_keeps_the_factory_defaults_of_the_others(tmp_path):
    cfg = load_config(Outer, None, ["--inner.a", "5"])
    assert (cfg.inner.a, cfg.inner.b) == (5, 20.0)  # b stays the factory's 20, not the class's 2
    assert (cfg.plain.a, cfg.plain.b) == (1, 2.0)
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  b: 3.5\n")
    cfg = load_config(Outer, path)
    assert (cfg.inner.a, cfg.inner.b) == (10, 3.5)
    assert load_config(Outer) == Outer()
