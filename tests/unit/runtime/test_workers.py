"""`runtime.workers.run_jobs`: jobs run in spawned worker processes, side by side, each once its needs have
finished, with the thread count it was given and its output in its own log; a failing job stops the run."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import pytest

from tether.errors import ConfigError
from tether.runtime.workers import Job, last_line, run_jobs


def _record(out: Path, sleep: float, wait_for: Path | None = None) -> int:
    """In a worker: mark its start (`<out>.started`), print a line, wait until `wait_for` exists (another job has
    started: the two ran side by side) or sleep, note when it started and ended; return its intra-op threads."""
    import torch

    start = time.time()
    out.with_suffix(".started").touch()
    print(f"hello from {out.name}", flush=True)
    deadline = start + 120
    while wait_for is not None and not wait_for.exists():
        if time.time() > deadline:
            raise TimeoutError(f"{wait_for} never appeared: the jobs did not run side by side")
        time.sleep(0.05)
    time.sleep(sleep)
    out.write_text(json.dumps({"start": start, "end": time.time()}))
    return torch.get_num_threads()


def _fail(message: str) -> None:
    raise ConfigError(message)


def test_jobs_run_side_by_side_once_their_needs_have_finished(tmp_path):
    def job(key, needs=(), wait_for=None):
        return Job(key, partial(_record, tmp_path / key, 0.0, wait_for), tmp_path / "logs" / f"{key}.log", needs)

    lines: list[str] = []
    # a runs until d has started; d needs b: so b and d each start while a is still running, on the other worker.
    ran = run_jobs([job("a", wait_for=tmp_path / "d.started"), job("b"), job("c", needs=("a", "b")),
                    job("d", needs=("b",))], workers=2, threads=1, log=lines.append)
    when = {k: json.loads((tmp_path / k).read_text()) for k in "abcd"}
    assert when["d"]["start"] >= when["b"]["end"]  # after its need
    assert when["c"]["start"] >= max(when["a"]["end"], when["b"]["end"])  # after both of its needs
    assert set(ran) == set("abcd") and all(r.value == 1 for r in ran.values())  # the threads it was given
    assert (tmp_path / "logs" / "a.log").read_text() == "hello from a\n"
    finished = [line.split(":")[0].strip() for line in lines]  # one line as each finishes
    assert finished[0] == "b" and finished[-1] == "c" and sorted(finished) == list("abcd")


def test_a_job_with_nothing_to_do_is_skipped_and_its_dependents_run(tmp_path):
    asked = []

    def nothing_to_do() -> bool:
        asked.append("a")
        return False

    jobs = [Job("a", partial(_fail, "must not run"), tmp_path / "a.log", before=nothing_to_do),
            Job("b", partial(_record, tmp_path / "b", 0.0), tmp_path / "b.log", needs=("a",))]
    ran = run_jobs(jobs, workers=2, threads=1, log=lambda _: None)
    assert asked == ["a"] and set(ran) == {"b"} and not (tmp_path / "a.log").exists()


def test_no_worker_is_started_when_no_job_has_anything_to_do(tmp_path, monkeypatch):
    import multiprocessing

    def no_pool(*args, **kwargs):
        raise AssertionError("a worker pool was started")

    monkeypatch.setattr(multiprocessing, "get_context", no_pool)
    jobs = [Job(k, partial(_fail, "must not run"), tmp_path / f"{k}.log", needs=n, before=lambda: False)
            for k, n in (("a", ()), ("b", ("a",)))]
    assert run_jobs(jobs, workers=2, threads=1, log=lambda _: None) == {}


def test_a_failing_job_raises_its_error_here_with_its_traceback_in_its_log(tmp_path):
    lines: list[str] = []
    jobs = [Job("bad", partial(_fail, "rm.yaml: train.max_steps must be >= 1"), tmp_path / "bad.log"),
            Job("after", partial(_record, tmp_path / "after", 0.0), tmp_path / "after.log", needs=("bad",))]
    with pytest.raises(ConfigError, match=r"train\.max_steps must be >= 1"):
        run_jobs(jobs, workers=2, threads=1, log=lines.append)
    assert lines == [f"      bad failed; its log: {tmp_path / 'bad.log'}"]
    assert "Traceback" in (tmp_path / "bad.log").read_text() and not (tmp_path / "after").exists()


def test_jobs_that_cannot_start_are_refused(tmp_path):
    task = partial(_record, tmp_path / "x", 0.0)
    with pytest.raises(ValueError, match="unknown jobs: \\['z'\\]"):
        run_jobs([Job("a", task, tmp_path / "a.log", needs=("z",))], workers=1, threads=1)
    with pytest.raises(ValueError, match="wait on each other"):
        run_jobs([Job("a", task, tmp_path / "a.log", needs=("b",)), Job("b", task, tmp_path / "b.log", needs=("a",))],
                 workers=1, threads=1)
    with pytest.raises(ValueError, match="repeat"):
        run_jobs([Job("a", task, tmp_path / "a.log"), Job("a", task, tmp_path / "b.log")], workers=1, threads=1)


def test_last_line_of_a_log_reads_through_progress_bar_updates(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("loading\nstep 1/12 ETA 3:00\rstep 2/12 ETA 2:45\r\n\n")
    assert last_line(log) == "step 2/12 ETA 2:45"
    assert last_line(tmp_path / "missing.log") == ""
    log.write_text("x" * 300)
    assert last_line(log, width=10) == "x" * 10
