"""Status figures and events from crafted work directories, with exact expected values."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from mpifarmer import environment
from mpifarmer.observe.events import EventFollower, events_of
from mpifarmer.observe.state import FarmReader
from mpifarmer.observe.status import as_json, exit_code, gather
from mpifarmer.observe.statustext import render
from mpifarmer.scheduling import records as rec
from mpifarmer.store.journal import Journal
from mpifarmer.store.workdir import WorkDir

NOW = float(int(time.time()))  # whole seconds: records round times to milliseconds
HOST, BOOT = environment.hostname(), environment.boot_id()


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def identity(pid: int, host: str = HOST, **more: Any) -> dict[str, Any]:
    return {"host": host, "boot": BOOT if host == HOST else "other", "pid": pid, "pst": None, "job": None,
            "restart": 0, "ranks": 1, "slots": 2, **more}


def end(fid: str, task: int, st: str, t1: float, rc: int = 0, **extra: Any) -> dict[str, Any]:
    return rec.end(fid, task, st=st, rc=rc, sig=extra.pop("sig", None), t0=t1 - 2.0, t1=t1, host=HOST, rank=0,
                   slot=0, **extra)


def crafted(tmp_path: Path) -> WorkDir:
    """20 tasks. ``alive`` (this process) runs 12 and 13; ``gone`` left after finishing 0-9 and
    failing 10 and 11; ``dead`` (a pid that is gone, same host) holds 14 and 15, not yet found dead;
    ``remote`` on another host, with a fresh heartbeat, holds 16."""
    workdir = WorkDir(tmp_path / "wd")
    workdir.prepare()
    records: list[dict[str, Any]] = [rec.add(0, [f"cmd {i}" for i in range(20)])]
    records.append(rec.hello("gone", identity(1, job="77_3"), NOW - 1000.0))
    records.append(rec.claim("gone", list(range(12))))
    # ends at NOW-30 (4 tasks), NOW-200 (3), NOW-600 (3): 4 in the last minute, 7 in 5, 10 in 15
    for task, t1 in enumerate([NOW - 30.0] * 4 + [NOW - 200.0] * 3 + [NOW - 600.0] * 3):
        records.append(end("gone", task, rec.FINISHED, t1))
    records.append(end("gone", 10, rec.FAILED, NOW - 20.0, rc=3, why="exited", att=2))
    records.append(end("gone", 11, rec.FAILED, NOW - 10.0, rc=None, sig=9, why="signalled"))
    records.append(rec.bye("gone", NOW - 5.0))
    records.append(rec.hello("alive", identity(os.getpid()), NOW - 100.0))
    records.append(rec.hello("dead", identity(dead_pid()), NOW - 50.0))
    records.append(rec.hello("remote", identity(4242, host="elsewhere"), NOW - 60.0))
    records.append(rec.claim("alive", [12, 13]))
    records.append(rec.claim("dead", [14, 15]))
    records.append(rec.claim("remote", [16]))
    records.append(rec.start("alive", 12, pid=1, pst=None, host=HOST, rank=0, slot=1, t=NOW - 90.0))
    records.append(rec.start("alive", 13, pid=2, pst=None, host=HOST, rank=0, slot=0, t=NOW - 15.0))
    records.append(rec.start("dead", 14, pid=3, pst=None, host=HOST, rank=0, slot=0, t=NOW - 45.0))
    Journal(workdir.journal).append(records)
    for fid in ("alive", "remote"):
        workdir.heartbeat(fid).write_text("{}")
    (workdir.logs / "log_10").write_text("oops\n")
    return workdir


def status_of(workdir: WorkDir):  # noqa: ANN201 - the FarmStatus
    reader = FarmReader(workdir)
    reader.refresh()
    return gather(reader, NOW)


def test_totals_count_a_dead_farmers_claims_as_pending(tmp_path: Path) -> None:
    status = status_of(crafted(tmp_path))
    assert (status.total, status.finished, status.failed, status.running, status.pending, status.held_by_dead) == \
        (20, 10, 2, 3, 5, 2)
    assert status.left == 8
    assert exit_code(status) == 3


def test_rates_and_eta_from_the_ends_in_each_window(tmp_path: Path) -> None:
    status = status_of(crafted(tmp_path))
    # done runs: 4 finished + 2 failed in the last minute, 7 + 2 in 5 minutes, 10 + 2 in 15; the
    # earliest farmer active in the last 15 minutes ('gone', which left 5 s ago) registered 1000 s ago.
    assert status.rates.by_window == ((60.0, 6.0), (300.0, 9 / 5), (900.0, 12 / 15))
    assert status.eta_s == 8 * 60.0 / (9 / 5)


def test_farmers_alive_dead_late_and_gone(tmp_path: Path) -> None:
    status = status_of(crafted(tmp_path))
    rows = {row.fid: row for row in status.farmers}
    assert {fid: row.state for fid, row in rows.items()} == {"gone": "stopped", "alive": "alive", "dead": "dead",
                                                             "remote": "alive"}
    assert (rows["gone"].done, rows["gone"].left, rows["gone"].array_element) == (12, NOW - 5.0, "3")
    assert (rows["alive"].running, rows["alive"].started, rows["alive"].by_rank) == (2, 2, {0: 2})
    assert rows["dead"].running == 2 and "is gone" in rows["dead"].why
    assert rows["remote"].heartbeat is not None and rows["remote"].slots == 2


def test_failures_by_reason_latest_first_with_their_logs(tmp_path: Path) -> None:
    workdir = crafted(tmp_path)
    status = status_of(workdir)
    assert status.failure_counts == [(3, None, "exited", 1), (None, 9, "signalled", 1)]
    assert [(f.task, f.command, f.exit_code, f.signal, f.attempts) for f in status.failures] == \
        [(11, "cmd 11", None, 9, None), (10, "cmd 10", 3, None, 2)]
    assert status.failures[1].log == str(workdir.log(10))
    assert status.failures[0].log is None


def test_longest_running_leaves_out_dead_farmers_runs(tmp_path: Path) -> None:
    status = status_of(crafted(tmp_path))
    assert [(run.task, run.farmer, run.slot) for run in status.longest] == [(12, "alive", 1), (13, "alive", 0)]
    assert status.longest[0].started == NOW - 90.0


def test_the_json_form_has_the_documented_keys(tmp_path: Path) -> None:
    form = as_json(status_of(crafted(tmp_path)))
    for key in ("total", "finished", "failed", "running", "pending", "rate_per_min", "eta_s", "farmers"):
        assert key in form
    assert form["rate_per_min"] == round(9 / 5, 3)
    assert form["rates_per_min"] == {"1": 6.0, "5": 1.8, "15": 0.8}
    assert {farmer["id"]: (farmer["host"], farmer["pid"], farmer["job"], farmer["state"], farmer["running"],
                           farmer["done"]) for farmer in form["farmers"]}["gone"] == (HOST, 1, "77_3", "stopped", 0, 12)
    assert form["failures"]["by_reason"][0] == {"exit_code": 3, "signal": None, "reason": "exited", "tasks": 1}
    json.dumps(form)  # all plain JSON


def test_the_text_names_every_section(tmp_path: Path) -> None:
    text = render(status_of(crafted(tmp_path)))
    assert "tasks    20: 10 finished (50.0%), 2 failed, 3 running, 5 pending (2 of them held by dead farmers)" in text
    assert "6.0/min over 1 min, 1.8/min over 5 min, 0.8/min over 15 min" in text
    assert "farmers  2 alive, 1 dead, 1 stopped" in text
    assert "failed   2: exit code 3 x1, signal 9 x1" in text
    assert "task 12: 1 min 30 s on " in text


def test_a_farm_at_rest_exits_0_or_1(tmp_path: Path) -> None:
    workdir = WorkDir(tmp_path / "wd")
    workdir.prepare()
    journal = Journal(workdir.journal)
    journal.append([rec.add(0, ["a", "b"]), rec.hello("f", identity(1), NOW - 10), rec.claim("f", [0, 1]),
                    end("f", 0, rec.FINISHED, NOW - 5)])
    journal.append([end("f", 1, rec.FINISHED, NOW - 4), rec.bye("f", NOW - 3)])
    assert exit_code(status_of(workdir)) == 0
    assert status_of(workdir).eta_s == 0.0
    journal.append([rec.retry("f", []), rec.hello("g", identity(1), NOW - 2), rec.claim("g", []),
                    end("g", 1, rec.FAILED, NOW - 1, rc=1)])
    assert exit_code(status_of(workdir)) == 0, "a failed run of a finished task leaves it finished"


# -- events -----------------------------------------------------------------------------------------


def test_each_record_kind_becomes_its_events() -> None:
    assert list(events_of(rec.add(2, ["x", "y"], {1: {"name": "why"}}), known_tasks=3)) == [
        {"v": 1, "event": "task-added", "time": None, "task": 3, "command": "y", "attrs": {"name": "why"}}]
    assert list(events_of(rec.claim("f", [4, 5]))) == [
        {"v": 1, "event": "task-claimed", "time": None, "task": 4, "farmer": "f"},
        {"v": 1, "event": "task-claimed", "time": None, "task": 5, "farmer": "f"}]
    assert list(events_of(rec.start("f", 4, pid=9, pst=1, host="h", rank=1, slot=2, t=10.0))) == [
        {"v": 1, "event": "task-started", "time": 10.0, "task": 4, "farmer": "f", "host": "h", "rank": 1,
         "slot": 2, "pid": 9}]
    assert list(events_of(rec.end("f", 4, st="retrying", rc=2, sig=None, t0=10.0, t1=12.5, host="h", rank=1,
                                  slot=2, why="exited", att=1, at=20.0))) == [
        {"v": 1, "event": "task-ended", "time": 12.5, "task": 4, "farmer": "f", "outcome": "retrying",
         "exit_code": 2, "signal": None, "reason": "exited", "attempt": 1, "started": 10.0, "duration": 2.5,
         "host": "h", "rank": 1, "slot": 2, "retry_at": 20.0}]
    assert list(events_of(rec.hello("f", identity(7, ranks=4), 1.0)))[0] == {
        "v": 1, "event": "farmer-joined", "time": 1.0, "farmer": "f", "host": HOST, "pid": 7, "job": None,
        "restart": 0, "ranks": 4, "slots": 2}
    assert list(events_of(rec.bye("f", 3.0))) == [{"v": 1, "event": "farmer-left", "time": 3.0, "farmer": "f"}]
    assert list(events_of(rec.dead("f", "g", "its process is gone", 4.0))) == [
        {"v": 1, "event": "farmer-dead", "time": 4.0, "farmer": "f", "by": "g", "reason": "its process is gone"}]
    assert list(events_of(rec.release("f", [1]))) == [
        {"v": 1, "event": "task-released", "time": None, "task": 1, "farmer": "f"}]
    assert list(events_of(rec.retry("f", [1]))) == [{"v": 1, "event": "task-reset", "time": None, "task": 1}]
    assert list(events_of({"e": "journal", "v": 1, "gen": 3})) == []


def compact(workdir: WorkDir, journal: Journal) -> None:
    """What Store.compact does to the files: link into the history, rename a new generation over."""
    workdir.history.mkdir(exist_ok=True)
    os.link(workdir.journal, workdir.old_journal(journal.generation))
    journal.new_generation(journal.generation + 1)


def test_the_follower_goes_on_across_compactions(tmp_path: Path) -> None:
    workdir = WorkDir(tmp_path / "wd")
    workdir.prepare()
    journal = Journal(workdir.journal)
    journal.append([rec.add(0, ["a", "b", "c"]), rec.hello("f", identity(1), 1.0)])
    follower = EventFollower(workdir)
    assert [e["event"] for e in follower.read()] == ["task-added"] * 3 + ["farmer-joined"]
    late = EventFollower(workdir, from_start=False)
    journal.append([rec.claim("f", [0])])
    with workdir.journal.open("ab") as stream:
        stream.write(b'{"e":"bye","f":"f",')  # being written: read once whole
    compact(workdir, journal)  # the follower has the old file open
    journal.append([rec.start("f", 0, pid=1, pst=None, host="h", rank=0, slot=0, t=2.0)])
    assert [e["event"] for e in follower.read()] == ["task-claimed", "task-started"]
    compact(workdir, journal)
    journal.append([end("f", 0, rec.FINISHED, 3.0)])
    compact(workdir, journal)  # two compactions between reads: one from the history, then the live one
    journal.append([rec.bye("f", 4.0)])
    assert [e["event"] for e in follower.read()] == ["task-ended", "farmer-left"]
    assert follower.read() == []
    assert [e["event"] for e in late.read()] == ["task-claimed", "task-started", "task-ended", "farmer-left"]
    again = [e["event"] for e in EventFollower(workdir).read()]
    assert again == ["task-added"] * 3 + ["farmer-joined", "task-claimed", "task-started", "task-ended",
                                          "farmer-left"]


def test_a_second_add_of_the_same_lines_adds_no_events(tmp_path: Path) -> None:
    workdir = WorkDir(tmp_path / "wd")
    workdir.prepare()
    Journal(workdir.journal).append([rec.add(0, ["a"]), rec.add(1, ["b"]), rec.add(1, ["b", "c"])])
    assert [e["task"] for e in EventFollower(workdir).read()] == [0, 1, 2]
