"""The report from crafted work directories: which runs and pools count, and how."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from mpifarmer.errors import UsageError, WorkDirError
from mpifarmer.observe.report import make_report, render_json, render_text, write_report
from mpifarmer.observe.runs import read_farm
from mpifarmer.scheduling import records as rec
from mpifarmer.store.journal import Journal
from mpifarmer.store.workdir import WorkDir


def workdir(tmp_path: Path, *records: dict[str, Any]) -> WorkDir:
    wd = WorkDir(tmp_path / "wd")
    wd.prepare()
    Journal(wd.journal).append(list(records))
    return wd


def hello(fid: str, t: float, *, host: str = "h", slots: int | None = 3, ranks: int = 1) -> dict[str, Any]:
    identity: dict[str, Any] = {"host": host, "ranks": ranks}
    if slots is not None:
        identity["slots"] = slots
    return rec.hello(fid, identity, t)


def end(task: int, t0: float, t1: float, *, fid: str = "A", st: str = rec.FINISHED, rc: int | None = 0,
        sig: int | None = None, host: str = "h", rank: int = 0, slot: int = 0, **extra: Any) -> dict[str, Any]:
    return rec.end(fid, task, st=st, rc=rc, sig=sig, t0=t0, t1=t1, host=host, rank=rank, slot=slot, **extra)


def figures(wd: WorkDir) -> dict[str, Any]:
    return render_json(make_report(read_farm(wd)))


def test_utilization_and_tail_of_one_farmer(tmp_path: Path) -> None:
    # 3 slots from 1 to 5: task 0 holds one for 4 s, task 1 another for 1 s: 5 of 12 slot-seconds
    wd = workdir(tmp_path, rec.add(0, ["a", "b"]), hello("A", 0.5), end(1, 1.0, 2.0, slot=1), end(0, 1.0, 5.0),
                 rec.bye("A", 6.0))
    found = figures(wd)
    assert (found["tasks"], found["finished"], found["failed"], found["left"]) == (2, 2, 0, 0)
    assert (found["first_start"], found["last_end"], found["wall_s"]) == (1.0, 5.0, 4.0)
    overall = found["utilization"]["overall"]
    assert (overall["busy_slot_s"], overall["offered_slot_s"], overall["utilization"]) == (5.0, 12.0, 5 / 12)
    assert found["utilization"]["places"] == [{"where": "h rank 0", "slots": 3, "runs": 2, "busy_slot_s": 5.0,
                                               "offered_slot_s": 12.0, "utilization": 5 / 12}]
    # the tail, 4.6 .. 5: one slot of 3 busy
    assert found["tail"]["window_s"] == pytest.approx(0.4) and found["tail"]["below_half_s"] == pytest.approx(0.4)
    assert found["durations"]["finished"] == {"count": 2, "min": 1.0, "median": 2.5, "p90": pytest.approx(3.7),
                                              "p99": pytest.approx(3.97), "max": 4.0}


def test_a_farmer_counts_only_while_it_was_there_and_a_task_takes_its_slots(tmp_path: Path) -> None:
    wd = workdir(tmp_path, rec.add(0, ["a", "b", "c"]), hello("A", 0.0, slots=2),
                 end(0, 0.0, 4.0, attrs={"resources": {"slots": 2}}),  # 8 slot-seconds
                 hello("B", 1.0, host="g", slots=4), end(1, 1.0, 2.0, fid="B", host="g"),
                 end(2, 1.0, 2.0, fid="B", host="g", slot=1), rec.bye("B", 3.0), rec.bye("A", 4.0))
    places = {row["where"]: row for row in figures(wd)["utilization"]["places"]}
    assert places["h rank 0"]["busy_slot_s"] == 8.0 and places["h rank 0"]["offered_slot_s"] == 8.0
    assert places["g rank 0"]["busy_slot_s"] == 2.0 and places["g rank 0"]["offered_slot_s"] == 8.0  # 1 .. 3
    assert figures(wd)["utilization"]["overall"]["utilization"] == 10 / 16


def test_every_rank_of_an_mpi_job_is_a_place_with_its_host_from_its_runs(tmp_path: Path) -> None:
    wd = workdir(tmp_path, rec.add(0, ["a", "b"]), hello("A", 0.0, host="n0", slots=2, ranks=3),
                 end(0, 0.0, 2.0, host="n0"), end(1, 0.0, 1.0, host="n1", rank=1), rec.bye("A", 2.0))
    places = {row["where"]: row for row in figures(wd)["utilization"]["places"]}
    assert sorted(places) == ["? rank 2", "n0 rank 0", "n1 rank 1"]
    assert places["n1 rank 1"] == {"where": "n1 rank 1", "slots": 2, "runs": 1, "busy_slot_s": 1.0,
                                   "offered_slot_s": 4.0, "utilization": 0.25}
    assert places["? rank 2"]["runs"] == 0 and places["? rank 2"]["offered_slot_s"] == 4.0
    assert figures(wd)["utilization"]["overall"]["slots"] == 6


def test_an_old_journal_without_slots_takes_the_highest_slot_used_and_says_so(tmp_path: Path) -> None:
    wd = workdir(tmp_path, rec.add(0, ["a", "b"]), hello("A", 0.0, slots=None), end(0, 0.0, 1.0),
                 end(1, 0.0, 2.0, slot=3))
    found = figures(wd)
    assert found["utilization"]["places"][0]["slots"] == 4
    assert found["utilization"]["overall"]["offered_slot_s"] == 8.0  # no bye: there until the last end
    assert any("highest slot" in note for note in found["notes"])


def test_outcomes_failures_and_retries(tmp_path: Path) -> None:
    wd = workdir(tmp_path, rec.add(0, ["a", "b", "c", "d"]), hello("A", 0.0),
                 end(0, 0.0, 1.0, st=rec.RETRYING, rc=3, why="exited", att=1),
                 end(0, 1.0, 2.0, st=rec.FINISHED, why="exited", att=2),
                 end(1, 0.0, 1.0, st=rec.RETRYING, rc=None, sig=9, why="signalled", att=1),
                 end(1, 1.0, 3.0, st=rec.FAILED, rc=None, sig=9, why="signalled", att=2),
                 end(2, 0.0, 5.0, st=rec.FAILED, rc=None, why="timed-out", att=1, sig=15),
                 end(3, 0.0, 0.5, st=rec.INTERRUPTED, rc=None, sig=15, why="drained"))
    found = figures(wd)
    assert (found["finished"], found["failed"], found["left"]) == (1, 2, 1)
    assert found["runs"] == {"finished": 1, "failed": 2, "retrying": 2, "interrupted": 1}
    assert found["retries"] == {"runs": 2, "tasks": 2, "finished_after": 1}
    assert found["failures"] == [{"code": "exit 3", "reason": "exited", "failed": 0, "retried": 1},
                                 {"code": "signal SIGKILL", "reason": "signalled", "failed": 1, "retried": 1},
                                 {"code": "signal SIGTERM", "reason": "timed-out", "failed": 1, "retried": 0}]
    assert found["durations"]["failed"]["count"] == 4  # failed and retried runs
    assert found["utilization"]["overall"]["busy_slot_s"] == 1 + 1 + 1 + 2 + 5 + 0.5  # every run held a slot
    text = render_text(make_report(read_farm(wd)))
    assert "signal SIGKILL   signalled    1 failed, 1 retried" in text
    assert "retries used: 2 runs, by 2 tasks (1 of them finished in the end)" in text


def test_retry_failed_makes_failed_tasks_left_again(tmp_path: Path) -> None:
    wd = workdir(tmp_path, rec.add(0, ["a"]), hello("A", 0.0), end(0, 0.0, 1.0, st=rec.FAILED, rc=1, att=1),
                 rec.retry("B", [0]))
    assert (figures(wd)["failed"], figures(wd)["left"]) == (0, 1)


def test_a_farm_with_no_run_ended_yet(tmp_path: Path) -> None:
    wd = workdir(tmp_path, rec.add(0, ["a"]), hello("A", 0.0))
    found = figures(wd)
    assert found["wall_s"] is None and found["tail"] is None and found["durations"]["finished"] is None
    assert "wall time: no run has ended yet" in render_text(make_report(read_farm(wd)))


# -- PyTaskFarmer's work directories --


def pytaskfarmer_workdir(tmp_path: Path) -> WorkDir:
    """As PyTaskFarmer 0.1.0 leaves one: pytaskfarmer.py appends to timeline.json, a JSON list, one
    complete event per run with the command as name, the farmer's pid as pid, the worker process's
    pid as tid, times in microseconds as floats; finished and failed hold ID LINE rows."""
    wd = WorkDir(tmp_path / "ptf")
    wd.root.mkdir()
    (wd.root / "logs").mkdir()
    events = [{"cat": "task", "name": name, "pid": 900, "tid": tid, "ts": ts * 1e6, "dur": dur * 1e6, "ph": "X",
               "args": {}} for name, tid, ts, dur in
              [("sleep 1", 901, 10.0, 1.0), ("exit 3", 902, 10.0, 0.5), ("sleep 2", 902, 10.5, 2.0),
               ("sleep 1 ", 901, 11.0, 1.0)]]
    wd.timeline.write_text(json.dumps(events))
    wd.finished.write_text("0 sleep 1\n2 sleep 2\n3 sleep 1 \n")
    wd.failed.write_text("1 exit 3\n")
    wd.toprocess.write_text("4 sleep 5\n")
    return wd


def test_a_pytaskfarmer_work_directory_is_read_from_its_timeline(tmp_path: Path) -> None:
    wd = pytaskfarmer_workdir(tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in wd.root.iterdir()}
    found = figures(wd)
    assert (found["tasks"], found["finished"], found["failed"], found["left"]) == (5, 3, 1, 1)
    assert found["runs"]["finished"] == 3 and found["runs"]["failed"] == 1
    assert found["wall_s"] == 2.5
    assert found["utilization"]["places"] == [{"where": "PyTaskFarmer pid 900", "slots": 2, "runs": 4,
                                               "busy_slot_s": 4.5, "offered_slot_s": 5.0, "utilization": 0.9}]
    assert found["durations"]["failed"]["max"] == 0.5
    assert {p.name: p.stat().st_mtime_ns for p in wd.root.iterdir()} == before, "nothing written there"


def test_a_pytaskfarmer_timeline_that_does_not_parse_is_named(tmp_path: Path) -> None:
    wd = pytaskfarmer_workdir(tmp_path)
    wd.timeline.write_text('[{"cat": "task", ')  # killed while rewriting it
    with pytest.raises(WorkDirError, match="timeline.json does not parse"):
        read_farm(wd)


def test_a_directory_that_is_no_work_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WorkDirError, match="does not exist"):
        read_farm(WorkDir(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkDirError, match="is not a work directory"):
        read_farm(WorkDir(tmp_path / "empty"))


def test_a_picture_of_an_unknown_kind_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"-o out.pdf: the picture's name must end in .png, .svg, .html"):
        write_report(WorkDir(tmp_path / "nowhere"), "out.pdf", io.StringIO())


def test_without_matplotlib_o_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wd = workdir(tmp_path, rec.add(0, ["a"]), hello("A", 0.0), end(0, 0.0, 1.0))
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith(("matplotlib.",
                                                                                          "mpifarmer.observe.plots"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed: importing it fails
    out = io.StringIO()
    with pytest.raises(UsageError, match=r"pip install 'mpifarmer\[report\]'"):
        write_report(wd, str(tmp_path / "r.png"), out)
    assert out.getvalue() == "" and not (tmp_path / "r.png").exists()
