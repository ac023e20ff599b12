"""The background writer: jobs run in order, the queue is bounded, and a failed job stops every later one."""

import threading
import time

import pytest

from reasonlens.runs.writer import BackgroundWriter


def test_jobs_run_in_submission_order_off_the_calling_thread():
    done, threads = [], set()
    with BackgroundWriter(max_jobs=4) as writer:
        for i in range(50):
            writer.submit(lambda i=i: (done.append(i), threads.add(threading.get_ident())))
    assert done == list(range(50))
    assert threads and threading.get_ident() not in threads


def test_submit_blocks_while_the_queue_is_full():
    gate = threading.Event()
    with BackgroundWriter(max_jobs=2, max_bytes=100) as writer:
        writer.submit(gate.wait)  # taken off the queue and running: blocks the writer
        time.sleep(0.05)
        writer.submit(lambda: None, size=60)
        writer.submit(lambda: None, size=30)  # two jobs waiting: the queue is full
        blocked = threading.Thread(target=writer.submit, args=(lambda: None,))
        blocked.start()
        blocked.join(0.2)
        assert blocked.is_alive()  # back-pressure
        gate.set()
        blocked.join(5)
        assert not blocked.is_alive()
        writer.flush()


def test_bytes_bound_the_queue_too():
    gate = threading.Event()
    writer = BackgroundWriter(max_jobs=100, max_bytes=100)
    writer.submit(gate.wait)
    time.sleep(0.05)
    writer.submit(lambda: None, size=80)
    blocked = threading.Thread(target=writer.submit, args=(lambda: None, 30))
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive()
    gate.set()
    blocked.join(5)  # room frees up once the queued jobs ran: the blocked submit goes through
    assert not blocked.is_alive()
    writer.close()


def test_a_failed_job_skips_the_rest_and_raises_in_the_caller():
    done = []
    writer = BackgroundWriter()
    writer.submit(lambda: done.append("shard 0"))
    writer.submit(lambda: 1 / 0)  # e.g. a shard write that failed
    writer.submit(lambda: done.append("record"))  # must never run: its shard is not on disk
    with pytest.raises(ZeroDivisionError):
        writer.flush()
    with pytest.raises(RuntimeError, match="stopped after an error"):
        writer.submit(lambda: done.append("later"))
    with pytest.raises(RuntimeError, match="stopped after an error"):
        writer.close()
    assert done == ["shard 0"]
