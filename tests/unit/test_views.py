"""Views of the ledger: the ID LINE files and the Perfetto timeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mpifarmer.scheduling import records as rec
from mpifarmer.scheduling.ledger import Ledger
from mpifarmer.store.journal import Journal
from mpifarmer.store.views import append_lines, write_timeline, write_views
from mpifarmer.store.workdir import WorkDir


def workdir(tmp_path: Path) -> WorkDir:
    wd = WorkDir(tmp_path / "wd")
    wd.prepare()
    return wd


def end(task: int, st: str, t0: float, t1: float, *, host: str = "n1", rank: int = 0, slot: int = 0,
        sig: int | None = None) -> dict[str, Any]:
    return rec.end("A", task, st=st, rc=0 if st == rec.FINISHED else 1, sig=sig, t0=t0, t1=t1, host=host,
                   rank=rank, slot=slot)


def ledger_of(wd: WorkDir, lines: list[str], *records: dict[str, Any]) -> Ledger:
    """A journal in ``wd`` of these records (the timeline is read from it), and its ledger."""
    return extend(wd, Ledger(), rec.add(0, lines), rec.hello("A", {"host": "n1"}, 0.0), *records)


def extend(wd: WorkDir, ledger: Ledger, *records: dict[str, Any]) -> Ledger:
    Journal(wd.journal).append(list(records))
    ledger.apply_all(records)
    return ledger


def timeline(wd: WorkDir) -> list[dict[str, Any]]:
    return json.loads(wd.timeline.read_text())["traceEvents"]


def complete_events(wd: WorkDir) -> list[dict[str, Any]]:
    return [event for event in timeline(wd) if event["ph"] == "X"]


def test_each_task_is_listed_in_the_file_of_its_state(tmp_path: Path) -> None:
    wd = workdir(tmp_path)
    lines = ["echo zero", "echo one", "echo 'two'", "echo three", "echo four"]
    ledger = ledger_of(wd, lines, rec.claim("A", [0, 1, 2, 3]), end(0, rec.FINISHED, 1.0, 2.0),
                       end(2, rec.FAILED, 1.0, 2.0))
    write_views(ledger, wd)
    assert wd.toprocess.read_text() == "4 echo four\n"
    assert wd.running.read_text() == "1 echo one\n3 echo three\n"
    assert wd.finished.read_text() == "0 echo zero\n"
    assert wd.failed.read_text() == "2 echo 'two'\n"


def test_views_are_rewritten_whole(tmp_path: Path) -> None:
    wd = workdir(tmp_path)
    ledger = ledger_of(wd, ["a", "b"])
    write_views(ledger, wd)
    assert wd.toprocess.read_text() == "0 a\n1 b\n"
    extend(wd, ledger, rec.claim("A", [0, 1]), end(0, rec.FINISHED, 1.0, 2.0), end(1, rec.FINISHED, 1.0, 2.0))
    write_views(ledger, wd)
    assert wd.toprocess.read_text() == "" and wd.running.read_text() == ""
    assert wd.finished.read_text() == "0 a\n1 b\n"
    assert not list(wd.root.glob(".*.tmp"))


def test_timeline_has_one_complete_event_per_end_record(tmp_path: Path) -> None:
    wd = workdir(tmp_path)
    ledger = ledger_of(wd, ["a", "b", "c"], rec.claim("A", [0, 1, 2]),
                       end(0, rec.FAILED, 10.0, 10.5, slot=1),
                       end(0, rec.FINISHED, 11.0, 13.25, slot=0),  # a second run of task 0
                       end(1, rec.INTERRUPTED, 12.0, 12.0, slot=1, sig=15))
    write_views(ledger, wd)
    events = complete_events(wd)
    assert len(events) == 3
    assert [(e["args"]["id"], e["args"]["status"]) for e in events] == [(0, "failed"), (0, "finished"),
                                                                        (1, "interrupted")]
    assert [(e["ts"], e["dur"], e["tid"]) for e in events] == [(10_000_000, 500_000, 1), (11_000_000, 2_250_000, 0),
                                                               (12_000_000, 0, 1)]
    assert events[2]["args"]["signal"] == 15 and "signal" not in events[0]["args"]


def test_timeline_has_one_process_per_host_and_rank_and_one_thread_per_slot(tmp_path: Path) -> None:
    wd = workdir(tmp_path)
    runs = [end(0, rec.FINISHED, 1.0, 2.0, host="n1", rank=0, slot=0),
            end(1, rec.FINISHED, 1.0, 2.0, host="n2", rank=1, slot=0),
            end(2, rec.FINISHED, 1.0, 2.0, host="n1", rank=0, slot=2),
            end(3, rec.FINISHED, 1.0, 2.0, host="n1", rank=2, slot=0)]
    write_views(ledger_of(wd, ["a", "b", "c", "d"], rec.claim("A", [0, 1, 2, 3]), *runs), wd)
    events = timeline(wd)
    pid_of = {e["args"]["name"]: e["pid"] for e in events if e["name"] == "process_name"}
    assert sorted(pid_of) == ["n1 rank 0", "n1 rank 2", "n2 rank 1"]
    assert len(set(pid_of.values())) == 3
    placed = {e["args"]["id"]: (e["pid"], e["tid"]) for e in events if e["ph"] == "X"}
    assert placed == {0: (pid_of["n1 rank 0"], 0), 1: (pid_of["n2 rank 1"], 0), 2: (pid_of["n1 rank 0"], 2),
                      3: (pid_of["n1 rank 2"], 0)}
    threads = {(e["pid"], e["tid"]) for e in events if e["name"] == "thread_name"}
    assert threads == set(placed.values())


def test_timeline_of_no_runs_is_valid_and_empty(tmp_path: Path) -> None:
    wd = workdir(tmp_path)
    write_views(ledger_of(wd, ["a"]), wd)
    assert json.loads(wd.timeline.read_text()) == {"traceEvents": [], "displayTimeUnit": "ms"}


@pytest.mark.parametrize("line", ['say "hi" \\ there', "tab\there", "ünï ✓"])
def test_timeline_is_valid_json_whatever_the_task_lines(tmp_path: Path, line: str) -> None:
    wd = workdir(tmp_path)
    write_views(ledger_of(wd, [line], rec.claim("A", [0]), end(0, rec.FINISHED, 1.0, 2.0)), wd)
    assert len(complete_events(wd)) == 1
    assert wd.finished.read_text(encoding="utf-8") == f"0 {line}\n"


def test_the_timeline_is_read_from_the_journal_a_chunk_at_a_time(tmp_path: Path) -> None:
    wd = workdir(tmp_path)
    runs = [end(task, rec.FINISHED, 1.0 + task, 1.5 + task, slot=task % 3) for task in range(50)]
    ledger_of(wd, [f"t{task}" for task in range(50)], rec.claim("A", list(range(50))), *runs)
    with wd.journal.open("a") as stream:
        stream.write('{"e":"end","id":')  # a torn last record: left out
    write_timeline(wd, chunk=97)  # chunks end inside records
    events = complete_events(wd)
    assert [e["args"]["id"] for e in events] == list(range(50))
    assert {e["tid"] for e in events} == {0, 1, 2}
    assert [e["name"] for e in timeline(wd)].count("thread_name") == 3


def test_appended_rows_end_a_torn_row_first(tmp_path: Path) -> None:
    wd = workdir(tmp_path)
    append_lines(wd.finished, ["0 a\n"])
    with wd.finished.open("a") as stream:
        stream.write("1 b")  # a writer killed midway
    append_lines(wd.finished, ["2 c\n", "3 d\n"])
    append_lines(wd.finished, [])
    assert wd.finished.read_text() == "0 a\n1 b\n2 c\n3 d\n"
