"""Metrics sinks: `metrics.jsonl` (always) and accelerate trackers (TensorBoard by default).

Only the main process writes. On resume the jsonl is truncated to the resumed step so a replayed
step never appears twice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricsLogger:
    def __init__(self, accelerator, path: Path, resume_step: int | None = None):
        self.accelerator = accelerator
        self.path = Path(path)
        if accelerator.is_main_process:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if resume_step is None:
                self.path.write_text("")
            elif self.path.exists():
                kept = [line for line in self.path.read_text().splitlines()
                        if line.strip() and json.loads(line).get("step", 0) <= resume_step]
                self.path.write_text("".join(line + "\n" for line in kept))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if not self.accelerator.is_main_process:
            return
        clean = {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                 for k, v in metrics.items()}
        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **clean}, allow_nan=True) + "\n")
        numeric = {k: v for k, v in clean.items() if isinstance(v, float) and math.isfinite(v)}
        if self.accelerator.trackers:
            self.accelerator.log(numeric, step=step)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
