"""A batching queue: concurrent requests wait in one FIFO queue and a single worker thread runs them in batches.

Why: on a CPU (and more so on a GPU) one `generate` over 16 prompts costs far less than 16 generates
over one prompt each, so concurrent requests are served together instead of one at a time.

How the worker forms a batch:
1. Wait for the first job in the queue.
2. Collect the queued jobs that may share its batch (same `key`: same sampling temperature/top_p, or
   both scoring jobs), in arrival order, while their total `size` (sequences) fits `max_batch_size`.
   The first job always goes, even when it alone is larger (the engine splits nothing; it just runs).
3. If the batch is not full, wait up to `wait_s` for more jobs to arrive, then go. A job whose key is
   None (e.g. a seeded request, which must be reproducible whatever else is queued) goes alone, at once.
4. Jobs left out (other keys, or no room) stay queued in order for the next round.

Every job carries a `concurrent.futures.Future`. The worker claims a job with
`set_running_or_notify_cancel()`: a job whose caller gave up (timed out, cancelled) is dropped without
being run, and a running job's result is simply discarded if nobody waits for it any more. One worker
thread runs every model call, so the models never run concurrently with each other.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


class QueueFull(Exception):
    """The queue holds `max_queue` jobs already; the caller should answer 503."""


@dataclass(eq=False)
class Job:
    key: Hashable | None
    """Jobs with equal keys may share a batch; None = always run alone."""
    size: int
    """Sequences this job adds to a batch (e.g. best_of samples)."""
    payload: Any
    future: Future = field(default_factory=Future)


@dataclass
class BatchRecord:
    """What the worker ran: for metrics and tests (how many requests were served together)."""

    jobs: int
    sequences: int
    key: Hashable | None


class BatchScheduler:
    """FIFO queue + one worker thread calling `run_batch(jobs)`; run_batch sets each job's future result.

    If run_batch raises, every job of that batch whose future is still unset gets the exception.
    `on_batch(record)` (optional) is called as each batch starts, from the worker thread.
    """

    def __init__(self, run_batch: Callable[[list[Job]], None], max_batch_size: int = 32, wait_s: float = 0.01,
                 max_queue: int = 256, on_batch: Callable[[BatchRecord], None] | None = None):
        if max_batch_size < 1 or max_queue < 1 or wait_s < 0:
            raise ValueError("max_batch_size and max_queue must be ≥ 1 and wait_s ≥ 0")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def depth(self) -> int:
        """Jobs waiting (not yet claimed by the worker; ones whose caller gave up are not counted)."""
        with self._cond:
            return sum(not job.future.cancelled() for job in self._queue)

    def submit(self, job: Job) -> Future:
        with self._cond:
            if self._stopping:
                raise RuntimeError("the scheduler is stopped")
            if len(self._queue) >= self.max_queue:  # make room: forget jobs whose callers gave up
                self._queue = deque(j for j in self._queue if not j.future.cancelled())
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are queued (the limit is {self.max_queue})")
            self._queue.append(job)
            self._cond.notify_all()
        return job.future

    def start(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="tether-batch-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the worker after its current batch; queued jobs fail with RuntimeError."""
        with self._cond:
            self._stopping = True
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in pending:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _select(self) -> tuple[list[Job], int]:
        """Jobs that may join the batch of the queue's first live job (call with the lock held)."""
        while self._queue and self._queue[0].future.cancelled():
            self._queue.popleft()
        if not self._queue:
            return [], 0
        first = self._queue[0]
        batch, total = [first], first.size
        if first.key is None:
            return batch, total
        for job in list(self._queue)[1:]:
            if job.key == first.key and not job.future.cancelled() and total + job.size <= self.max_batch_size:
                batch.append(job)
                total += job.size
        return batch, total

    def _next_batch(self) -> list[Job] | None:
        """Block until a batch is ready (see the module docstring); None when stopping."""
        with self._cond:
            while True:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return None
                batch, total = self._select()
                if not batch:
                    continue
                deadline = time.monotonic() + self.wait_s
                while batch[0].key is not None and total < self.max_batch_size and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                    batch, total = self._select()
                    if not batch:
                        break
                if not batch:
                    continue
                for job in batch:
                    self._queue.remove(job)
                claimed = [job for job in batch if job.future.set_running_or_notify_cancel()]
                if claimed:
                    return claimed

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if self.on_batch is not None:
                self.on_batch(BatchRecord(len(batch), sum(j.size for j in batch), batch[0].key))
            try:
                self.run_batch(batch)
            except Exception as err:  # every waiting caller must hear of it
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(err)
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(RuntimeError("run_batch returned without a result for this job"))
