"""Experiments that show why the KL tether matters, one command each (`tether experiment NAME`).

Each experiment is a config dataclass and a `run(cfg, log) -> dict` that writes its PNG plots and returns its
result document; `run_experiment` writes that to `<output_dir>/result.json` and `section.md`. `EXPERIMENTS`
maps the CLI names to them. docs/experiments.md has the measured
results.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from tether.errors import ConfigError
from tether.experiments import kl_sweep, length_hack, multi_objective, overoptimization, rm_pooling
from tether.experiments.common import section_markdown

EXPERIMENTS = {
    "kl-sweep": (kl_sweep.KLSweepConfig, kl_sweep.run),
    "length-hack": (length_hack.LengthHackConfig, length_hack.run),
    "multi-objective": (multi_objective.MultiObjectiveConfig, multi_objective.run),
    "overoptimization": (overoptimization.OveroptimizationConfig, overoptimization.run),
    "rm-pooling": (rm_pooling.RMPoolingConfig, rm_pooling.run),
}
"""name → (config class, run function)."""


def experiment_config(name: str, config: str | None = None, overrides: list[str] | tuple = ()):
    """The experiment's config: defaults, then the YAML file, then `--field value` overrides."""
    from tether.runtime.config import load_config

    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment '{name}'; available: {', '.join(EXPERIMENTS)}")
    return load_config(EXPERIMENTS[name][0], config, list(overrides))


def run_experiment(name: str, config: str | None = None, overrides: list[str] | tuple = (), log=print) -> dict:
    """Run experiment `name`; its result (also in `<output_dir>/result.json`, with the command recorded)."""
    import time

    from tether.runtime.config import save_config

    cfg = experiment_config(name, config, overrides)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    t0 = time.perf_counter()
    result = EXPERIMENTS[name][1](cfg, log=log)
    command = " ".join(["tether experiment", name, *(["--config", str(config)] if config else []),
                        *(shlex.quote(o) for o in overrides)])
    result |= {"command": command, "wall_seconds": round(time.perf_counter() - t0, 1)}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    (out / "section.md").write_text(section_markdown(result))
    return result
