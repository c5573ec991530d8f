"""The farm's pure decisions, driven with explicit times and observations (no clock, no processes)."""

from __future__ import annotations

import signal

import pytest

from mpifarmer.scheduling import policy
from mpifarmer.scheduling import records as rec
from mpifarmer.task import EndReason

EXITED, SIGNALLED, STOPPED, LOST = EndReason.EXITED, EndReason.SIGNALLED, EndReason.STOPPED, EndReason.LOST


def never_full() -> bool:
    return False


def must_not_ask() -> bool:
    raise AssertionError("the disk was looked at for a run that is not a failure")


# -- a run's end --


def test_exit_0_is_finished_and_the_disk_is_not_looked_at() -> None:
    assert policy.classify_end(0, reason=EXITED, stopping=False, disk_full=must_not_ask) == (rec.FINISHED, None, None)


@pytest.mark.parametrize(("reason", "stopping"), [(STOPPED, False), (LOST, False), (SIGNALLED, True),
                                                  (STOPPED, True)])
def test_runs_ended_by_the_farmers_side_or_during_a_stop_are_interrupted(reason: str, stopping: bool) -> None:
    verdict = policy.classify_end(-signal.SIGKILL, reason=reason, stopping=stopping, disk_full=must_not_ask)
    assert verdict == (rec.INTERRUPTED, None, None)


@pytest.mark.parametrize("stopping", [False, True])
def test_a_task_that_asks_for_more_than_the_pool_has_is_failed_not_run_again(stopping: bool) -> None:
    verdict = policy.classify_end(127, reason=EndReason.UNAVAILABLE, stopping=stopping, disk_full=must_not_ask)
    assert verdict == (rec.FAILED, None, 1)


def test_a_failure_on_a_full_disk_is_interrupted_and_drains() -> None:
    state, drain, _ = policy.classify_end(1, reason=EXITED, stopping=False, disk_full=lambda: True)
    assert state == rec.INTERRUPTED and drain is not None and "full" in drain


def test_a_plain_failure_is_failed() -> None:
    assert policy.classify_end(2, reason=EXITED, stopping=False, disk_full=never_full) == (rec.FAILED, None, 1)
    assert policy.classify_end(-signal.SIGSEGV, reason=SIGNALLED, stopping=False,
                               disk_full=never_full).state == rec.FAILED
    assert policy.classify_end(-signal.SIGTERM, reason=EndReason.TIMED_OUT, stopping=False,
                               disk_full=never_full).state == rec.FAILED


@pytest.mark.parametrize("code", [-signal.SIGTERM, -signal.SIGINT, -signal.SIGUSR1, -signal.SIGKILL,
                                  128 + signal.SIGTERM, 128 + signal.SIGINT])
def test_a_death_by_a_stop_signal_is_held_back_for_a_second(code: int) -> None:
    reason = SIGNALLED if code < 0 else EXITED
    assert policy.hold_until(code, reason=reason, stopping=False, now=100.0) == 100.0 + policy.SIGNAL_DEATH_HOLD


@pytest.mark.parametrize(("code", "reason", "stopping"), [
    (1, EXITED, False), (-signal.SIGSEGV, SIGNALLED, False), (-signal.SIGTERM, STOPPED, False),
    (-signal.SIGKILL, LOST, False), (-signal.SIGTERM, SIGNALLED, True)])
def test_other_ends_are_not_held(code: int, reason: str, stopping: bool) -> None:
    assert policy.hold_until(code, reason=reason, stopping=stopping, now=100.0) is None


# -- prefetch --


def test_prefetch_is_a_tenth_of_a_second_of_throughput_bounded() -> None:
    assert policy.prefetch_for(1000.0, remote=False) == 100
    assert policy.prefetch_for(0.0, remote=False) == 0
    assert policy.prefetch_for(0.0, remote=True) == 1  # a remote rank always keeps one ahead
    assert policy.prefetch_for(1e9, remote=True) == policy.PREFETCH_MAX


def test_retunes_come_fast_until_tasks_are_seen_ending_then_every_interval() -> None:
    schedule = policy.RetuneSchedule(now=10.0)
    assert not schedule.due(10.1, ended_since=0)
    assert schedule.due(10.0 + policy.RETUNE_FIRST, ended_since=0)
    assert schedule.retuned(10.2, ended=0) == pytest.approx(0.2)
    assert schedule.next_at == pytest.approx(10.2 + policy.RETUNE_FIRST)
    assert schedule.due(10.21, ended_since=policy.RETUNE_EARLY_ENDS)  # many short tasks: at once
    schedule.retuned(10.21, ended=policy.RETUNE_EARLY_ENDS)
    assert schedule.next_at == pytest.approx(10.21 + policy.RETUNE_INTERVAL)
    assert not schedule.due(10.5, ended_since=10 * policy.RETUNE_EARLY_ENDS)  # tuned: the interval rules now


# -- ranks, the end, the exit code --


def test_ranks_silent_for_longer_than_the_timeout_are_lost() -> None:
    heard = {1: 90.0, 2: 60.0}
    assert policy.silent_ranks(heard, size=4, lost=set(), started=50.0, now=100.0, timeout=30.0) == [
        (2, 40.0), (3, 50.0)]  # rank 3 never said a word: counted from the start
    assert policy.silent_ranks(heard, size=4, lost={2, 3}, started=50.0, now=100.0, timeout=30.0) == []
    assert policy.silent_ranks({}, size=1, lost=set(), started=0.0, now=1e6, timeout=30.0) == []  # rank 0 only


DONE = dict(held=0, stopping=False, in_flight=0, idle=True, ran_dry=True, pending=0, unrecorded_lines=0,
            ranks_known=2, size=2, holders_live=True)


def test_the_farm_is_done_when_nothing_is_left_anywhere() -> None:
    assert policy.farm_done(**DONE)


@pytest.mark.parametrize("change", [dict(held=1), dict(idle=False), dict(ran_dry=False), dict(pending=3),
                                    dict(unrecorded_lines=2), dict(ranks_known=1), dict(holders_live=False)])
def test_the_farm_is_not_done_while_anything_is_left(change: dict) -> None:
    assert not policy.farm_done(**(DONE | change))


def test_a_draining_farm_is_done_once_nothing_is_in_flight() -> None:
    draining = DONE | dict(stopping=True, pending=5, idle=False, ranks_known=1)
    assert policy.farm_done(**draining)
    assert not policy.farm_done(**(draining | dict(in_flight=1)))
    assert not policy.farm_done(**(draining | dict(held=1)))


CLEAN = dict(store_failed=False, rank_lost=False, closed=True, stopping=False, work_left=False, failed=0)


def test_exit_codes() -> None:
    assert policy.exit_code(**CLEAN) == policy.EXIT_DONE == 0
    assert policy.exit_code(**(CLEAN | dict(failed=2))) == policy.EXIT_FAILED == 1
    assert policy.exit_code(**(CLEAN | dict(stopping=True, work_left=True))) == policy.EXIT_STOPPED == 3
    assert policy.exit_code(**(CLEAN | dict(stopping=True))) == 0  # stopped, but nothing was left
    for broken in (dict(store_failed=True), dict(rank_lost=True), dict(closed=False)):
        assert policy.exit_code(**(CLEAN | broken)) == 3
