"""The onlooker's replay: the same ledger as a farmer's, from the snapshot and the live journal,
across compactions; per-farmer facts the ledger keeps for status; the history's tail."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mpifarmer.errors import WorkDirError
from mpifarmer.observe import tail
from mpifarmer.observe.state import FarmReader, replay_lines
from mpifarmer.observe.tail import count_ends_after, failed_runs, record_time
from mpifarmer.scheduling import records as rec
from mpifarmer.scheduling.ledger import Ledger
from mpifarmer.store.journal import Journal
from mpifarmer.store.locking import WorkLock
from mpifarmer.store.snapshot import read_snapshot, write_snapshot
from mpifarmer.store.store import Identity, Store
from mpifarmer.store.workdir import WorkDir
from mpifarmer.tasklists.reader import read_task_lines

HELLO = {"host": "h", "boot": "b", "pid": 1, "ranks": 2, "slots": 4}


def end(fid: str, task: int, st: str, t1: float, **extra: Any) -> dict[str, Any]:
    return rec.end(fid, task, st=st, rc=0 if st == rec.FINISHED else 3, sig=None, t0=t1 - 1.0, t1=t1, host="h",
                   rank=1, slot=2, **extra)


def every_kind() -> list[dict[str, Any]]:
    """A journal with every record kind, retries, a farmer found dead, one that left, one still on."""
    return [
        rec.add(0, [f"task {i}" for i in range(8)], {2: {"name": "two"}}),
        rec.hello("A", HELLO, 1.0), rec.hello("B", HELLO, 2.0), rec.hello("C", HELLO, 3.0),
        rec.claim("A", [0, 1, 2]), rec.claim("B", [3, 4]), rec.claim("C", [5]),
        rec.start("A", 0, pid=10, pst=None, host="h", rank=0, slot=0, t=4.0),
        rec.start("A", 1, pid=11, pst=None, host="h", rank=1, slot=0, t=4.5),
        end("A", 0, rec.FINISHED, 5.0), end("A", 1, rec.RETRYING, 6.0, att=1, at=7.0),
        end("A", 2, rec.FAILED, 6.5, att=1), rec.release("A", []),
        rec.start("B", 3, pid=12, pst=None, host="h", rank=0, slot=1, t=7.0),
        end("B", 3, rec.INTERRUPTED, 7.5), rec.release("B", [4]),
        rec.dead("B", "A", "its process is gone", 8.0),
        rec.claim("A", [1, 3]), end("A", 1, rec.FINISHED, 9.0), rec.retry("A", [2]),
        rec.claim("A", [2]), end("A", 2, rec.FAILED, 9.5, att=1), rec.bye("A", 10.0),
        rec.start("C", 5, pid=13, pst=None, host="h", rank=1, slot=3, t=10.5),
    ]


def lines_of(records: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(record, separators=(",", ":")).encode() for record in records]


def facts(ledger: Ledger) -> dict[str, Any]:
    """Everything a ledger holds, comparable (start records by their fields, wherever they came from)."""
    state, buffers = ledger.state()
    state["started"] = {task: {k: v for k, v in json.loads(r["raw"]).items()} if "raw" in r else r
                        for task, r in state["started"].items()}
    return {"facts": state, "buffers": [bytes(b) for b in buffers], "counts": ledger.counts,
            "owner": ledger.owner}


def test_the_fast_replay_builds_the_same_ledger_as_the_farmers_replay() -> None:
    records = every_kind()
    farmers = Ledger()
    farmers.apply_all(records)
    ours = Ledger()
    done: list[float] = []
    failures: dict[int, bytes] = {}
    replay_lines(ours, lines_of(records), done, failures)
    assert facts(ours) == facts(farmers)
    assert done == [5.0, 6.5, 9.0, 9.5], "finished and failed ends, not retrying or interrupted ones"
    assert sorted(failures) == [2] and json.loads(failures[2])["t1"] == 9.5, "the latest failed run"


def test_lines_in_another_key_order_or_torn_read_as_a_farmer_reads_them() -> None:
    records = every_kind()
    lines = lines_of(records)
    shuffled = {"t1": 5.0, "st": "finished", "id": 0, "e": "end", "f": "A", "t0": 4.0, "rc": 0}
    index = lines.index(next(line for line in lines if b'"id":0,"st":"finished"' in line))
    lines[index] = json.dumps(shuffled).encode()  # another writer's order: parsed as JSON
    lines.insert(index, lines[index][:-7] + b" torn")  # a torn record: skipped, as everyone skips it
    lines.insert(0, b"")
    ours, farmers = Ledger(), Ledger()
    done: list[float] = []
    replay_lines(ours, lines, done, {})
    farmers.apply_all(records)
    assert facts(ours) == facts(farmers)
    assert done == [5.0, 6.5, 9.0, 9.5]


def test_the_ledger_keeps_each_farmers_shape_results_and_how_it_left() -> None:
    ledger = Ledger()
    ledger.apply_all(every_kind())
    a, b, c = (ledger.farmers[f] for f in "ABC")
    assert (a.ranks, a.slots, a.done, a.gone_by, a.gone_at) == (2, 4, 4, "bye", 10.0)
    assert (b.done, b.gone_by, b.gone_at) == (0, "dead", 8.0)
    assert (c.done, c.gone, c.gone_by, c.held) == (0, False, None, {5})
    again = Ledger.from_state(*ledger.state())
    assert facts(again) == facts(ledger)


def test_a_snapshot_from_before_the_counts_reads_with_unknown_counts(tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.apply_all(every_kind())
    state, buffers = ledger.state()
    for farmer in state["farmers"]:
        for key in ("ranks", "slots", "done", "gone_by", "gone_at"):
            del farmer[key]
    old = Ledger.from_state(state, buffers)
    assert [(f.ranks, f.slots, f.done, f.gone_by) for f in old.farmers.values()] == [(1, None, None, None)] * 3
    old.apply(rec.hello("D", HELLO, 11.0))
    old.apply(rec.claim("D", [4]))
    old.apply(end("D", 4, rec.FINISHED, 12.0))
    old.apply(end("C", 5, rec.FINISHED, 12.0))
    assert old.farmers["D"].done == 1 and old.farmers["C"].done is None, "unknown stays unknown"


def real_store(tmp_path: Path, lines: list[str], compact_bytes: int) -> Store:
    workdir = WorkDir(tmp_path / "wd")
    workdir.prepare()
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("".join(f"{line}\n" for line in lines))
    store = Store(workdir, WorkLock(workdir.root / "lock", "flock"), compact_bytes=compact_bytes)
    store.open(read_task_lines(tasks), Identity.of_this_process(slots=3), task_list=str(tasks))
    return store


def run_some(store: Store, count: int, t: float, fail: set[int] = frozenset()) -> None:
    result = store.sync([], want=count)
    assert result is not None
    out = []
    for task in result.claimed:
        out.append(rec.start(store.fid, task, pid=1, pst=None, host="h", rank=0, slot=0, t=t))
        st = rec.FAILED if task in fail else rec.FINISHED
        out.append(rec.end(store.fid, task, st=st, rc=1 if task in fail else 0, sig=None, t0=t, t1=t + 0.5,
                           host="h", rank=0, slot=0, why="exited", att=1 if task in fail else None))
    assert store.sync(out) is not None


def test_the_reader_follows_a_farmer_across_compactions(tmp_path: Path) -> None:
    store = real_store(tmp_path, [f"echo {i}" for i in range(400)], compact_bytes=6000)
    reader = FarmReader(store.workdir)
    reader.refresh()
    assert reader.ledger.pending == 400
    for round_ in range(10):
        run_some(store, 30, 100.0 + round_, fail={7, 95})
        reader.refresh()
        assert facts(reader.ledger)["buffers"] == facts(store.ledger)["buffers"]
        assert reader.ledger.counts == store.ledger.counts
        assert reader.generation == store.journal.generation
    assert store.journal.generation >= 3, "compactions happened under the reader"
    assert reader.ledger.farmers[store.fid].slots == 3
    assert reader.ledger.farmers[store.fid].done == 300


def test_the_reader_reads_a_damaged_snapshot_from_the_history(tmp_path: Path) -> None:
    store = real_store(tmp_path, [f"echo {i}" for i in range(100)], compact_bytes=3000)
    for round_ in range(4):
        run_some(store, 10, 50.0 + round_)
    generation = store.journal.generation
    assert generation >= 1
    snapshot = store.workdir.snapshot(generation)
    snapshot.write_bytes(snapshot.read_bytes()[:-10] + b"0123456789")
    reader = FarmReader(store.workdir)
    reader.refresh()
    assert reader.ledger.counts == store.ledger.counts


def test_a_directory_without_a_journal_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(WorkDirError, match="is not a work directory"):
        FarmReader(WorkDir(tmp_path / "nothing")).refresh()


def test_the_reader_writes_nothing(tmp_path: Path) -> None:
    store = real_store(tmp_path, [f"echo {i}" for i in range(50)], compact_bytes=2000)
    run_some(store, 20, 10.0)
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in store.workdir.root.rglob("*")}
    reader = FarmReader(store.workdir)
    reader.refresh()
    reader.refresh()
    reader.close()
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in store.workdir.root.rglob("*")}
    assert after == before


# -- the history's tail ------------------------------------------------------------------------------


def history_file(path: Path, times: list[float], st: str = rec.FINISHED, jitter: float = 0.0) -> Path:
    """A compacted generation: a claim every 10 ends, ends at ``times`` (appended out of order by up
    to ``jitter`` seconds), a start and a hello for other timed kinds."""
    records: list[dict[str, Any]] = [rec.hello("A", HELLO, times[0] - 5)]
    for i, t in enumerate(times):
        if i % 10 == 0:
            records.append(rec.claim("A", list(range(i, i + 10))))
        records.append(rec.start("A", i, pid=1, pst=None, host="h", rank=0, slot=0, t=t - 1))
        t1 = t - jitter if i % 2 else t
        records.append(end("A", i, st if i % 7 else rec.FAILED, t1))
    path.write_bytes(b'{"e":"journal","v":1,"gen":3}\n' + b"\n".join(lines_of(records)) + b"\n")
    return path


def test_record_times_come_from_the_timed_kinds_only() -> None:
    assert record_time(lines_of([end("A", 1, rec.FINISHED, 12.5)])[0]) == 12.5
    assert record_time(lines_of([rec.hello("A", HELLO, 3.0)])[0]) == 3.0
    assert record_time(lines_of([rec.claim("A", [1])])[0]) is None
    assert record_time(lines_of([end("A", 1, rec.FINISHED, 12.5)])[0][:-3] + b" torn") is None


@pytest.mark.parametrize(("jitter", "chunk"), [(0.0, 4 << 20), (3.0, 4 << 20), (0.0, 4099)])
def test_ends_after_each_moment_are_counted_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    jitter: float, chunk: int) -> None:
    monkeypatch.setattr(tail, "_CHUNK", chunk)  # marks cut across reads are counted once
    times = [1000.0 + 0.25 * i for i in range(20_000)]  # 5000 s of ends, 4 a second
    path = history_file(tmp_path / "journal.3.jsonl", times, jitter=jitter)
    assert path.stat().st_size > 40 << 16, "far larger than the parsed region: the byte count does most"
    ends = [t - jitter if i % 2 else t for i, t in enumerate(times)]
    moments = [900.0, 1000.0, 2000.0, 3333.3, 5999.0, 5999.75, 7000.0]
    counts = count_ends_after(path, moments, cap=1 << 16)
    assert counts == {m: sum(1 for t in ends if t > m) for m in moments}


def test_the_tail_of_a_missing_or_old_generation_counts_nothing(tmp_path: Path) -> None:
    assert count_ends_after(tmp_path / "journal.9.jsonl", [1.0]) == {1.0: 0}
    path = history_file(tmp_path / "journal.3.jsonl", [100.0 + i for i in range(50)])
    assert count_ends_after(path, [500.0, 1000.0]) == {500.0: 0, 1000.0: 0}
    assert count_ends_after(path, [0.0]) == {0.0: 50}


def test_failed_runs_are_found_by_their_bytes_latest_per_task(tmp_path: Path) -> None:
    path = history_file(tmp_path / "journal.3.jsonl", [100.0 + i for i in range(50)])
    with path.open("ab") as stream:
        stream.write(lines_of([end("A", 14, rec.FAILED, 500.0, att=2)])[0] + b"\n")
    found = failed_runs(path, {0, 14, 15})
    assert sorted(found) == [0, 14]
    assert found[14]["t1"] == 500.0 and found[14]["att"] == 2
    assert sorted(failed_runs(path)) == [i for i in range(50) if i % 7 == 0]
    assert failed_runs(tmp_path / "none", {1}) == {}


def test_a_snapshot_written_by_a_farmer_reads_back_in_the_reader(tmp_path: Path) -> None:
    """The reader's base ledger is the farmers' own snapshot format, not a copy of it."""
    ledger = Ledger()
    ledger.apply_all(every_kind())
    workdir = WorkDir(tmp_path / "wd")
    workdir.prepare()
    write_snapshot(workdir.snapshot(1), ledger, 1)
    Journal(workdir.journal).new_generation(1)
    reader = FarmReader(workdir)
    reader.refresh()
    assert facts(reader.ledger) == facts(read_snapshot(workdir.snapshot(1), 1))
    os.unlink(workdir.snapshot(1))
    with pytest.raises(WorkDirError, match="compacted again"):
        FarmReader(workdir).refresh()
