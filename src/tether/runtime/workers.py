"""Run jobs that read each other's outputs in a few worker processes at once, each process with its own share of
the CPU's threads: how the demo pipeline trains DPO beside the reward model and PPO, and evaluates one policy
while another trains.

Why processes and not threads: on the 2-core CPU two processes with one intra-op thread each ran at the
speed of one such process alone (decode 12.6-12.7 ms per token, a training step 8.9-9.1 s, against 13.5 ms and
8.8 s alone), while one process with both threads got 9.0 ms and 5.1 s: two jobs side by side do 1.42× the
decode work and 1.13× the training work of one job on both threads (a decode job beside a training job gains
less); the demo's stages after SFT ran 1.19× faster in two workers. Python threads in one process share the
interpreter: two decode loops that way ran at 0.26-0.38× of one (docs/architecture.md).

A job's `task` runs in a spawned worker (so it must pickle: a `functools.partial` of a module-level function),
with its stdout and stderr (progress bars included) appended to its `log_file`. `before` runs in this process
when the job's needs have finished, and says whether it has anything to do (a finished output is reused).
The thread count a job runs with is fixed by `threads`, not by what else happens to be running, so a job's
numbers do not depend on the schedule.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Job:
    key: str
    """Unique name; other jobs' `needs` refer to it."""
    task: Callable[[], Any]
    """Run in a worker: picklable, returns something picklable (small: it comes back through a pipe)."""
    log_file: Path
    """The worker's stdout and stderr while it runs the task (appended)."""
    needs: tuple[str, ...] = ()
    """Keys of the jobs whose outputs it reads: it starts only once they have finished."""
    before: Callable[[], bool] | None = None
    """Called here once the needs have finished; False: nothing to do (the job counts as finished at once)."""


@dataclass
class JobResult:
    seconds: float
    """Wall time of the task in its worker."""
    value: Any


def cpu_threads() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_jobs(jobs: list[Job], workers: int, threads: int, log=print, heartbeat_s: float = 60.0) -> dict[str, JobResult]:
    """Run `jobs` in `workers` spawned processes with `threads` intra-op threads each. A free worker takes the
    first job in list order whose needs have finished (list the critical path first). Every `heartbeat_s` without
    a job finishing, one line says what runs and the last line of its log (a progress bar's ETA). A failing job
    stops the others (its exception is raised here, after a line naming its log). Returns the jobs that ran."""
    keys = [j.key for j in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"job keys repeat: {keys}")
    unknown = sorted({n for j in jobs for n in j.needs} - set(keys))
    if unknown:
        raise ValueError(f"jobs need unknown jobs: {unknown}")
    pending, finished, ran = list(jobs), set(), {}
    events: queue.Queue = queue.Queue()
    pools: list = []  # the worker pool, started with the first job that has something to do

    def pool():
        if not pools:
            pools.append(multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker,
                                                                    initargs=(threads,)))
        return pools[0]

    running: dict[str, Job] = {}
    try:
        while pending or running:
            _start_ready(pending, finished, running, workers, pool, events)
            if not running:
                if pending:
                    raise ValueError(f"jobs wait on each other: {[j.key for j in pending]}")
                break
            try:
                key, outcome, error = events.get(timeout=heartbeat_s)
            except queue.Empty:
                log("      running: " + "; ".join(f"{k}: {last_line(j.log_file)}" for k, j in running.items()))
                continue
            job = running.pop(key)
            if error is not None:
                log(f"      {key} failed; its log: {job.log_file}")
                raise error
            finished.add(key)
            ran[key] = JobResult(*outcome)
            log(f"      {key}: done in {outcome[0]:.0f} s")
    except BaseException:
        for p in pools:
            p.terminate()
            p.join()
        raise
    for p in pools:
        p.close()
        p.join()
    return ran


def _start_ready(pending: list[Job], finished: set, running: dict, workers: int, pool: Callable,
                 events: queue.Queue) -> None:
    """Hand ready jobs to free workers, in list order; a job with nothing to do finishes on the spot (and may
    make others ready)."""
    progressed = True
    while progressed and len(running) < workers:
        progressed = False
        for job in pending:
            if all(n in finished for n in job.needs):
                pending.remove(job)
                progressed = True
                if job.before is not None and not job.before():
                    finished.add(job.key)
                else:
                    job.log_file.parent.mkdir(parents=True, exist_ok=True)
                    running[job.key] = job
                    pool().apply_async(_run_task, (job.task, str(job.log_file)),
                                     callback=lambda out, k=job.key: events.put((k, out, None)),
                                     error_callback=lambda err, k=job.key: events.put((k, None, err)))
                break


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_task(task: Callable[[], Any], log_file: str) -> tuple[float, Any]:
    """In a worker: `task()` with fds 1 and 2 sent to `log_file`; (seconds, its value). A failure's traceback
    goes to the log before the exception travels back."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_file, "a", buffering=1) as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            t0 = time.perf_counter()
            value = task()
            return time.perf_counter() - t0, value
        except BaseException:
            traceback.print_exc()
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)


def last_line(path: Path, width: int = 100) -> str:
    """The last non-blank line of a log, where a progress bar's carriage returns also end a line; '' if none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [x.strip() for x in tail.replace("\r", "\n").split("\n") if x.strip()]
    return lines[-1][:width] if lines else ""
