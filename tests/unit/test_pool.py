"""The pool's view of its spawner's queue, and how the main loop uses it to sleep longer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mpifarmer import farmer
from mpifarmer.pool import Pool
from mpifarmer.runners import BasicRunner
from mpifarmer.task import Task
from mpifarmer.transport.backoff import Backoff


def _reap_until(pool: Pool, count: int, limit: float = 30.0) -> list:
    outcomes: list = []
    deadline = time.monotonic() + limit
    while len(outcomes) < count and time.monotonic() < deadline:
        outcomes += pool.reap()
        time.sleep(0.005)
    return outcomes


def test_lull_is_queued_work_at_the_recent_run_time(tmp_path: Path) -> None:
    pool = Pool(1, BasicRunner(), log_path=lambda task: tmp_path / f"log_{task}")
    try:
        for task in range(6):
            pool.start(Task(task, "sleep 0.1", "sleep 0.1"))
        assert pool.lull() == 0.0  # no run has ended: nothing known of run times yet
        outcomes = _reap_until(pool, 1)
        assert [outcome.returncode for outcome in outcomes] == [0]
        # One ran, one runs, four wait in the spawner's queue: about 4 x 0.1 s of work.
        assert 0.3 <= pool.lull() <= 4 * 2.0
        assert len(_reap_until(pool, 5)) == 5
        assert pool.lull() == 0.0  # nothing queued
    finally:
        pool.close()


def test_dropped_tasks_leave_the_queue(tmp_path: Path) -> None:
    pool = Pool(1, BasicRunner(), log_path=lambda task: tmp_path / f"log_{task}")
    try:
        pool.start(Task(0, "true", "true"))
        assert len(_reap_until(pool, 1)) == 1
        for task in range(1, 5):
            pool.start(Task(task, "sleep 5", "sleep 5"))
        deadline = time.monotonic() + 30
        while not pool.running[1].pid and time.monotonic() < deadline:
            pool.reap()
            time.sleep(0.005)
        assert pool.lull() > 0
        pool.drop()
        deadline = time.monotonic() + 30
        dropped: list[int] = []
        while len(dropped) < 3 and time.monotonic() < deadline:
            pool.reap()
            dropped += pool.take_dropped()
            time.sleep(0.005)
        assert sorted(dropped) == [2, 3, 4]
        assert pool.lull() == 0.0
    finally:
        pool.signal_all(9)
        pool.close()


class _Flags:
    def __init__(self) -> None:
        self.calls: list[tuple[float, bool]] = []

    def wait(self, timeout: float, *, watched: bool = True) -> None:
        self.calls.append((timeout, watched))


@pytest.mark.parametrize(("lull", "watched"), [(0.0, True), (farmer.LULL_MIN / 2, True), (0.03, False), (9.0, False)])
def test_the_loop_ignores_the_pool_while_it_has_a_lull(lull: float, watched: bool) -> None:
    flags = _Flags()
    farmer._wait(flags, Backoff(), False, time.monotonic() + 5.0, None, lull)  # type: ignore[arg-type]
    (timeout, seen_watched), = flags.calls
    assert seen_watched is watched
    if watched:
        assert 4.0 < timeout <= 5.0  # until the next deadline, woken early by the pool
    else:
        assert timeout == pytest.approx(min(lull / 2, farmer.POLL_MAX), rel=0.01)


def test_a_busy_loop_does_not_sleep_even_with_a_lull() -> None:
    flags = _Flags()
    farmer._wait(flags, Backoff(), True, time.monotonic() + 5.0, None, 1.0)  # type: ignore[arg-type]
    assert flags.calls == [(0.0, False)]


def test_mpi_ranks_poll_at_the_slow_pace_while_the_pool_has_a_lull() -> None:
    flags, remote = _Flags(), object()
    farmer._wait(flags, Backoff(), True, time.monotonic() + 5.0, remote, 1.0)  # type: ignore[arg-type]
    farmer._wait(flags, Backoff(), True, time.monotonic() + 5.0, remote, 0.0)  # type: ignore[arg-type]
    assert flags.calls == [(farmer.POLL_MAX, False), (0.0, True)]  # without a lull: the busy backoff
