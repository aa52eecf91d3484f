"""Atomic checkpoints with model, optimizer, scheduler, RNG states and the step; resume from the latest.

A checkpoint is written to `step-N.tmp/` and renamed to `step-N/` only when complete, so a run
killed mid-save never leaves a checkpoint that looks valid. `trainer_state.json` inside it is
written last and holds the step and whatever the stage needs (e.g. the KL coefficient).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

STATE_FILE = "trainer_state.json"


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [d for d in root.iterdir() if d.is_dir() and d.name.startswith("step-") and not d.name.endswith(".tmp")
            and (d / STATE_FILE).is_file()]
    return sorted(done, key=lambda d: int(d.name.split("-")[1]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    dirs = checkpoint_dirs(run_dir)
    return dirs[-1] if dirs else None


def save_checkpoint(accelerator, run_dir: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Save accelerator state (model/optimizer/scheduler/RNG) + `state` atomically; keep the last `keep`."""
    root = Path(run_dir) / "checkpoints"
    final = root / f"step-{step}"
    tmp = root / f"step-{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in checkpoint_dirs(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, checkpoint: Path) -> dict[str, Any]:
    """Restore accelerator state from `checkpoint`; return its trainer_state (with `step`)."""
    accelerator.load_state(str(checkpoint))
    return json.loads((Path(checkpoint) / STATE_FILE).read_text())
