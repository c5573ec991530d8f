"""The ledger: journal records replayed into task states, and the lowest-pending-first claim."""

from __future__ import annotations

from typing import Any

import pytest

from mpifarmer.scheduling import records as rec
from mpifarmer.scheduling.ledger import Ledger, Status

STATE = {Status.PENDING: "pending", Status.CLAIMED: "claimed", Status.FINISHED: "finished", Status.FAILED: "failed"}


def ledger_with(*lines: str, farmers: tuple[str, ...] = ("A", "B")) -> Ledger:
    ledger = Ledger()
    ledger.apply(rec.add(0, list(lines)))
    for fid in farmers:
        ledger.apply(rec.hello(fid, {"host": "h", "boot": "b", "pid": 1}, 0.0))
    return ledger


def end(fid: str, task: int, st: str, *, t0: float = 1.0, t1: float = 2.0) -> dict[str, Any]:
    return rec.end(fid, task, st=st, rc=0 if st == rec.FINISHED else 1, sig=None, t0=t0, t1=t1, host="h",
                   rank=0, slot=0)


def states(ledger: Ledger) -> list[str]:
    return [STATE[s] for s in ledger.status]


def claimed_ids(record: dict[str, Any] | None) -> list[int]:
    assert record is not None
    return record["ids"]


def test_add_makes_every_task_pending() -> None:
    ledger = ledger_with("a", "b", "c")
    assert ledger.lines == ["a", "b", "c"]
    assert states(ledger) == ["pending"] * 3
    assert ledger.pending == 3 and len(ledger) == 3


def test_claim_takes_lowest_pending_ids_first_and_records_the_owner() -> None:
    ledger = ledger_with("a", "b", "c", "d")
    assert claimed_ids(ledger.claim("A", 2)) == [0, 1]
    assert claimed_ids(ledger.claim("B", 5)) == [2, 3]
    assert ledger.claim("A", 1) is None
    assert ledger.owner == {0: "A", 1: "A", 2: "B", 3: "B"}
    assert ledger.farmers["A"].held == {0, 1}
    assert ledger.count(Status.CLAIMED) == 4 and ledger.pending == 0


def test_claim_returns_the_applied_record_in_journal_form() -> None:
    ledger = ledger_with("a", "b")
    assert ledger.claim("A", 1) == {"e": "claim", "f": "A", "ids": [0]}


def test_released_low_task_is_claimed_before_higher_ones() -> None:
    ledger = ledger_with("a", "b", "c", "d")
    ledger.claim("A", 2)
    ledger.apply(rec.release("A", [0]))
    assert claimed_ids(ledger.claim("B", 2)) == [0, 2]


def test_release_by_a_farmer_that_does_not_own_the_task_is_ignored() -> None:
    ledger = ledger_with("a")
    ledger.claim("A", 1)
    ledger.apply(rec.release("B", [0]))
    assert states(ledger) == ["claimed"] and ledger.owner == {0: "A"}


def test_claims_replayed_from_the_journal_are_not_claimed_again() -> None:
    source = ledger_with("a", "b", "c")
    journal = [rec.add(0, ["a", "b", "c"]), rec.hello("A", {}, 0.0), source.claim("A", 2)]
    replica = Ledger()
    replica.apply_all(journal)
    assert claimed_ids(replica.claim("B", 3)) == [2]


@pytest.mark.parametrize("gone", ["bye", "dead"])
def test_claims_of_a_departed_farmer_return_to_pending(gone: str) -> None:
    ledger = ledger_with("a", "b", "c")
    ledger.claim("A", 2)
    ledger.claim("B", 1)
    record = rec.bye("A", 5.0) if gone == "bye" else rec.dead("A", "B", "its process is gone", 5.0)
    ledger.apply(record)
    assert states(ledger) == ["pending", "pending", "claimed"]
    assert ledger.farmers["A"].gone and ledger.farmers["A"].held == set()
    assert ledger.owner == {2: "B"}
    assert claimed_ids(ledger.claim("B", 5)) == [0, 1]


def test_departed_farmer_leaves_its_finished_tasks_finished() -> None:
    ledger = ledger_with("a", "b")
    ledger.claim("A", 2)
    ledger.apply(end("A", 0, rec.FINISHED))
    ledger.apply(rec.bye("A", 5.0))
    assert states(ledger) == ["finished", "pending"]


def test_departure_forgets_the_runs_the_farmer_had_started() -> None:
    ledger = ledger_with("a")
    ledger.claim("A", 1)
    ledger.apply(rec.start("A", 0, pid=9, pst=None, host="h", rank=0, slot=0, t=1.0))
    assert 0 in ledger.started
    ledger.apply(rec.dead("A", "B", "lease", 9.0))
    assert ledger.started == {}


def test_bye_of_an_unknown_farmer_changes_nothing() -> None:
    ledger = ledger_with("a")
    ledger.claim("A", 1)
    ledger.apply(rec.bye("nobody", 1.0))
    assert states(ledger) == ["claimed"]


@pytest.mark.parametrize(("st", "expected"), [(rec.FINISHED, "finished"), (rec.FAILED, "failed"),
                                              (rec.INTERRUPTED, "pending")])
def test_end_of_a_run_sets_the_task_state(st: str, expected: str) -> None:
    ledger = ledger_with("a", "b")
    ledger.claim("A", 2)
    ledger.apply(end("A", 0, st))
    assert states(ledger) == [expected, "claimed"]
    assert ledger.owner == {1: "A"} and ledger.farmers["A"].held == {1}


def test_interrupted_task_is_claimed_again_first() -> None:
    ledger = ledger_with("a", "b", "c")
    ledger.claim("A", 2)
    ledger.apply(end("A", 1, rec.INTERRUPTED))
    assert claimed_ids(ledger.claim("B", 1)) == [1]


@pytest.mark.parametrize("order", [(rec.FINISHED, rec.FAILED), (rec.FAILED, rec.FINISHED)])
def test_finished_wins_over_failed_in_either_order(order: tuple[str, str]) -> None:
    ledger = ledger_with("a")
    ledger.claim("A", 1)
    for st in order:
        ledger.apply(end("A", 0, st))
    assert states(ledger) == ["finished"]
    assert ledger.count(Status.FINISHED) == 1 and ledger.count(Status.FAILED) == 0


def test_interrupted_after_finished_keeps_it_finished() -> None:
    ledger = ledger_with("a")
    ledger.claim("A", 1)
    ledger.apply(end("A", 0, rec.FINISHED))
    ledger.apply(end("A", 0, rec.INTERRUPTED))
    assert states(ledger) == ["finished"] and ledger.claim("B", 1) is None


def test_a_failed_run_of_a_finished_task_leaves_it_finished() -> None:
    ledger = ledger_with("a", "b")
    ledger.claim("A", 2)
    ledger.apply(end("A", 1, rec.FINISHED))
    ledger.apply(end("B", 1, rec.FAILED))
    assert states(ledger) == ["claimed", "finished"] and ledger.count(Status.FAILED) == 0


def test_start_is_tracked_until_the_run_ends() -> None:
    ledger = ledger_with("a")
    ledger.claim("A", 1)
    ledger.apply(rec.start("A", 0, pid=42, pst=7, host="h", rank=0, slot=3, t=1.0))
    assert ledger.started[0]["pid"] == 42 and ledger.started[0]["slot"] == 3
    ledger.apply(end("A", 0, rec.FINISHED))
    assert ledger.started == {}


def test_retry_makes_only_failed_tasks_pending() -> None:
    ledger = ledger_with("a", "b", "c")
    ledger.claim("A", 3)
    ledger.apply(end("A", 0, rec.FAILED))
    ledger.apply(end("A", 1, rec.FINISHED))
    ledger.apply(rec.retry("A", [0, 1, 2]))
    assert states(ledger) == ["pending", "finished", "claimed"]


def test_retry_failed_returns_the_record_and_the_tasks_can_be_claimed_again() -> None:
    ledger = ledger_with("a", "b", "c")
    ledger.claim("A", 3)
    ledger.apply(end("A", 0, rec.FAILED))
    ledger.apply(end("A", 2, rec.FAILED))
    assert ledger.retry_failed("B") == {"e": "retry", "f": "B", "ids": [0, 2]}
    assert ledger.retry_failed("B") is None
    assert claimed_ids(ledger.claim("B", 5)) == [0, 2]


def test_duplicate_add_adds_nothing() -> None:
    ledger = ledger_with("a", "b")
    ledger.apply(rec.add(0, ["a", "b"]))
    ledger.apply(rec.add(1, ["b"]))
    assert ledger.lines == ["a", "b"] and ledger.pending == 2
    assert claimed_ids(ledger.claim("A", 5)) == [0, 1]


def test_overlapping_add_appends_only_the_new_lines() -> None:
    ledger = ledger_with("a", "b")
    ledger.apply(rec.add(1, ["b", "c", "d"]))
    assert ledger.lines == ["a", "b", "c", "d"]
    assert states(ledger) == ["pending"] * 4


def test_added_tasks_are_claimable_after_older_claims() -> None:
    ledger = ledger_with("a")
    ledger.claim("A", 1)
    ledger.apply(rec.add(1, ["b", "c"]))
    assert claimed_ids(ledger.claim("B", 5)) == [1, 2]


def test_unknown_and_kindless_records_are_skipped() -> None:
    ledger = ledger_with("a")
    ledger.apply({"e": "from-the-future", "ids": [0], "f": "A"})
    ledger.apply({"no": "kind"})
    assert states(ledger) == ["pending"] and ledger.lines == ["a"]


def test_claim_by_a_farmer_without_hello_still_replays() -> None:
    ledger = ledger_with("a", farmers=())
    ledger.apply(rec.claim("X", [0]))
    assert ledger.owner == {0: "X"} and ledger.farmers["X"].held == {0}
    ledger.apply(rec.bye("X", 1.0))
    assert states(ledger) == ["pending"]


def test_claim_of_a_task_that_is_not_pending_is_ignored() -> None:
    ledger = ledger_with("a")
    ledger.claim("A", 1)
    ledger.apply(rec.claim("B", [0]))
    assert ledger.owner == {0: "A"} and ledger.farmers["B"].held == set()


def test_hello_registers_the_farmer_identity() -> None:
    ledger = Ledger()
    ledger.apply(rec.hello("f0", {"host": "n1", "boot": "bb", "pid": 12, "pst": 34, "job": "7_1",
                                  "restart": 2}, 100.0))
    info = ledger.farmers["f0"]
    assert (info.host, info.boot, info.pid, info.pid_start, info.job, info.restart, info.registered) == \
        ("n1", "bb", 12, 34, "7_1", 2, 100.0)
    assert ledger.registrations == 1


def test_others_holding_lists_only_other_farmers_with_claims() -> None:
    ledger = ledger_with("a", "b", farmers=("A", "B", "C"))
    ledger.claim("A", 1)
    ledger.claim("B", 1)
    assert [f.fid for f in ledger.others_holding("A")] == ["B"]
    assert [f.fid for f in ledger.others_holding("C")] == ["A", "B"]


def test_counts_always_match_the_states() -> None:
    ledger = ledger_with("a", "b", "c", "d", "e")
    ledger.claim("A", 4)
    ledger.apply(end("A", 0, rec.FINISHED))
    ledger.apply(end("A", 1, rec.FAILED))
    ledger.apply(end("A", 2, rec.INTERRUPTED))
    ledger.apply(end("A", 1, rec.FINISHED))
    ledger.apply(rec.bye("A", 3.0))
    assert [ledger.count(s) for s in Status] == [states(ledger).count(STATE[s]) for s in Status] == [3, 0, 2, 0]


def test_stale_interrupted_end_does_not_release_another_farmers_claim() -> None:
    ledger = ledger_with("a")
    ledger.claim("A", 1)
    ledger.apply(rec.dead("A", "B", "lease expired", 5.0))  # A's task 0 is pending again
    ledger.claim("B", 1)  # B now runs task 0
    ledger.apply(end("A", 0, rec.INTERRUPTED))  # A was alive after all; its late record arrives
    assert ledger.owner.get(0) == "B"
    assert ledger.claim("C", 1) is None  # nobody else may start task 0 while B runs it


def test_owner_interrupted_after_being_taken_for_dead_leaves_the_task_pending_once() -> None:
    ledger = ledger_with("a")
    ledger.claim("A", 1)
    ledger.apply(rec.dead("A", "B", "lease expired", 5.0))
    ledger.apply(end("A", 0, rec.INTERRUPTED))
    assert states(ledger) == ["pending"] and ledger.pending == 1
    assert claimed_ids(ledger.claim("B", 5)) == [0]


def test_attributes_come_from_add_records_and_old_records_have_none() -> None:
    ledger = Ledger()
    ledger.apply({"e": "add", "first": 0, "lines": ["a", "b"]})  # as every journal before attributes
    ledger.apply(rec.add(2, ["c", "d", "e"], {1: {"env": {"X": "1"}}}))
    # the same lines seen by two farmers: the duplicate adds nothing, and keeps what is known
    ledger.apply(rec.add(2, ["c", "d", "e", "f"], {1: {"env": {"X": "1"}}, 3: {"gpus": 1}}))
    assert ledger.lines == ["a", "b", "c", "d", "e", "f"]
    assert ledger.attrs == {3: {"env": {"X": "1"}}, 5: {"gpus": 1}}


def test_claims_take_the_lowest_pending_ids_whatever_the_order_of_releases() -> None:
    """The claim keeps no heap of every task: a cursor over the states, and a heap of the tasks
    released below it. Checked against the plain definition (lowest pending first) over a random
    mix of claims, interrupted runs, finishes, failures, retries and dead farmers."""
    import random

    rng = random.Random(7)
    ledger = ledger_with(*(f"t{i}" for i in range(40)), farmers=("A", "B", "C"))
    for step in range(600):
        if step % 97 == 0:
            ledger.apply(rec.add(len(ledger), [f"more{step}-{i}" for i in range(5)]))
        held = sorted(ledger.owner)
        action = rng.random()
        if action < 0.4 or not held:
            fid = rng.choice("ABC")
            want = rng.randint(1, 6)
            expected = [i for i, s in enumerate(ledger.status) if s == Status.PENDING][:want]
            record = ledger.claim(fid, want)
            assert (record["ids"] if record else []) == expected
        elif action < 0.9:
            task = rng.choice(held)
            st = rng.choice([rec.FINISHED, rec.FAILED, rec.INTERRUPTED, rec.INTERRUPTED])
            ledger.apply(end(ledger.owner[task], task, st))
        elif action < 0.95:
            ledger.apply(rec.retry("A", list(ledger.ids_with(Status.FAILED))))
        else:
            fid = ledger.owner[rng.choice(held)]
            ledger.apply(rec.dead(fid, "A", "test", 0.0))
            ledger.apply(rec.hello(fid, {"host": "h", "boot": "b", "pid": 1}, 0.0))
        assert ledger.count(Status.PENDING) == sum(1 for s in ledger.status if s == Status.PENDING)
    assert ledger.count(Status.FINISHED) > 50


def test_the_change_count_follows_the_records_not_the_farmer() -> None:
    """Two farmers that replay the same records count the same changes (views are stamped with it)."""
    records = [rec.add(0, ["a", "b"]), rec.hello("A", {}, 0.0), rec.claim("A", [0, 1]), end("A", 0, rec.FINISHED)]
    one, two = Ledger(), Ledger()
    one.apply_all(records)
    for record in records:
        two.apply(record)
    assert one.changes == two.changes > 0
    before = one.changes
    one.apply(rec.hello("B", {}, 1.0))
    assert one.changes == before, "a hello changes no task"
    one.apply(end("A", 1, rec.FINISHED))
    assert one.changes > before
