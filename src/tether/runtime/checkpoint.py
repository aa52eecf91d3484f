"""Atomic checkpoints with model, optimizer, scheduler, RNG states and the step; resume from the latest.

A checkpoint is written to `step-N.tmp/` and renamed to `step-N/` only when complete, so a run
killed mid-save never leaves a checkpoint that looks valid. `trainer_state.json` inside it is
written last and holds the step and whatever the stage needs (e.g. the KL coefficient).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tether.errors import FULL_DISK_ERRNOS, OutputError

STATE_FILE = "trainer_state.json"
NEARLY_FULL_BYTES = 64 * 2**20
"""Free space under which a failed write is blamed on the disk: torch's writer reports a full disk only as
"unexpected pos N vs M", with no errno, so a failed save is read as out-of-space when the disk is (nearly) full."""


def _free_bytes(directory: Path) -> int | None:
    for d in [Path(directory), *Path(directory).parents]:
        if d.exists():
            return shutil.disk_usage(d).free
    return None


def out_of_space(exc: BaseException, directory: Path) -> bool:
    """True when `exc`, raised while writing under `directory`, comes from a full disk or quota: an OSError with
    ENOSPC / EDQUOT anywhere in its chain, safetensors' "No space left on device (os error 28)", or any failed
    write while the disk has under `NEARLY_FULL_BYTES` free."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in FULL_DISK_ERRNOS:
            return True
        if "no space left on device" in str(seen).lower() or "disk quota exceeded" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    free = _free_bytes(directory)
    return free is not None and free < NEARLY_FULL_BYTES


@contextmanager
def disk_guard(directory: Path, what: str, cleanup: Path | None = None) -> Iterator[None]:
    """Turn a full-disk failure while writing `what` under `directory` into a one-line `OutputError`, removing the
    partial `cleanup` file or dir first; any other error passes through unchanged."""
    try:
        yield
    except Exception as exc:
        if not out_of_space(exc, directory):
            raise
        free = _free_bytes(directory)
        if cleanup is not None and cleanup.is_dir():
            shutil.rmtree(cleanup, ignore_errors=True)
        elif cleanup is not None:
            cleanup.unlink(missing_ok=True)
        left = f"{free / 2**20:.0f} MiB free" if free is not None else "free space unknown"
        raise OutputError(f"{directory}: no space left on the device while writing {what} ({left} when it failed); "
                          f"free some space or set output_dir to another disk") from exc


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
    with disk_guard(root, f"the step-{step} checkpoint (earlier checkpoints are kept)", cleanup=tmp):
        accelerator.save_state(str(tmp), safe_serialization=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=2))
    if accelerator.is_main_process:
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
