"""`tether experiment NAME`: the KL-tether experiments (kl-sweep, length-hack, multi-objective,
overoptimization, rm-pooling); a thin call into `tether.experiments.run_experiment`."""

from __future__ import annotations

from pathlib import Path

import typer


def experiment_cmd(ctx: typer.Context,
                   name: str = typer.Argument(..., help="kl-sweep | length-hack | multi-objective | overoptimization "
                                                        "| rm-pooling"),
                   config: Path | None = typer.Option(None, help="YAML config (configs/experiments/NAME.yaml)."),
                   show_config: bool = typer.Option(False, "--show-config", help="Print the config fields and exit.")
                   ) -> None:
    """Run one experiment on a finished demo run: plots (PNG), result.json and section.md in its output_dir.
    Override any config field with --field VALUE."""
    from tether.experiments import EXPERIMENTS, experiment_config, run_experiment
    from tether.runtime.config import config_help

    if show_config:
        experiment_config(name)  # unknown names fail here with the list of experiments
        for field, type_name, default, doc in config_help(EXPERIMENTS[name][0]):
            typer.echo(f"  {field} ({type_name}, default {default!r}): {doc}")
        return
    result = run_experiment(name, str(config) if config else None, list(ctx.args), log=typer.echo)
    out = Path(experiment_config(name, str(config) if config else None, list(ctx.args)).output_dir)
    typer.echo(f"{name}: {result['wall_seconds']:.0f} s → {out / 'result.json'}, "
               f"{', '.join(str(out / f) for f in result['figures'])}")
