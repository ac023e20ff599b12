"""A background writer: runs file-writing jobs in submission order on one thread, so decoding never waits on disk.

Crash safety comes from the order: a run submits a sample's state shard before the results record that
points at it, and jobs run strictly one after the other, so a record can only reach the disk after its shard
is written and fsynced. A job that fails stops the writer: later jobs are skipped (no record can outlive a
shard that failed) and the error is raised in the submitting thread at its next `submit`, `flush` or `close`.
A kill -9 loses only the jobs still queued, i.e. samples without a record, which a resumed run redoes.

The queue is bounded both in jobs and in bytes (back-pressure): `submit` blocks while it is full, so memory
stays bounded when the disk is slower than decoding.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable

Job = Callable[[], None]


class BackgroundWriter:
    """Runs `submit`ted jobs in order on a daemon thread; at most `max_jobs` jobs / `max_bytes` bytes wait."""

    def __init__(self, max_jobs: int = 64, max_bytes: int = 1 << 30, name: str = "reasonlens-writer"):
        if max_jobs < 1 or max_bytes < 1:
            raise ValueError("max_jobs and max_bytes must be >= 1")
        self.max_jobs, self.max_bytes = max_jobs, max_bytes
        self._jobs: deque[tuple[Job | None, int]] = deque()
        self._bytes = 0
        self._running = False  # a job has been taken off the queue and has not finished
        self._error: BaseException | None = None
        self._lock = threading.Condition()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Job, size: int = 0) -> None:
        """Queue `job` (its payload is about `size` bytes); blocks while the queue is full."""
        with self._lock:
            while (
                self._error is None
                and self._jobs
                and (len(self._jobs) >= self.max_jobs or self._bytes + size > self.max_bytes)
            ):
                self._lock.wait()
            self._raise()
            if not self._thread.is_alive():
                raise RuntimeError("background writer is closed")
            self._jobs.append((job, size))
            self._bytes += size
            self._lock.notify_all()

    def flush(self) -> None:
        """Wait until every submitted job has run; raise the first job error."""
        with self._lock:
            while self._error is None and (self._jobs or self._running):
                self._lock.wait()
            self._raise()

    def close(self) -> None:
        """Run what is queued, stop the thread, raise the first job error (if any)."""
        if self._thread.is_alive():
            with self._lock:
                self._jobs.append((None, 0))
                self._lock.notify_all()
            self._thread.join()
        with self._lock:
            self._raise()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()  # finish the complete shards/records already queued, then let the first error through
        except Exception:
            pass

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, _Failed(self._error)
            raise error

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._jobs:
                    self._lock.wait()
                job, size = self._jobs.popleft()
                self._running = job is not None
            if job is None:
                with self._lock:
                    self._lock.notify_all()
                return
            try:
                if self._error is None:
                    job()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the submitting thread
                with self._lock:
                    if self._error is None:
                        self._error = exc
            finally:
                with self._lock:
                    self._bytes -= size
                    self._running = False
                    self._lock.notify_all()


class _Failed(RuntimeError):
    """Raised on later calls once a job failed (the original error was raised once already)."""

    def __init__(self, cause: BaseException):
        super().__init__(f"background writer stopped after an error: {cause}")
