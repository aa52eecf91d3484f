"""`tether report RUN_DIR`: report.json + a self-contained report.html from a run's files."""

from __future__ import annotations

from pathlib import Path

import typer

from tether.errors import TetherError


def report_cmd(run_dir: Path = typer.Argument(..., help="Run directory, e.g. runs/demo."),
               out: Path | None = typer.Option(None, help="Write report.json/report.html here (default: RUN_DIR).")
               ) -> None:
    """Build the run report: policy table, PPO curves, RM calibration, KL health, samples side by side."""
    if not run_dir.is_dir():  # before the heavy imports: a typo answers at once
        raise TetherError(f"{run_dir}: no such run directory")
    from tether.eval.report import write_report

    json_path, html_path = write_report(run_dir, out)
    typer.echo(f"wrote {html_path} and {json_path}")
