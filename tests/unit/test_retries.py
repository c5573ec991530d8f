"""Retries, retry delays and fail-fast, with explicit times: the policy's verdicts, the ledger's
attempt counts and delays (replayed, snapshotted), the dispatcher's asking again, the exit code."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from mpifarmer.scheduling import policy
from mpifarmer.scheduling import records as rec
from mpifarmer.scheduling.dispatch import Dispatcher
from mpifarmer.scheduling.ledger import Ledger, Status
from mpifarmer.task import EndReason

EXITED, SIGNALLED, STOPPED, LOST = EndReason.EXITED, EndReason.SIGNALLED, EndReason.STOPPED, EndReason.LOST
TIMED_OUT, UNAVAILABLE = EndReason.TIMED_OUT, EndReason.UNAVAILABLE


def never_full() -> bool:
    return False


def verdict(code: int, reason: str, *, attempts: int, retries: int, stopping: bool = False) -> policy.EndVerdict:
    return policy.classify_end(code, reason=reason, stopping=stopping, disk_full=never_full, attempts=attempts,
                               retries=retries)


# -- the policy: which end is an attempt, and whether the task runs again --


@pytest.mark.parametrize(("code", "reason"), [(1, EXITED), (-signal.SIGSEGV, SIGNALLED),
                                              (-signal.SIGTERM, TIMED_OUT), (127, EXITED)])
def test_a_failed_run_is_retried_while_attempts_are_left(code: int, reason: str) -> None:
    assert verdict(code, reason, attempts=0, retries=2) == (rec.RETRYING, None, 1)
    assert verdict(code, reason, attempts=1, retries=2) == (rec.RETRYING, None, 2)
    assert verdict(code, reason, attempts=2, retries=2) == (rec.FAILED, None, 3)


def test_without_retries_a_failure_is_final_and_is_attempt_1() -> None:
    assert verdict(1, EXITED, attempts=0, retries=0) == (rec.FAILED, None, 1)


@pytest.mark.parametrize(("reason", "stopping"), [(STOPPED, False), (LOST, False), (SIGNALLED, True),
                                                  (TIMED_OUT, True), (EXITED, True)])
def test_a_run_cut_short_by_the_farmer_or_a_drain_is_no_attempt(reason: str, stopping: bool) -> None:
    assert verdict(-signal.SIGTERM, reason, attempts=1, retries=1, stopping=stopping) == (rec.INTERRUPTED, None, None)


def test_a_task_that_can_never_start_is_not_retried() -> None:
    assert verdict(127, UNAVAILABLE, attempts=0, retries=5).state == rec.FAILED


def test_a_finished_run_is_finished_whatever_the_attempts_and_says_which_attempt_it_was() -> None:
    assert verdict(0, EXITED, attempts=4, retries=1) == (rec.FINISHED, None, 5)
    assert verdict(0, EXITED, attempts=0, retries=1) == (rec.FINISHED, None, None)  # the first: nothing to say


def test_a_run_stopped_for_its_time_limit_is_not_held_back_as_a_stop_signal_death() -> None:
    assert policy.hold_until(-signal.SIGTERM, reason=TIMED_OUT, stopping=False, now=10.0) is None
    assert policy.hold_until(-signal.SIGTERM, reason=SIGNALLED, stopping=False, now=10.0) == 11.0


def test_a_tasks_own_retries_win_over_the_default_and_bad_values_are_ignored() -> None:
    assert policy.retries_of({}, 3) == 3
    assert policy.retries_of({"retries": 0}, 3) == 0
    assert policy.retries_of({"retries": 5}, 0) == 5
    assert policy.retries_of({"retries": True}, 2) == 2 and policy.retries_of({"retries": -1}, 2) == 2


def test_the_attempt_a_run_is_is_known_only_for_tasks_that_may_be_retried() -> None:
    assert policy.attempt_of(0, 0) is None
    assert policy.attempt_of(0, 2) == (1, 3)
    assert policy.attempt_of(2, 2) == (3, 3)


def test_the_retry_delay_counts_from_the_end_of_the_run() -> None:
    assert policy.retry_at(100.0, 0.0) is None
    assert policy.retry_at(100.0, 2.5) == 102.5


# -- fail-fast and the exit code --


def test_the_farm_stops_once_the_work_directory_has_max_failures() -> None:
    assert policy.failures_stop(5, None) is None
    assert policy.failures_stop(2, 3) is None
    assert policy.failures_stop(3, 3) == "3 tasks of the work directory have failed (--max-failures 3)"
    assert policy.failures_stop(1, 1) == "1 task of the work directory has failed (--max-failures 1)"


def test_a_farmer_with_max_failures_looks_at_the_work_directory_every_few_seconds() -> None:
    assert not policy.failure_look_due(limit=None, last_look=0.0, now=1e9)
    assert not policy.failure_look_due(limit=2, last_look=100.0, now=100.0 + policy.FAILURE_LOOK - 0.01)
    assert policy.failure_look_due(limit=2, last_look=100.0, now=100.0 + policy.FAILURE_LOOK)


def exit_code(**given: Any) -> int:
    facts = {"store_failed": False, "rank_lost": False, "closed": True, "stopping": True, "work_left": True,
             "failed": 3, "failures_stopped": True} | given
    return policy.exit_code(**facts)


def test_a_farm_stopped_by_its_failures_with_work_left_exits_4_not_3() -> None:
    assert exit_code() == policy.EXIT_FAILURES == 4
    assert exit_code(failures_stopped=False) == policy.EXIT_STOPPED  # a signal, and too few failures
    assert exit_code(work_left=False) == policy.EXIT_FAILED  # the last tasks failed: nothing is left
    assert exit_code(closed=False) == policy.EXIT_STOPPED  # not recorded for sure: run it again
    assert exit_code(rank_lost=True) == policy.EXIT_STOPPED


# -- the ledger: attempts and delays, replayed --


def ledger_with(count: int) -> Ledger:
    ledger = Ledger()
    ledger.apply(rec.add(0, [f"task {i}" for i in range(count)]))
    for fid in ("A", "B"):
        ledger.apply(rec.hello(fid, {"host": "h", "boot": "b", "pid": 1}, 0.0))
    return ledger


def end(fid: str, task: int, st: str, *, t1: float = 2.0, att: int | None = None,
        at: float | None = None) -> dict[str, Any]:
    return rec.end(fid, task, st=st, rc=0 if st == rec.FINISHED else 1, sig=None, t0=1.0, t1=t1, host="h", rank=0,
                   slot=0, att=att, at=at)


def test_a_retrying_end_counts_an_attempt_and_makes_the_task_pending_again() -> None:
    ledger = ledger_with(3)
    assert ledger.claim("A", 1, now=2.0)["ids"] == [0]  # type: ignore[index]
    ledger.apply(end("A", 0, rec.RETRYING, att=1))
    assert ledger.status[0] == Status.PENDING and ledger.attempts == {0: 1}
    assert ledger.claim("A", 1, now=2.0)["ids"] == [0]  # type: ignore[index]  # lowest first, at once
    ledger.apply(end("A", 0, rec.RETRYING, att=2))
    assert ledger.attempts == {0: 2}


@pytest.mark.parametrize("final", [rec.FINISHED, rec.FAILED])
def test_attempts_are_forgotten_once_a_task_is_done(final: str) -> None:
    ledger = ledger_with(1)
    ledger.claim("A", 1, now=0.0)
    ledger.apply(end("A", 0, rec.RETRYING, att=1))
    ledger.claim("A", 1, now=0.0)
    ledger.apply(end("A", 0, final, att=2))
    assert ledger.attempts == {}  # memory only for tasks in the middle of their attempts


def test_a_retry_delay_keeps_the_task_from_every_claim_until_its_time() -> None:
    ledger = ledger_with(3)
    assert ledger.claim("A", 1, now=10.0)["ids"] == [0]  # type: ignore[index]
    ledger.apply(end("A", 0, rec.RETRYING, t1=10.5, att=1, at=15.5))
    assert ledger.status[0] == Status.PENDING and ledger.pending == 3  # pending: the farm is not done
    assert ledger.next_delay_end() == 15.5
    assert ledger.claim("B", 5, now=15.4)["ids"] == [1, 2]  # type: ignore[index]
    assert ledger.claim("B", 5, now=15.49) is None
    assert ledger.claim("A", 5, now=15.5)["ids"] == [0]  # type: ignore[index]
    assert ledger.next_delay_end() is None and ledger.delayed == {}


def test_a_delayed_task_above_the_claim_cursor_waits_too() -> None:
    """Claimed by another farmer, then delayed: the claiming ledger's cursor never passed it."""
    ledger = ledger_with(4)
    ledger.apply(rec.claim("B", [3]))  # another farmer's claim, replayed
    ledger.apply(end("B", 3, rec.RETRYING, att=1, at=50.0))
    assert ledger.claim("A", 10, now=49.0)["ids"] == [0, 1, 2]  # type: ignore[index]
    assert ledger.claim("A", 10, now=50.0)["ids"] == [3]  # type: ignore[index]


def test_a_delayed_task_claimed_by_a_farmer_whose_clock_is_ahead_is_not_claimed_twice() -> None:
    ledger = ledger_with(2)
    ledger.claim("A", 1, now=0.0)
    ledger.apply(end("A", 0, rec.RETRYING, att=1, at=20.0))
    ledger.apply(rec.claim("B", [0]))  # B's clock said 20 had come
    assert ledger.delayed == {} and ledger.next_delay_end() is None
    assert ledger.claim("A", 5, now=30.0)["ids"] == [1]  # type: ignore[index]


def test_attempts_are_counted_by_replay_so_they_survive_a_restart() -> None:
    first = ledger_with(2)
    records = [rec.claim("A", [0, 1]), end("A", 0, rec.RETRYING, att=1), end("A", 1, rec.FINISHED),
               rec.dead("A", "B", "its process is gone", 5.0), rec.claim("B", [0]), end("B", 0, rec.RETRYING, att=2),
               rec.claim("B", [0]), rec.bye("B", 9.0)]
    first.apply_all(records)
    restarted = ledger_with(2)
    restarted.apply_all(records)
    assert first.attempts == restarted.attempts == {0: 2}
    assert restarted.status[0] == Status.PENDING  # requeued: two attempts used, the rest left


def test_retry_failed_gives_a_fresh_set_of_attempts() -> None:
    ledger = ledger_with(1)
    ledger.claim("A", 1, now=0.0)
    ledger.apply(end("A", 0, rec.RETRYING, att=1))
    ledger.claim("A", 1, now=0.0)
    ledger.apply(end("A", 0, rec.FAILED, att=2))
    assert ledger.retry_failed("A") is not None
    assert ledger.attempts == {} and ledger.status[0] == Status.PENDING


def test_an_interruption_is_no_attempt() -> None:
    ledger = ledger_with(1)
    ledger.claim("A", 1, now=0.0)
    ledger.apply(end("A", 0, rec.INTERRUPTED))
    assert ledger.attempts == {} and ledger.status[0] == Status.PENDING


def test_a_stale_retrying_end_counts_but_does_not_release_another_farmers_claim() -> None:
    ledger = ledger_with(1)
    ledger.apply(rec.claim("A", [0]))
    ledger.apply(rec.dead("A", "B", "lease expired", 1.0))
    ledger.apply(rec.claim("B", [0]))
    ledger.apply(end("A", 0, rec.RETRYING, att=1))  # A was alive after all
    assert ledger.status[0] == Status.CLAIMED and ledger.owner == {0: "B"}
    assert ledger.attempts == {0: 1}


def test_a_snapshot_keeps_attempts_and_delays() -> None:
    ledger = ledger_with(3)
    ledger.claim("A", 2, now=0.0)
    ledger.apply(end("A", 0, rec.RETRYING, att=1))
    ledger.apply(end("A", 1, rec.RETRYING, att=1, at=40.0))
    again = Ledger.from_state(*ledger.state())
    assert again.attempts == {0: 1, 1: 1} and again.delayed == {1: 40.0}
    assert again.claim("B", 5, now=39.0)["ids"] == [0, 2]  # type: ignore[index]
    assert again.claim("B", 5, now=40.0)["ids"] == [1]  # type: ignore[index]


def test_a_snapshot_written_before_attempts_existed_still_loads() -> None:
    facts, buffers = ledger_with(1).state()
    del facts["attempts"], facts["delayed"]
    assert Ledger.from_state(facts, buffers).attempts == {}


# -- the dispatcher asks again when a task it ended is pending again --


def test_a_retried_task_is_asked_for_at_once_not_after_the_recheck() -> None:
    dispatcher = Dispatcher(recheck=2.0)
    dispatcher.add_rank(0, 2)
    dispatcher.claimed([0], 2, now=100.0)  # the store ran dry
    assert dispatcher.want(100.1) == 0
    dispatcher.pending_again()
    assert dispatcher.want(100.1) > 0


def test_a_task_waiting_for_its_retry_delay_is_asked_for_when_the_delay_ends() -> None:
    dispatcher = Dispatcher(recheck=2.0)
    dispatcher.add_rank(0, 1)
    dispatcher.claimed([], 1, now=100.0, delay_end=100.5)
    assert dispatcher.want(100.4) == 0
    assert dispatcher.next_check(100.4) == 100.5
    assert dispatcher.want(100.5) == 1
