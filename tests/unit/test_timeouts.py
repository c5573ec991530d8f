"""Per-task time limits, with explicit times: when a run is stopped, when it is killed."""

from __future__ import annotations

from mpifarmer.scheduling.timeouts import TimeLimits, limit_of


def test_a_run_is_stopped_at_its_limit_and_killed_after_the_grace() -> None:
    limits = TimeLimits(grace=3.0)
    limits.started(7, t0=100.0, limit=1.5)
    assert limits.next_at() == 101.5
    assert limits.due(101.4) == ([], [])
    assert limits.due(101.5) == ([7], [])
    assert limits.next_at() == 104.5  # the grace counts from the stop
    assert limits.due(104.4) == ([], [])
    assert limits.due(104.5) == ([], [7])
    assert limits.next_at() is None
    assert limits.ended(7) is True  # its end is a timeout
    assert limits.ended(7) is False


def test_a_run_that_ends_in_time_is_forgotten_and_never_signalled() -> None:
    limits = TimeLimits(grace=3.0)
    limits.started(1, t0=0.0, limit=10.0)
    assert limits.ended(1) is False
    assert limits.next_at() is None
    assert limits.due(1000.0) == ([], [])


def test_a_run_that_ends_within_the_grace_is_not_killed() -> None:
    limits = TimeLimits(grace=3.0)
    limits.started(1, t0=0.0, limit=1.0)
    assert limits.due(1.2) == ([1], [])
    assert limits.ended(1) is True
    assert limits.due(10.0) == ([], [])


def test_runs_without_a_limit_are_not_tracked_and_late_wakeups_catch_up() -> None:
    limits = TimeLimits(grace=0.5)
    limits.started(1, t0=0.0, limit=None)
    limits.started(2, t0=0.0, limit=2.0)
    limits.started(3, t0=1.0, limit=0.5)
    assert limits.due(2.0) == ([3, 2], [])  # a late look stops both; the grace counts from the stop
    assert sorted(limits.due(2.5).kill) == [2, 3]


def test_the_same_task_run_again_gets_a_fresh_limit() -> None:
    limits = TimeLimits(grace=1.0)
    limits.started(4, t0=0.0, limit=1.0)
    limits.due(1.0)
    limits.ended(4)
    limits.started(4, t0=5.0, limit=1.0)
    assert limits.due(2.0) == ([], [])  # the first run's kill is not carried over
    assert limits.due(6.0) == ([4], [])


def test_a_tasks_own_timeout_wins_over_the_default() -> None:
    assert limit_of({}, None) is None
    assert limit_of({}, 30.0) == 30.0
    assert limit_of({"timeout": 2}, 30.0) == 2.0
    assert limit_of({"timeout": 0.25}, None) == 0.25
    assert limit_of({"timeout": True}, 30.0) == 30.0  # not a number of seconds: ignored
