"""The store on a real work directory and a real lock: open, sync, dead farmers, retry, close."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mpifarmer import environment
from mpifarmer.errors import TaskListChanged
from mpifarmer.scheduling import records as rec
from mpifarmer.scheduling.ledger import Ledger, Status
from mpifarmer.scheduling.liveness import Liveness
from mpifarmer.store.journal import Journal
from mpifarmer.store.locking import WorkLock
from mpifarmer.store.store import Identity, Store
from mpifarmer.store.views import Snapshot, write_views
from mpifarmer.store.workdir import WorkDir
from mpifarmer.tasklists.reader import TaskLines, read_task_lines


def task_list(tmp_path: Path, lines: list[str], name: str = "tasks.txt") -> TaskLines:
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return read_task_lines(path)


def new_store(tmp_path: Path, mode: str = "flock", lease: float = 300.0) -> Store:
    workdir = WorkDir(tmp_path / "wd")
    workdir.prepare()
    return Store(workdir, WorkLock(workdir.root / "lock", mode), lease=lease)


def opened(tmp_path: Path, lines: list[str], *, mode: str = "flock", retry_failed: bool = False) -> Store:
    store = new_store(tmp_path, mode)
    store.open(task_list(tmp_path, lines), Identity.of_this_process(), task_list="tasks.txt",
               retry_failed=retry_failed)
    return store


def journal(store: Store) -> list[dict[str, Any]]:
    return Journal(store.workdir.journal).read_new()


def kinds(store: Store) -> list[str]:
    return [record["e"] for record in journal(store)]


def ended(store: Store, task: int, st: str) -> dict[str, Any]:
    return rec.end(store.fid, task, st=st, rc=0 if st == rec.FINISHED else 1, sig=None, t0=1.0, t1=2.0,
                   host="h", rank=0, slot=0)


def status_of(store: Store) -> dict[int, int]:
    return dict(enumerate(store.ledger.status))


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def plant_farmer(store: Store, fid: str, ids: list[int], *, host: str, pid: int) -> None:
    """Another farmer's hello and claim, written to the journal as that farmer would."""
    other = Journal(store.workdir.journal)
    other.read_new()
    identity = {"host": host, "boot": environment.boot_id() if host == environment.hostname() else "other-boot",
                "pid": pid, "pst": None, "job": None, "restart": 0, "ranks": 1}
    other.append([rec.hello(fid, identity, 1.0), rec.claim(fid, ids)])


def test_open_registers_and_adds_every_task(tmp_path: Path) -> None:
    store = opened(tmp_path, ["echo a", "echo b", "echo c"])
    records = journal(store)
    assert [r["e"] for r in records] == ["add", "hello"]
    assert records[0] == {"e": "add", "first": 0, "lines": ["echo a", "echo b", "echo c"]}
    assert records[1]["f"] == store.fid and records[1]["pid"] == os.getpid()
    assert store.workdir.heartbeat(store.fid).exists()
    assert store.workdir.finished.read_text() == store.workdir.failed.read_text() == "", "exact before any append"
    assert store.views_due(), "toprocess and running are rewritten by the loop's first round, in the background"
    store.write_views(background=True)
    store.close([])
    assert store.workdir.toprocess.read_text() == "0 echo a\n1 echo b\n2 echo c\n"


def test_reopen_with_the_same_list_adds_nothing(tmp_path: Path) -> None:
    opened(tmp_path, ["a", "b"]).close([])
    again = opened(tmp_path, ["a", "b"])
    assert kinds(again) == ["add", "hello", "bye", "hello"]
    assert again.ledger.lines == ["a", "b"] and again.ledger.pending == 2


def test_changed_task_names_the_line_and_writes_nothing(tmp_path: Path) -> None:
    opened(tmp_path, ["a", "b", "c"]).close([])
    store = new_store(tmp_path)
    before = store.workdir.journal.read_bytes()
    beats = sorted(store.workdir.farmers.iterdir())
    with pytest.raises(TaskListChanged) as caught:
        store.open(task_list(tmp_path, ["# a comment now", "a", "", "B", "c"]), Identity.of_this_process(),
                   task_list="tasks.txt")
    assert caught.value.line == 4
    assert caught.value.path == "tasks.txt"
    assert "task 1 differs" in str(caught.value) and "'b'" in str(caught.value)
    assert store.workdir.journal.read_bytes() == before
    assert sorted(store.workdir.farmers.iterdir()) == beats


def test_removed_tasks_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    opened(tmp_path, ["a", "b", "c", "d"]).close([])
    store = new_store(tmp_path)
    before = store.workdir.journal.read_bytes()
    with pytest.raises(TaskListChanged) as caught:
        store.open(task_list(tmp_path, ["a", "b"]), Identity.of_this_process(), task_list="tasks.txt")
    assert caught.value.line == 3
    assert "task 2 ('c') and 1 after it were removed" in str(caught.value)
    assert store.workdir.journal.read_bytes() == before


def test_comments_and_blank_lines_may_change_freely(tmp_path: Path) -> None:
    opened(tmp_path, ["a", "b"]).close([])
    store = opened(tmp_path, ["# now commented", "a", "", "b"])
    assert store.ledger.lines == ["a", "b"]


def test_appended_tasks_are_added_on_open(tmp_path: Path) -> None:
    opened(tmp_path, ["a", "b"]).close([])
    store = opened(tmp_path, ["a", "b", "c", "d"])
    assert journal(store)[-2] == {"e": "add", "first": 2, "lines": ["c", "d"]}
    assert store.ledger.lines == ["a", "b", "c", "d"]
    assert store.sync([], want=10).claimed == [0, 1, 2, 3]


def test_appended_tasks_are_added_on_sync(tmp_path: Path) -> None:
    store = opened(tmp_path, ["a"])
    result = store.sync([], want=5, tasks=task_list(tmp_path, ["a", "b", "c"]))
    assert result is not None and result.claimed == [0, 1, 2]
    assert journal(store)[-2:] == [{"e": "add", "first": 1, "lines": ["b", "c"]},
                                   {"e": "claim", "f": store.fid, "ids": [0, 1, 2]}]


def test_sync_claims_lowest_first_and_appends_the_records_it_was_given(tmp_path: Path) -> None:
    store = opened(tmp_path, ["a", "b", "c"])
    assert store.sync([], want=2).claimed == [0, 1]
    result = store.sync([ended(store, 0, rec.FINISHED)], want=2)
    assert result is not None and result.claimed == [2]
    assert kinds(store)[-3:] == ["claim", "end", "claim"]
    assert status_of(store) == {0: Status.FINISHED, 1: Status.CLAIMED, 2: Status.CLAIMED}


@pytest.mark.parametrize("mode", ["flock", "soft", "strict"])
def test_two_stores_on_one_work_dir_never_claim_the_same_task(tmp_path: Path, mode: str) -> None:
    lines = [f"task {n}" for n in range(23)]
    first = opened(tmp_path, lines, mode=mode)
    second = opened(tmp_path, lines, mode=mode)
    assert first.fid != second.fid
    got: dict[str, list[int]] = {first.fid: [], second.fid: []}
    for _ in range(20):
        for store, want in ((first, 2), (second, 3)):
            result = store.sync([], want=want)
            assert result is not None
            got[store.fid] += result.claimed
    assert sorted(got[first.fid] + got[second.fid]) == list(range(23))
    assert not set(got[first.fid]) & set(got[second.fid])
    result = second.sync([], want=1)
    assert result is not None and result.holders == {first.fid: Liveness.LIVE}
    claims = [task for record in journal(first) if record["e"] == "claim" for task in record["ids"]]
    assert sorted(claims) == list(range(23))


def test_a_store_sees_the_other_stores_ends(tmp_path: Path) -> None:
    first = opened(tmp_path, ["a", "b"])
    second = opened(tmp_path, ["a", "b"])
    first.sync([], want=1)
    first.sync([ended(first, 0, rec.FAILED)])
    second.sync([])
    assert status_of(second) == {0: Status.FAILED, 1: Status.PENDING}


def test_dead_farmer_on_this_host_gets_its_tasks_taken_back_on_open(tmp_path: Path) -> None:
    opened(tmp_path, ["a", "b", "c"]).close([])
    store = new_store(tmp_path)
    plant_farmer(store, "ghost", [0, 2], host=environment.hostname(), pid=dead_pid())
    store.open(task_list(tmp_path, ["a", "b", "c"]), Identity.of_this_process(), task_list="tasks.txt")
    dead = [r for r in journal(store) if r["e"] == "dead"]
    assert len(dead) == 1 and dead[0]["f"] == "ghost" and dead[0]["by"] == store.fid
    assert status_of(store) == {0: Status.PENDING, 1: Status.PENDING, 2: Status.PENDING}
    assert store.sync([], want=3).claimed == [0, 1, 2]


def test_dead_farmer_gets_its_tasks_taken_back_on_sync(tmp_path: Path) -> None:
    store = opened(tmp_path, ["a", "b", "c", "d"])
    plant_farmer(store, "ghost", [0, 1], host=environment.hostname(), pid=dead_pid())
    result = store.sync([], want=3)
    assert result is not None
    assert result.holders == {"ghost": Liveness.DEAD}
    assert result.claimed == [0, 1, 2]
    assert kinds(store)[-2:] == ["dead", "claim"]


def test_farmer_elsewhere_with_a_fresh_heartbeat_keeps_its_claims(tmp_path: Path) -> None:
    store = opened(tmp_path, ["a", "b", "c"])
    plant_farmer(store, "remote", [0], host="some-other-node", pid=1)
    store.workdir.heartbeat("remote").touch()
    result = store.sync([], want=3)
    assert result is not None
    assert result.holders == {"remote": Liveness.LIVE}
    assert result.claimed == [1, 2]
    assert "dead" not in kinds(store)


def test_farmer_elsewhere_whose_heartbeat_is_older_than_the_lease_is_dead(tmp_path: Path) -> None:
    store = opened(tmp_path, ["a", "b"])
    plant_farmer(store, "remote", [0, 1], host="some-other-node", pid=1)
    beat = store.workdir.heartbeat("remote")
    beat.touch()
    old = beat.stat().st_mtime - 10 * store.lease
    os.utime(beat, (old, old))
    result = store.sync([], want=1)
    assert result is not None and result.holders == {"remote": Liveness.DEAD}
    assert result.claimed == [0]


def test_farmer_declared_dead_registers_again_and_keeps_working(tmp_path: Path) -> None:
    store = opened(tmp_path, ["a", "b"])
    store.sync([], want=1)
    old_fid = store.fid
    plant = Journal(store.workdir.journal)
    plant.read_new()
    plant.append([rec.dead(old_fid, "someone", "lease expired", 5.0)])
    result = store.sync([], want=2)
    assert store.fid != old_fid
    assert result is not None and result.claimed == [0, 1]
    assert [r["f"] for r in journal(store) if r["e"] == "hello"] == [old_fid, store.fid]


def test_retry_failed_makes_failed_tasks_pending_again(tmp_path: Path) -> None:
    store = opened(tmp_path, ["a", "b", "c"])
    store.sync([], want=3)
    store.close([ended(store, 0, rec.FAILED), ended(store, 1, rec.FINISHED), ended(store, 2, rec.FAILED)])
    plain = opened(tmp_path, ["a", "b", "c"])
    assert status_of(plain) == {0: Status.FAILED, 1: Status.FINISHED, 2: Status.FAILED}
    plain.close([])
    retried = opened(tmp_path, ["a", "b", "c"], retry_failed=True)
    assert journal(retried)[-1] == {"e": "retry", "f": retried.fid, "ids": [0, 2]}
    assert status_of(retried) == {0: Status.PENDING, 1: Status.FINISHED, 2: Status.PENDING}
    assert retried.workdir.failed.read_text() == "", "rewritten before the first task can fail again"
    assert retried.workdir.finished.read_text() == "1 b\n"
    retried.write_views(background=True)  # the loop's first round
    retried.close([])
    assert retried.workdir.toprocess.read_text() == "0 a\n2 c\n"


def test_retry_failed_with_nothing_failed_writes_no_retry(tmp_path: Path) -> None:
    store = opened(tmp_path, ["a"], retry_failed=True)
    assert "retry" not in kinds(store)


def test_close_says_bye_releases_claims_and_writes_the_views(tmp_path: Path) -> None:
    store = opened(tmp_path, ["a", "b", "c", "d"])
    store.sync([], want=4)
    assert store.close([ended(store, 0, rec.FINISHED), ended(store, 1, rec.FAILED)])
    assert kinds(store)[-3:] == ["end", "end", "bye"]
    wd = store.workdir
    assert wd.finished.read_text() == "0 a\n"
    assert wd.failed.read_text() == "1 b\n"
    assert wd.toprocess.read_text() == "2 c\n3 d\n"
    assert wd.running.read_text() == ""
    events = json.loads(wd.timeline.read_text())["traceEvents"]
    assert sorted(e["args"]["id"] for e in events if e["ph"] == "X") == [0, 1]
    assert not wd.heartbeat(store.fid).exists()


def test_tasks_that_end_are_in_finished_and_failed_at_once(tmp_path: Path) -> None:
    """finished and failed are appended in the critical section that records the end, so a long
    list's views are never behind; toprocess waits for its next rewrite."""
    store = opened(tmp_path, ["a", "b", "c", "d"])
    store.sync([], want=4)
    store.sync([ended(store, 2, rec.FINISHED), ended(store, 1, rec.FAILED)])
    wd = store.workdir
    assert wd.finished.read_text() == "2 c\n" and wd.failed.read_text() == "1 b\n"
    store.sync([ended(store, 0, rec.FINISHED), ended(store, 1, rec.INTERRUPTED)])
    assert wd.finished.read_text() == "2 c\n0 a\n" and wd.failed.read_text() == "1 b\n"
    other = opened(tmp_path, ["a", "b", "c", "d"])  # a second farmer rewrites the views as it starts ...
    assert wd.finished.read_text() == "0 a\n2 c\n"
    other.sync([], want=1)
    other.sync([ended(other, 3, rec.FINISHED)])  # ... and adds its own ends
    store.sync([ended(store, 1, rec.FAILED)])
    assert wd.finished.read_text() == "0 a\n2 c\n3 d\n" and wd.failed.read_text() == "1 b\n"
    store.close([])
    other.close([])
    assert wd.finished.read_text() == "0 a\n2 c\n3 d\n" and wd.failed.read_text() == "1 b\n"


def test_a_restart_with_nothing_changed_rewrites_no_view(tmp_path: Path) -> None:
    store = opened(tmp_path, ["a", "b"])
    store.sync([], want=2)
    store.close([ended(store, 0, rec.FINISHED), ended(store, 1, rec.FAILED)])
    wd = store.workdir
    views = [wd.toprocess, wd.running, wd.finished, wd.failed, wd.timeline]
    written = {path: path.stat().st_ino for path in views}  # each rewrite is a new file (rename)
    again = opened(tmp_path, ["a", "b"])
    assert again.close([])
    assert {path: path.stat().st_ino for path in views} == written
    retried = opened(tmp_path, ["a", "b"], retry_failed=True)
    assert wd.failed.read_text() == ""
    assert retried.close([])
    assert wd.failed.read_text() == "" and wd.toprocess.read_text() == "1 b\n"


def test_a_stamp_left_by_a_killed_rewrite_is_not_trusted(tmp_path: Path) -> None:
    store = opened(tmp_path, ["a", "b"])
    store.sync([], want=1)
    store.close([ended(store, 0, rec.FINISHED)])
    wd = store.workdir
    wd.finished.write_text("")  # a view damaged or left behind ...
    wd.views_stamp.write_text("{not json")  # ... with its stamp
    opened(tmp_path, ["a", "b"]).close([])
    assert wd.finished.read_text() == "0 a\n"


def test_views_rewritten_in_the_background_after_the_stamp_are_rewritten_at_close(tmp_path: Path) -> None:
    """Bug 20 (the crash harness, lock mode): farmer B's background rewrite of toprocess and running,
    begun from an older state, ended after farmer A's complete rewrite and stamp; B then closed with
    the same ledger as A's and trusted the stamp, leaving the older toprocess and running behind."""
    a = opened(tmp_path, ["a", "b", "c"])
    b = opened(tmp_path, ["a", "b", "c"])
    b.sync([], want=1)
    older = Snapshot.of(b.ledger)  # what B's background thread is still writing: task 0 claimed
    b.close([ended(b, 0, rec.FINISHED)])
    a.sync([], want=2)
    a.close([ended(a, 1, rec.FINISHED), ended(a, 2, rec.FINISHED)])  # complete rewrite, and the stamp
    wd = a.workdir
    assert wd.toprocess.read_text() == "" and wd.running.read_text() == ""
    write_views(older, wd, (Status.PENDING, Status.CLAIMED), timeline=False)  # B's thread ends late
    assert wd.running.read_text() == "0 a\n"
    last = opened(tmp_path, ["a", "b", "c"])  # the same ledger as A's at its stamp
    assert last.close([])
    assert wd.toprocess.read_text() == "" and wd.running.read_text() == ""


def test_sync_and_close_give_up_when_the_lock_is_held(tmp_path: Path) -> None:
    store = opened(tmp_path, ["a"])
    holder = WorkLock(store.workdir.root / "lock", "flock")
    assert holder.acquire(timeout=1.0)
    try:
        size = store.workdir.journal.stat().st_size
        assert store.sync([], want=1, lock_timeout=0.05) is None
        assert store.close([], lock_timeout=0.05) is False
        assert store.workdir.journal.stat().st_size == size
    finally:
        holder.release()


def test_lock_owner_on_this_host_is_dead_only_when_its_process_is_gone(tmp_path: Path) -> None:
    store = opened(tmp_path, ["a"])
    assert store.is_dead_lock_owner(environment.hostname(), dead_pid())
    assert not store.is_dead_lock_owner(environment.hostname(), os.getpid())
    assert not store.is_dead_lock_owner("unknown-node", 123)


def test_a_long_list_is_added_in_chunks_that_replay_to_the_same_tasks(tmp_path: Path) -> None:
    lines = [f"echo {n}" for n in range(25_001)]
    store = opened(tmp_path, lines)
    adds = [r for r in journal(store) if r["e"] == "add"]
    assert [(r["first"], len(r["lines"])) for r in adds] == [(0, 10_000), (10_000, 10_000), (20_000, 5_001)]
    assert [line for r in adds for line in r["lines"]] == lines
    assert store.ledger.lines == lines


# -- compaction: snapshots and journal generations -------------------------------------------------------


def compacting(tmp_path: Path, lines: list[str], compact_bytes: int = 600) -> Store:
    workdir = WorkDir(tmp_path / "wd")
    workdir.prepare()
    store = Store(workdir, WorkLock(workdir.root / "lock", "flock"), compact_bytes=compact_bytes)
    store.open(task_list(tmp_path, lines), Identity.of_this_process(), task_list="tasks.txt")
    return store


def replayed(workdir: WorkDir) -> Ledger:
    """The ledger of every record ever appended: the history's generations, then the journal."""
    ledger = Ledger()
    for path in [*sorted(workdir.history.glob("journal.*.jsonl"), key=lambda p: int(p.name.split(".")[1])),
                 workdir.journal]:
        ledger.apply_all(json.loads(line) for line in path.read_bytes().splitlines())
    return ledger


def same_state(one: Ledger, two: Ledger) -> None:
    assert list(one.lines) == list(two.lines) and one.status == two.status and one.counts == two.counts
    assert one.owner == two.owner and one.changes == two.changes and one.attrs == two.attrs
    def farmers(ledger: Ledger) -> dict[str, tuple[set[int], bool]]:
        return {fid: (info.held, info.gone) for fid, info in ledger.farmers.items()}

    assert farmers(one) == farmers(two)


def test_a_long_journal_is_compacted_and_a_new_farmer_starts_from_the_snapshot(tmp_path: Path) -> None:
    lines = [f"echo {i}" for i in range(30)]
    store = compacting(tmp_path, lines)
    for task in range(30):
        store.sync([ended(store, task - 1, rec.FINISHED)] if task else [], want=1)
    wd = store.workdir
    generation = store.journal.generation
    assert generation >= 3, "several compactions"
    assert sorted(p.name for p in wd.root.glob("snapshot.*")) == [f"snapshot.{generation}"]
    archived = sorted(p.name for p in wd.history.glob("journal.*"))
    assert archived == sorted(f"journal.{g}.jsonl" for g in range(generation))
    assert wd.journal.stat().st_size < 1000
    same_state(store.ledger, replayed(wd))
    from mpifarmer.tasklog import task_count

    assert task_count(wd) == 30, "mpifarmer log knows the tasks of a compacted journal (from the snapshot)"
    again = compacting(tmp_path, lines, compact_bytes=1 << 30)
    assert again.journal.generation == generation
    same_state(again.ledger, replayed(wd))
    assert again.ledger.owner == {29: store.fid} and again.ledger.claim(again.fid, 5) is None
    store.close([ended(store, 29, rec.FINISHED)])
    events = json.loads(wd.timeline.read_text())["traceEvents"]
    assert sorted(e["args"]["id"] for e in events if e["ph"] == "X") == list(range(30)), "runs of every generation"
    assert [e["args"]["name"] for e in events if e["name"] == "thread_name"] == ["slot 0"]
    # each compacted generation's events are made once, and copied from then on
    parts = {path: path.stat().st_ino for path in wd.history.glob("timeline.*.part")}
    assert len(parts) == store.journal.generation
    from mpifarmer.store.views import write_timeline

    write_timeline(wd)
    assert {path: path.stat().st_ino for path in wd.history.glob("timeline.*.part")} == parts
    assert json.loads(wd.timeline.read_text())["traceEvents"] == events


def test_a_farmer_whose_offset_is_in_a_compacted_journal_reads_on_from_the_snapshot(tmp_path: Path) -> None:
    lines = [f"echo {i}" for i in range(40)]
    a = compacting(tmp_path, lines, compact_bytes=1 << 30)
    b = compacting(tmp_path, lines, compact_bytes=1 << 30)
    mine_a, mine_b = a.sync([], want=3).claimed, b.sync([], want=3).claimed
    a.compact_bytes = 300
    a.sync([ended(a, task, rec.FINISHED) for task in mine_a], want=3)
    assert a.journal.generation >= 1 and b.journal.generation == 0
    result = b.sync([ended(b, task, rec.FINISHED) for task in mine_b], want=3)
    assert b.journal.generation == a.journal.generation
    assert not set(result.claimed) & set(a.ledger.owner), "no task claimed twice"
    a.sync([])
    same_state(a.ledger, b.ledger)
    same_state(a.ledger, replayed(a.workdir))
    assert a.ledger.count(Status.FINISHED) == 6


def test_a_damaged_snapshot_is_rebuilt_from_the_history(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lines = [f"echo {i}" for i in range(10)]
    store = compacting(tmp_path, lines)
    for task in range(10):
        store.sync([ended(store, task - 1, rec.FINISHED)] if task else [], want=1)
    snapshot = store.workdir.snapshot(store.journal.generation)
    data = bytearray(snapshot.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the task states
    snapshot.write_bytes(bytes(data))
    again = compacting(tmp_path, lines, compact_bytes=1 << 30)
    assert "damaged" in caplog.text and "rebuilding" in caplog.text
    same_state(again.ledger, replayed(store.workdir))
    assert again.ledger.count(Status.FINISHED) == 9


def test_a_compaction_that_cannot_write_keeps_the_journal_and_the_farm_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from mpifarmer.store import store as module

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "write_snapshot", full)
    lines = [f"echo {i}" for i in range(12)]
    store = compacting(tmp_path, lines)
    for task in range(12):
        store.sync([ended(store, task - 1, rec.FINISHED)] if task else [], want=1)
    assert "could not compact" in caplog.text and store.journal.generation == 0
    assert caplog.text.count("could not compact") < 6, "not tried again at every sync"
    store.close([ended(store, 11, rec.FINISHED)])
    same_state(store.ledger, replayed(store.workdir))
    assert store.ledger.count(Status.FINISHED) == 12


def test_a_view_that_cannot_be_appended_to_does_not_fail_the_recorded_end(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal append is what records an end; a full disk hitting the view append after it must
    not make the farmer think the end was not recorded (it would record it again: finished twice)."""
    from mpifarmer.store import store as module

    store = opened(tmp_path, ["a", "b"])
    store.sync([], want=2)

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module, "append_lines", full)
    store.sync([ended(store, 0, rec.FINISHED)])
    store.sync([ended(store, 1, rec.FINISHED)])
    assert [r["id"] for r in journal(store) if r["e"] == "end"] == [0, 1]
    assert caplog.text.count("cannot add to the views") == 1
    monkeypatch.undo()
    store.close([])
    assert store.workdir.finished.read_text() == "0 a\n1 b\n"


def test_a_long_list_is_added_in_several_appends_and_a_kill_between_them_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mpifarmer.store import store as module

    monkeypatch.setattr(module, "ADD_LINES", 3)
    monkeypatch.setattr(module, "ADDS_PER_APPEND", 2)
    lines = [f"echo {i}" for i in range(20)]
    workdir = WorkDir(tmp_path / "wd")
    workdir.prepare()
    workdir.finished.write_text("1 echo 1\n")  # left by PyTaskFarmer: to be taken over
    calls = []

    def killed_at_the_second(self: Journal, records: list[dict[str, Any]]) -> None:
        calls.append(len(records))
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")  # nothing of this append is written
        original(self, records)

    original = Journal.append
    monkeypatch.setattr(Journal, "append", killed_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        Store(workdir, WorkLock(workdir.root / "lock", "flock")).open(
            task_list(tmp_path, lines), Identity.of_this_process(), task_list="tasks.txt")
    assert calls == [2, 2] and [r["first"] for r in journal_of(workdir)] == [0, 3]
    monkeypatch.setattr(Journal, "append", original)
    store = Store(workdir, WorkLock(workdir.root / "lock", "flock"))
    store.open(task_list(tmp_path, lines), Identity.of_this_process(), task_list="tasks.txt")
    assert list(store.ledger.lines) == lines
    assert store.ledger.status[1] == Status.FINISHED, "PyTaskFarmer's finished tasks still taken over"
    assert [r["first"] for r in journal_of(workdir) if r["e"] == "add"] == [0, 3, 6, 9, 12, 15, 18]


def journal_of(workdir: WorkDir) -> list[dict[str, Any]]:
    return Journal(workdir.journal).read_new()
