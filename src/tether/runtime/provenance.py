"""What a finished output was made from, so that reusing it is safe.

A multi-stage run (the demo pipeline) reuses a stage's output when it is complete. Complete is not enough:
after the reward model is retrained, a PPO run or a best-of-N selection made with the old one is stale, and
reusing it silently reports numbers the current inputs never produced. `StageRecord` writes, next to an
output, the resolved config of the stage and a fingerprint of every file or model it read; `StageRecord.check`
compares them with the current ones before the output is reused. Beside it, `save_outcome` keeps what the run
that made the output measured (its seconds, label counts), so a later run that reuses the output can report them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, is_dataclass
from pathlib import Path

HASH_CACHE = ".weights_sha256.json"
STALE_SUFFIX = ".stale"
"""A stale output is moved aside to `<name>.stale` (`StageRecord`); readers of a run dir skip such paths."""


def is_moved_aside(path: Path) -> bool:
    """True for an output a re-run moved aside as stale (`<name>.stale`): not part of the run any more."""
    return Path(path).name.endswith(STALE_SUFFIX)
"""Per model dir: each *.safetensors file's sha256 with the (size, mtime) it was computed at, so a file is
hashed once per write, not on every check."""


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def weights_fingerprint(spec: str) -> list:
    """What identifies a model's weights: for a local dir, [name, size, mtime_ns, sha256] of each of its
    *.safetensors files (`same_record` compares by content where both sides have the hash, so a copied dir with
    new mtimes is the same model); otherwise (an embedded or hub name) the name itself. Hashes are cached in the
    dir (`HASH_CACHE`, keyed by size and mtime); a read-only dir just hashes again."""
    path = Path(spec)
    if not path.is_dir():
        return [spec]
    cache_file = path / HASH_CACHE
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    out, fresh = [], {}
    for f in sorted(path.glob("*.safetensors")):
        st = f.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        hit = cache.get(f.name) if isinstance(cache, dict) else None
        digest = hit["sha256"] if isinstance(hit, dict) and hit.get("stamp") == stamp else _sha256_file(f)
        fresh[f.name] = {"stamp": stamp, "sha256": digest}
        out.append([f.name, st.st_size, st.st_mtime_ns, digest])
    if fresh != cache:
        try:
            cache_file.write_text(json.dumps(fresh))
        except OSError:
            pass
    return out


def _is_file_entry(x) -> bool:
    """A weights-fingerprint entry: [name, size, mtime_ns] (records written before hashes) or [..., sha256]."""
    return (isinstance(x, list) and len(x) in (3, 4) and isinstance(x[0], str) and x[0].endswith(".safetensors")
            and isinstance(x[1], int) and isinstance(x[2], int))


def same_record(a, b) -> bool:
    """Equality of two JSON records, except that weights-file entries are compared by (name, size, sha256) when
    both carry the hash, and by (name, size, mtime) when one predates hashes (an old record stays valid for the
    untouched file it was made from, and does not match a retrained one)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_record(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        if _is_file_entry(a) and _is_file_entry(b):
            return a[:2] == b[:2] and (a[3] == b[3] if len(a) == len(b) == 4 else a[2] == b[2])
        return len(a) == len(b) and all(same_record(x, y) for x, y in zip(a, b))
    return a == b


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


def _same_config(old, new) -> bool:
    """`same_record` for configs, except that a field the old record lacks is not a change: it was added to
    tether after the output was made, and a new field's default keeps the behaviour from before it existed."""
    if isinstance(old, dict) and isinstance(new, dict):
        return set(old) <= set(new) and all(_same_config(old[k], new[k]) for k in old)
    return same_record(old, new)


def changed_fields(old: dict, new: dict) -> list[str]:
    """Which parts of two records differ: 'config.<field>' (top-level field of the config), 'inputs.<role>',
    and the name of any other top-level entry. Config fields that only the new record has do not count
    (`_same_config`)."""
    out = []
    for part in sorted(set(old) | set(new)):
        a, b = old.get(part), new.get(part)
        same = _same_config if part == "config" else same_record
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{part}.{k}" for k in sorted(set(a) | set(b))
                    if (k in a or part != "config") and not same(a.get(k), b.get(k))]
        elif not same(a, b):
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
        self.outcome_path = self.output / "stage_outcome.json" if self.is_dir else \
            self.output.with_name(self.output.name + ".outcome.json")
        self.stale_path = self.output.with_name(self.output.name + STALE_SUFFIX)
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
            if old != record and self.done():
                self.write(record)  # same inputs, newer fingerprints (a copied dir, or hashes added): keep them
            return "fresh" if self.done() else "missing"
        if self.done():
            self.write(record)  # made before records existed: adopted as it is
            return "adopted"
        return "missing"

    def reuse(self, record: dict, log=print) -> bool:
        """True when the output is complete and was made from `record` (`check`). Otherwise the stage is about
        to run: a stale output has been moved aside (said in the log) and `record` is written first, so an
        interrupted run is recognised on the next try, and an outcome saved by an earlier making is removed."""
        status = self.check(record)
        if status == "stale":
            log(f"      {self.output} was made from other inputs ({', '.join(self.changed)}): moved to "
                f"{self.stale_path}, running it again")
        elif status == "adopted":
            log(f"      {self.output} has no record of its inputs (made before tether kept one): reused as it is, "
                f"its current inputs recorded")
        if status in ("fresh", "adopted"):
            return True
        self.outcome_path.unlink(missing_ok=True)
        self.write(record)
        return False

    def write(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.is_dir:
            self.output.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(record, indent=1))

    def save_outcome(self, outcome: dict) -> None:
        """What making the output measured (e.g. {"seconds": 413.2}), written once the output is complete."""
        self.outcome_path.parent.mkdir(parents=True, exist_ok=True)
        self.outcome_path.write_text(json.dumps(outcome, indent=1))

    def load_outcome(self) -> dict:
        """The saved outcome of the current output; {} where there is none (or it is unreadable)."""
        try:
            outcome = json.loads(self.outcome_path.read_text())
        except (OSError, ValueError):
            return {}
        return outcome if isinstance(outcome, dict) else {}

    def _move_aside(self) -> None:
        if self.stale_path.is_dir():
            shutil.rmtree(self.stale_path)
        elif self.stale_path.exists():
            self.stale_path.unlink()
        if self.output.exists():
            self.output.rename(self.stale_path)
        if not self.is_dir:
            self.path.unlink(missing_ok=True)
            self.outcome_path.unlink(missing_ok=True)
