"""Held slots (the HoldRunner's runs): in order, for their time, freed slots refilled at once."""

from __future__ import annotations

import pytest

from mpifarmer.holding import HeldSlots
from mpifarmer.pool import Run
from mpifarmer.runners import HoldRunner
from mpifarmer.task import Task


def run(task: int, attrs: dict | None = None) -> Run:
    return Run(Task(task, "x", "x", attrs or {}), -1, 0, None, 0.0)


def test_runs_hold_their_slots_for_the_time_and_the_next_starts_when_one_expires() -> None:
    held = HeldSlots({"slots": 2}, 1.0)
    runs = [run(i) for i in range(5)]
    started = [s for r in runs for s in held.add(r, 10.0)]
    assert [r.task.id for r in started] == [0, 1] and [r.slot for r in started] == [0, 1]
    assert held.waiting == 3 and held.next_end() == 11.0
    assert held.advance(10.999) == ([], [])
    # The loop looks late (at 12.5): each run ended at its own time, and the waiting ones
    # started when a slot freed, not when the loop looked.
    ended, started = held.advance(12.5)
    assert [(r.task.id, t1) for r, t1 in ended] == [(0, 11.0), (1, 11.0), (2, 12.0), (3, 12.0)]
    assert [(r.task.id, r.t0) for r in started] == [(2, 11.0), (3, 11.0), (4, 12.0)]
    assert held.waiting == 0 and held.next_end() == 13.0


def test_a_wide_request_waits_and_nothing_overtakes_it() -> None:
    held = HeldSlots({"slots": 2}, 1.0)
    held.add(run(0), 0.0)
    assert held.add(run(1, {"resources": {"slots": 2}}), 0.0) == []
    assert held.add(run(2), 0.0) == []  # one slot is free, but task 1 waits for two
    ended, started = held.advance(1.0)
    assert [r.task.id for r, _ in ended] == [0]
    assert [(r.task.id, r.units) for r in started] == [(1, {"slots": [0, 1]})]


def test_drop_returns_the_waiting_and_end_all_the_holding() -> None:
    held = HeldSlots({"slots": 1}, 5.0)
    for i in range(3):
        held.add(run(i), 0.0)
    assert [r.task.id for r in held.drop()] == [1, 2]
    assert [r.task.id for r in held.end_all()] == [0]
    assert held.next_end() is None and held.add(run(3), 1.0)[0].slot == 0  # its slot was given back


@pytest.mark.parametrize("bad", ["soon", "-1", "inf", None])
def test_hold_runner_rejects_a_bad_time(bad: object) -> None:
    with pytest.raises(ValueError, match="seconds"):
        HoldRunner(bad)  # type: ignore[arg-type]


def test_hold_runner_builds_no_argv() -> None:
    runner = HoldRunner("0.25")
    assert runner.seconds == 0.25 and runner.build(Task(0, "true", "true")) == []
