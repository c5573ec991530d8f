"""A remote rank's ends: held while it has work queued, sent together; at once when it has none."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mpifarmer.pool import Pool
from mpifarmer.runners import HoldRunner
from mpifarmer.scheduling import policy
from mpifarmer.signals import SignalFlags
from mpifarmer.transport import protocol as msg
from mpifarmer.transport.inprocess import InProcessHub
from mpifarmer.worker import Worker


def test_the_policy() -> None:
    due = policy.ends_report_due
    assert not due(held_since=None, now=5.0, queued=0, stopping=True, wait=0.0)
    assert due(held_since=1.0, now=1.0, queued=9, stopping=False, wait=0.0), "rank 0's worker: at once"
    assert not due(held_since=1.0, now=1.004, queued=9, stopping=False, wait=0.005)
    assert due(held_since=1.0, now=1.006, queued=9, stopping=False, wait=0.005)
    assert due(held_since=1.0, now=1.0, queued=0, stopping=False, wait=0.005), "nothing queued: rank 0 must know"
    assert due(held_since=1.0, now=1.0, queued=9, stopping=True, wait=0.005)


def run_rank(tmp_path: Path, end_wait: float, until, *, tasks: int = 4) -> list[msg.Ended]:
    """Rank 1 of an in-process job, one slot of 20 ms holds, sent ``tasks`` tasks at once; step it
    until ``until(worker)``; the Ended messages rank 0 received."""
    hub = InProcessHub(2)
    rank0 = hub.transport(0)
    pool = Pool(1, HoldRunner(0.02), log_path=lambda task: tmp_path / f"log_{task}")
    worker = Worker(hub.transport(1), pool, SignalFlags(), verbose=False, silence_limit=None, kill_grace=1.0,
                    start_flush=1.0, end_wait=end_wait)
    try:
        rank0.send(1, msg.Work([(i, "x", "x", {}, None) for i in range(tasks)]))
        worker.step()  # receives the work and starts the first
        deadline = time.monotonic() + 30
        while not until(worker) and time.monotonic() < deadline:
            worker.step()
            time.sleep(0.002)
    finally:
        pool.close()
    return [m for _, m in rank0.poll() if isinstance(m, msg.Ended)]


def test_ends_are_held_while_work_is_queued_and_sent_together(tmp_path: Path) -> None:
    ended = run_rank(tmp_path, 60.0, lambda w: not w.pool.running and not w.pool.queued and not w._ends)
    # Held while tasks waited for the slot; sent once the last one started (nothing queued: rank 0
    # must hear of them to send more); the last end alone, at once.
    assert [[end.id for end in m.ends] for m in ended] == [[0, 1, 2], [3]]


def test_without_a_wait_each_step_reports_its_ends(tmp_path: Path) -> None:
    ended = run_rank(tmp_path, 0.0, lambda w: not w.pool.running and not w.pool.queued and not w._ends)
    assert sorted(end.id for m in ended for end in m.ends) == [0, 1, 2, 3]
    assert len(ended) == 4


@pytest.mark.parametrize("stop", ["drain", "finish"])
def test_held_ends_are_sent_when_the_rank_stops(tmp_path: Path, stop: str) -> None:
    hub = InProcessHub(2)
    rank0 = hub.transport(0)
    pool = Pool(1, HoldRunner(0.02), log_path=lambda task: tmp_path / f"log_{task}")
    worker = Worker(hub.transport(1), pool, SignalFlags(), verbose=False, silence_limit=None, kill_grace=1.0,
                    start_flush=1.0, end_wait=60.0)
    try:
        rank0.send(1, msg.Work([(i, "x", "x", {}, None) for i in range(50)]))
        deadline = time.monotonic() + 30
        while not worker._ends and time.monotonic() < deadline:
            worker.step()
            time.sleep(0.002)
        assert worker._ends and not any(isinstance(m, msg.Ended) for _, m in rank0.poll())
        rank0.send(1, msg.Drain("test") if stop == "drain" else msg.Finish(0))
        while not worker.done and time.monotonic() < deadline:
            worker.step()
            time.sleep(0.002)
            if stop == "drain" and not worker._ends:
                break
    finally:
        pool.close()
    assert not worker._ends
    assert time.monotonic() < deadline
