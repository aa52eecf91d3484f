"""What a finished output was made from, so that reusing it is safe.

A multi-stage run (the demo pipeline) reuses a stage's output when it is complete. Complete is not enough:
after the reward model is retrained, a PPO run or a best-of-N selection made with the old one is stale, and
reusing it silently reports numbers the current inputs never produced. `StageRecord` writes, next to an
output, the resolved config of the stage and a fingerprint of every file or model it read; `StageRecord.check`
compares them with the current ones before the output is reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, is_dataclass
from pathlib import Path


def weights_fingerprint(spec: str) -> list:
    """What identifies a model's weights: for a local dir, (name, size, mtime) of its *.safetensors files;
    otherwise (an embedded or hub name) the name itself."""
    path = Path(spec)
    if not path.is_dir():
        return [spec]
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(path.glob("*.safetensors"))]


def input_fingerprint(spec: str | Path) -> list | str:
    """A file: the sha256 of its bytes (data files are small; a copy or a touch does not change it). Anything
    else (a model dir, an embedded or hub name, a path not there yet): `weights_fingerprint`."""
    path = Path(spec)
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return weights_fingerprint(str(spec))


def stage_inputs(config=None, root: str | Path | None = None, **inputs: str | Path) -> dict:
    """The record of one stage: its resolved config (a dataclass or a plain dict) and the fingerprints of the
    files and models it reads, by role (`rm=runs/demo/rm`). JSON-normalised, so it compares equal to itself
    read back from disk. Paths under `root` (the run dir) are written relative to it ("<run>/rm"), so a run
    moved or renamed as a whole is still recognised."""
    cfg = asdict(config) if is_dataclass(config) else config
    record = {"config": cfg, "inputs": {role: input_fingerprint(p) for role, p in sorted(inputs.items())}}
    text = json.dumps(record, default=str)
    if root is not None:  # only whole strings that are the root or start with "<root>/"
        root_json = json.dumps(str(root))
        text = text.replace(root_json, '"<run>"').replace(root_json[:-1] + "/", '"<run>/')
    return json.loads(text)


def changed_fields(old: dict, new: dict) -> list[str]:
    """Which parts of two records differ: 'config.<field>' (top-level field of the config), 'inputs.<role>',
    and the name of any other top-level entry."""
    out = []
    for part in sorted(set(old) | set(new)):
        a, b = old.get(part), new.get(part)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{part}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            out.append(part)
    return out


class StageRecord:
    """The provenance record of one output (a run dir or a single file).

    `check(record)` before reusing: "fresh" when the output is complete and was made from these inputs (or
    predates records: it is adopted, and the current record written); "stale" when it was made from other
    inputs — the output is moved aside to `<name>.stale` (one slot, replacing an older one) so the stage runs
    again from nothing, never resuming a checkpoint of the old inputs; "missing" when there is no complete
    output. `write(record)` before running the stage, so that an interrupted stage is recognised too.
    """

    def __init__(self, output: Path, done_marker: str | None = "result.json"):
        self.output = Path(output)
        self.is_dir = done_marker is not None
        self.done_marker = done_marker
        self.path = self.output / "stage_inputs.json" if self.is_dir else \
            self.output.with_name(self.output.name + ".inputs.json")
        self.stale_path = self.output.with_name(self.output.name + ".stale")
        self.changed: list[str] = []

    def done(self) -> bool:
        return (self.output / self.done_marker).is_file() if self.is_dir else self.output.is_file()

    def check(self, record: dict) -> str:
        if self.path.is_file():
            old = json.loads(self.path.read_text())
            self.changed = changed_fields(old, record)
            if self.changed:
                self._move_aside()
                return "stale"
            return "fresh" if self.done() else "missing"
        if self.done():
            self.write(record)  # made before records existed: adopted as it is
            return "adopted"
        return "missing"

    def reuse(self, record: dict, log=print) -> bool:
        """True when the output is complete and was made from `record` (`check`). Otherwise the stage is about
        to run: a stale output has been moved aside (said in the log) and `record` is written first, so an
        interrupted run is recognised on the next try."""
        status = self.check(record)
        if status == "stale":
            log(f"      {self.output} was made from other inputs ({', '.join(self.changed)}): moved to "
                f"{self.stale_path}, running it again")
        elif status == "adopted":
            log(f"      {self.output} has no record of its inputs (made before tether kept one): reused as it is, "
                f"its current inputs recorded")
        if status in ("fresh", "adopted"):
            return True
        self.write(record)
        return False

    def write(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.is_dir:
            self.output.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(record, indent=1))

    def _move_aside(self) -> None:
        if self.stale_path.is_dir():
            shutil.rmtree(self.stale_path)
        elif self.stale_path.exists():
            self.stale_path.unlink()
        if self.output.exists():
            self.output.rename(self.stale_path)
        if not self.is_dir and self.path.is_file():
            self.path.unlink()
