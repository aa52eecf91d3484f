"""`tether report RUN_DIR`: report.json + a self-contained report.html from a run's files."""

from __future__ import annotations

from pathlib import Path

import typer


def report_cmd(run_dir: Path = typer.Argument(..., help="Run directory, e.g. runs/demo."),
               out: Path | None = typer.Option(None, help="Write report.json/report.html here (default: RUN_DIR).")
               ) -> None:
    """Build the run report: policy table, PPO curves, RM calibration, KL health, samples side by side."""
    from tether.eval.report import write_report

    json_path, html_path = write_report(run_dir, out)
    typer.echo(f"wrote {html_path} and {json_path}")
