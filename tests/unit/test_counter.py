"""The timeline's running-task counter track: absolute values from records in journal order."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from mpifarmer.scheduling import records as rec
from mpifarmer.store.counter import LATENESS, RunningCounter, process_id
from mpifarmer.store.views import timeline_events, write_timeline
from mpifarmer.store.workdir import WorkDir

S = 1_000_000  # microseconds per second


def end(task: int, t0: float, t1: float, *, fid: str = "A", host: str = "n1", rank: int = 0, slot: int = 0,
        st: str = rec.FINISHED, **extra: Any) -> dict[str, Any]:
    return rec.end(fid, task, st=st, rc=0 if st == rec.FINISHED else 1, sig=None, t0=t0, t1=t1, host=host,
                   rank=rank, slot=slot, **extra)


def start(task: int, t: float, *, fid: str = "A", host: str = "n1", rank: int = 0, slot: int = 0) -> dict[str, Any]:
    return rec.start(fid, task, pid=100 + task, pst=None, host=host, rank=rank, slot=slot, t=t)


def counts(events: list[dict[str, Any]], host: str = "n1", rank: int = 0) -> list[tuple[int, int]]:
    """(ts, value) of the counter events of one host/rank, in time order."""
    pid = process_id(host, rank)
    return sorted((e["ts"], e["args"]["tasks"]) for e in events if e["ph"] == "C" and e["pid"] == pid)


def running_at(runs: list[tuple[int, int]], ts: int) -> int:
    return sum(1 for t0, t1 in runs if t0 <= ts < t1)


def test_overlapping_runs_give_absolute_counts_at_every_start_and_end() -> None:
    # journal order is end order: the short run B ends first although A started first
    events = timeline_events([end(1, 2.0, 3.0, slot=1), end(0, 1.0, 4.0), end(2, 3.5, 5.0, slot=1)])
    assert counts(events) == [(1 * S, 1), (2 * S, 2), (3 * S, 1), (int(3.5 * S), 2), (4 * S, 1), (5 * S, 0)]


def test_each_host_and_rank_has_its_own_track() -> None:
    events = timeline_events([end(0, 1.0, 2.0), end(1, 1.0, 3.0, rank=1), end(2, 1.5, 2.5, host="n2")])
    assert counts(events) == [(1 * S, 1), (2 * S, 0)]
    assert counts(events, rank=1) == [(1 * S, 1), (3 * S, 0)]
    assert counts(events, host="n2") == [(int(1.5 * S), 1), (int(2.5 * S), 0)]


def test_the_counter_always_equals_the_complete_events_running_then() -> None:
    """Runs ending in shuffled order (within the lateness allowed), on 3 slots: at each moment the
    counter says as many as the complete events overlapping it."""
    rng = random.Random(7)
    records, free = [], [0.0, 0.0, 0.0]
    for task in range(300):
        slot = min(range(3), key=free.__getitem__)
        t0 = free[slot] + rng.choice([0.0, 0.01, 0.3])
        free[slot] = t1 = t0 + rng.uniform(0.001, 2.0)
        records.append(end(task, t0, t1, slot=slot))
    records.sort(key=lambda r: r["t1"] + rng.uniform(0, LATENESS / 2))  # written a little out of order
    events = timeline_events(records)
    runs = [(e["ts"], e["ts"] + e["dur"]) for e in events if e["ph"] == "X"]
    track = counts(events)
    assert len(track) > 300
    for ts, value in track:
        assert value == running_at(runs, ts), ts
    assert track[-1][1] == 0


def test_a_long_run_counts_from_its_start_record_and_short_runs_ending_meanwhile_do_not_hide_it() -> None:
    counter = RunningCounter()
    counter.feed(start(0, 10.0))
    emitted = []
    for task in range(1, 30):  # short runs on another slot, one a second, while task 0 runs
        counter.feed(end(task, 10.0 + task, 10.5 + task, slot=1))
        emitted += counter.due()
    assert emitted, "changes older than the lateness are written as records come"
    assert all(e["ts"] <= (39.5 - LATENESS) * S for e in emitted)
    counter.feed(end(0, 10.0, 60.0))
    emitted += counter.flush()
    track = counts(emitted)
    assert track[0] == (10 * S, 1)
    assert (11 * S, 2) in track and (int(11.5 * S), 1) in track
    assert track[-1] == (60 * S, 0)
    assert all(value >= 1 for ts, value in track if ts < 60 * S)


def test_a_change_later_than_the_lateness_is_pulled_forward_and_the_track_stays_consistent() -> None:
    counter = RunningCounter()
    counter.feed(end(0, 1.0, 2.0))
    counter.feed(end(1, 20.0, 21.0))
    written = counter.due()
    assert counts(written) == [(1 * S, 1), (2 * S, 0)]  # 20 and 21 are within the lateness of 21
    counter.feed(end(2, 1.5, 3.0, slot=1))  # far too late: 1.5 .. 2 were written already
    counter.feed(end(3, 1.2, 1.8, slot=2))  # wholly before what was written: it nets to nothing
    track = counts(written + counter.flush())
    assert track == [(1 * S, 1), (2 * S, 0), (2 * S + 1, 1), (3 * S, 0), (20 * S, 1), (21 * S, 0)]
    assert all(value >= 0 for _, value in track)


def test_a_farmer_that_left_or_died_ends_its_open_runs_at_that_record() -> None:
    events = timeline_events([start(0, 1.0), start(1, 2.0, fid="B", slot=1), rec.dead("A", "B", "gone", 7.0),
                              end(2, 3.0, 4.0, fid="B", slot=2), rec.bye("B", 9.0)])
    assert counts(events) == [(1 * S, 1), (2 * S, 2), (3 * S, 3), (4 * S, 2), (7 * S, 1), (9 * S, 0)]


def test_a_run_still_running_at_the_end_stays_counted() -> None:
    events = timeline_events([start(0, 1.0), end(1, 1.0, 2.0, slot=1)])
    assert counts(events) == [(1 * S, 2), (2 * S, 1)]


def test_the_counters_state_carries_a_generation_into_the_next() -> None:
    records = [start(0, 1.0), end(1, 1.0, 2.0, slot=1), end(2, 2.5, 3.0, slot=1), end(0, 1.0, 9.0),
               end(3, 8.0, 10.0, slot=1)]
    whole = RunningCounter()
    for record in records:
        whole.feed(record)
    expected = counts(whole.flush())
    first = RunningCounter()
    for record in records[:3]:
        first.feed(record)
    written = first.due()
    state = json.loads(json.dumps(first.state()))  # as the keys file keeps it
    second = RunningCounter(state)
    for record in records[3:]:
        second.feed(record)
    assert counts(written + second.due() + second.flush()) == expected


# -- through write_timeline: one part per compacted generation --


def journal_generation(path: Path, generation: int, records: list[dict[str, Any]]) -> None:
    header = [json.dumps({"e": "journal", "v": 1, "gen": generation}, separators=(",", ":"))] if generation else []
    path.write_text("\n".join(header + [json.dumps(r, separators=(",", ":")) for r in records]) + "\n")


def compacted_workdir(tmp_path: Path) -> WorkDir:
    """Three generations: a long run starts in 0 and ends in 2; short runs end in every one (at 2 s one
    ends as the next starts: the count does not change, and no event says it)."""
    wd = WorkDir(tmp_path / "wd")
    wd.prepare()
    wd.history.mkdir()
    hello = rec.hello("A", {"host": "n1", "slots": 2}, 0.0)
    journal_generation(wd.old_journal(0), 0, [rec.add(0, ["t"] * 6), hello, start(0, 1.0),
                                              end(1, 1.0, 2.0, slot=1)])
    journal_generation(wd.old_journal(1), 1, [end(2, 2.0, 3.0, slot=1), end(3, 30.0, 31.0, slot=1)])
    journal_generation(wd.journal, 2, [end(0, 1.0, 40.0), end(4, 39.0, 41.0, slot=1), rec.bye("A", 42.0)])
    return wd


EXPECTED = [(1 * S, 2), (3 * S, 1), (30 * S, 2), (31 * S, 1), (39 * S, 2), (40 * S, 1), (41 * S, 0)]


def trace(wd: WorkDir) -> list[dict[str, Any]]:
    return json.loads(wd.timeline.read_text())["traceEvents"]


def test_runs_that_cross_compacted_generations_are_counted_exactly(tmp_path: Path) -> None:
    wd = compacted_workdir(tmp_path)
    write_timeline(wd)
    events = trace(wd)
    assert counts(events) == EXPECTED
    assert sorted(e["args"]["id"] for e in events if e["ph"] == "X") == [0, 1, 2, 3, 4]
    parts = sorted(path.name for path in wd.history.glob("timeline.*"))
    assert parts == [f"timeline.{g}.{kind}" for g in (0, 1) for kind in ("counter", "keys", "part")]
    state = json.loads((wd.history / "timeline.0.counter").read_text())
    assert state["open"] == [["A", 0, process_id("n1", 0), 1 * S]], "the long run is carried"
    write_timeline(wd)  # from the cached parts: the same
    assert trace(wd) == events


def test_a_part_of_an_older_mpifarmer_is_made_again_with_the_counter(tmp_path: Path) -> None:
    wd = compacted_workdir(tmp_path)
    write_timeline(wd)
    (wd.history / "timeline.0.counter").unlink()  # as an older mpifarmer left it: part and keys alone
    (wd.history / "timeline.0.part").write_text("")
    write_timeline(wd)
    assert counts(trace(wd)) == EXPECTED


def test_complete_events_carry_exit_code_reason_and_attempt(tmp_path: Path) -> None:
    events = timeline_events([
        end(0, 1.0, 2.0, why="exited"),  # finished at the first attempt: recorded without att
        end(1, 1.0, 2.0, st=rec.RETRYING, why="exited", att=1),
        end(1, 2.0, 3.0, why="exited", att=2),
        end(2, 1.0, 2.0, st=rec.INTERRUPTED, why="drained")])
    args = [e["args"] for e in events if e["ph"] == "X"]
    assert args == [
        {"id": 0, "status": "finished", "rc": 0, "reason": "exited", "attempt": 1},
        {"id": 1, "status": "retrying", "rc": 1, "reason": "exited", "attempt": 1},
        {"id": 1, "status": "finished", "rc": 0, "reason": "exited", "attempt": 2},
        {"id": 2, "status": "interrupted", "rc": 1, "reason": "drained"}]  # no attempt: it was none


def test_at_most_max_waiting_changes_wait_and_in_order_records_stay_exact(monkeypatch) -> None:
    from mpifarmer.store import counter as module

    monkeypatch.setattr(module, "MAX_WAITING", 10)
    counter = RunningCounter()
    records = [end(task, task * 0.001, task * 0.001 + 0.0015, slot=task % 2) for task in range(200)]  # 1 ms apart
    written = []
    for record in records:
        counter.feed(record)
        written += counter.due()
        assert len(counter.state()["tracks"][str(process_id("n1", 0))][3]) <= 10 + 1
    events = timeline_events(records)
    runs = [(e["ts"], e["ts"] + e["dur"]) for e in events if e["ph"] == "X"]
    track = counts(written + counter.flush())
    assert track == counts(events)
    assert all(value == running_at(runs, ts) for ts, value in track)
