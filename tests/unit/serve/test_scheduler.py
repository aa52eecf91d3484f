"""The batching queue with a fake model: which jobs share a batch, limits, cancellation, errors.

A gate holds the worker inside its first batch while more jobs queue up, so what ends up batched together
is decided by the queue's contents, never by timing.
"""

from __future__ import annotations

import threading

import pytest

from tether.serve.scheduler import BatchScheduler, Job, QueueFull


class GatedRunner:
    """run_batch that records each batch's payloads and blocks the first batch until `release()`."""

    def __init__(self):
        self.batches: list[list] = []
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __call__(self, jobs: list[Job]) -> None:
        self.batches.append([j.payload for j in jobs])
        self.entered.set()
        self.gate.wait(30)
        for j in jobs:
            j.future.set_result(f"done:{j.payload}")

    def release(self) -> None:
        self.gate.set()


@pytest.fixture
def runner():
    return GatedRunner()


def start(runner, **kwargs) -> BatchScheduler:
    scheduler = BatchScheduler(runner, **{"max_batch_size": 8, "wait_s": 0.0, "max_queue": 64, **kwargs})
    scheduler.start()
    return scheduler


def hold_worker(scheduler: BatchScheduler, runner: GatedRunner) -> Job:
    """Submit a blocker job and wait until the worker is inside run_batch with it."""
    blocker = Job("blocker", 1, "blocker")
    scheduler.submit(blocker)
    assert runner.entered.wait(30)
    return blocker


def test_queued_compatible_jobs_run_as_one_batch_in_order(runner):
    scheduler = start(runner)
    try:
        blocker = hold_worker(scheduler, runner)
        jobs = [Job("a", 1, f"a{i}") for i in range(5)]
        for job in jobs:
            scheduler.submit(job)
        assert scheduler.depth == 5
        runner.release()
        assert [job.future.result(30) for job in jobs] == [f"done:a{i}" for i in range(5)]
        assert blocker.future.result(30) == "done:blocker"
        assert runner.batches == [["blocker"], ["a0", "a1", "a2", "a3", "a4"]]
    finally:
        scheduler.stop()


def test_different_keys_never_share_a_batch_and_keep_their_order(runner):
    scheduler = start(runner)
    try:
        hold_worker(scheduler, runner)
        jobs = [Job("a", 1, "a0"), Job("b", 1, "b0"), Job("a", 1, "a1"), Job("b", 1, "b1")]
        for job in jobs:
            scheduler.submit(job)
        runner.release()
        for job in jobs:
            job.future.result(30)
        assert runner.batches[1:] == [["a0", "a1"], ["b0", "b1"]]
    finally:
        scheduler.stop()


def test_batch_size_counts_sequences_and_a_large_job_still_runs(runner):
    scheduler = start(runner, max_batch_size=4)
    try:
        hold_worker(scheduler, runner)
        jobs = [Job("a", 3, "three"), Job("a", 2, "two"), Job("a", 1, "one"), Job("a", 6, "six")]
        for job in jobs:
            scheduler.submit(job)
        runner.release()
        for job in jobs:
            job.future.result(30)
        # 3 + 1 fit in 4 ("two" does not fit beside "three"); "two" next; "six" alone although larger than 4
        assert runner.batches[1:] == [["three", "one"], ["two"], ["six"]]
    finally:
        scheduler.stop()


def test_key_none_runs_alone(runner):
    scheduler = start(runner)
    try:
        hold_worker(scheduler, runner)
        jobs = [Job(None, 1, "seeded0"), Job(None, 1, "seeded1"), Job("a", 1, "a0")]
        for job in jobs:
            scheduler.submit(job)
        runner.release()
        for job in jobs:
            job.future.result(30)
        assert runner.batches[1:] == [["seeded0"], ["seeded1"], ["a0"]]
    finally:
        scheduler.stop()


def test_cancelled_job_is_dropped_without_running(runner):
    scheduler = start(runner)
    try:
        hold_worker(scheduler, runner)
        gone, kept = Job("a", 1, "gone"), Job("a", 1, "kept")
        scheduler.submit(gone)
        scheduler.submit(kept)
        assert gone.future.cancel()
        runner.release()
        assert kept.future.result(30) == "done:kept"
        assert runner.batches[1:] == [["kept"]]
    finally:
        scheduler.stop()


def test_full_queue_refuses(runner):
    scheduler = start(runner, max_queue=2)
    try:
        hold_worker(scheduler, runner)
        scheduler.submit(Job("a", 1, "q1"))
        scheduler.submit(Job("a", 1, "q2"))
        with pytest.raises(QueueFull, match="limit is 2"):
            scheduler.submit(Job("a", 1, "q3"))
        runner.release()
    finally:
        scheduler.stop()


def test_run_batch_error_reaches_every_caller_and_the_worker_survives():
    calls = []

    def run(jobs):
        calls.append(len(jobs))
        if len(calls) == 1:
            raise ValueError("model exploded")
        for j in jobs:
            j.future.set_result("ok")

    scheduler = BatchScheduler(run, max_batch_size=8, wait_s=0.0)
    scheduler.start()
    try:
        first = Job(None, 1, "x")
        scheduler.submit(first)
        with pytest.raises(ValueError, match="model exploded"):
            first.future.result(30)
        second = Job(None, 1, "y")
        scheduler.submit(second)
        assert second.future.result(30) == "ok"
    finally:
        scheduler.stop()


def test_stop_fails_queued_jobs(runner):
    scheduler = start(runner)
    hold_worker(scheduler, runner)
    queued = Job("a", 1, "queued")
    scheduler.submit(queued)
    runner.release()  # let the worker finish its batch; queued may run or be failed by stop, never hang
    scheduler.stop()
    assert queued.future.done()
    with pytest.raises(RuntimeError, match="stopped"):
        scheduler.submit(Job("a", 1, "late"))


def test_on_batch_reports_jobs_and_sequences(runner):
    records = []
    scheduler = BatchScheduler(runner, max_batch_size=8, wait_s=0.0, on_batch=records.append)
    scheduler.start()
    try:
        hold_worker(scheduler, runner)
        jobs = [Job("a", 2, "a0"), Job("a", 3, "a1")]
        for job in jobs:
            scheduler.submit(job)
        runner.release()
        for job in jobs:
            job.future.result(30)
        scheduler.stop()
        assert [(r.jobs, r.sequences, r.key) for r in records] == [(1, 1, "blocker"), (2, 5, "a")]
    finally:
        scheduler.stop()
