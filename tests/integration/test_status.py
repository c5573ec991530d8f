"""``mpifarmer status`` and ``mpifarmer events`` on real farms: two farmers at once, an MPI job,
a farmer killed with SIGKILL, a farm at rest, ``--watch`` through a real pseudo-terminal, and
``events --follow`` while tasks run and the journal is compacted under it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from farmhelpers import (
    HANG,
    MPIEXEC,
    assert_one_line_error,
    farmer_cmd,
    run_farmer,
    start_farmer,
    wait_for,
    write_list,
)
from ptyhelpers import PtyRun

from mpifarmer import environment


def status(*args: str | os.PathLike[str], env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    result = run_farmer("status", *args, "--json", env=env, timeout=60)
    assert result.returncode in (0, 1, 3), result.stderr
    assert result.stderr == "", "status prints nothing on stderr"
    return result.returncode, json.loads(result.stdout)


def consistent(form: dict[str, Any]) -> None:
    assert form["finished"] + form["failed"] + form["running"] + form["pending"] == form["total"]


def test_two_farmers_during_the_run_and_at_rest(tmp_path: Path, clean_home: dict[str, str]) -> None:
    # runs of 3 s: a farmer records its starts at most a second after them, well before they end
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 0.3; exit 5" if i == 2 else "sleep 3" for i in range(9)])
    first = start_farmer(tasks, "-n", "2", "--logs", "packed", env=clean_home)
    second = start_farmer(tasks, "-n", "2", env=clean_home)
    try:
        def both_running() -> bool:
            if not (tmp_path / "tasks.txt_workdir" / "journal.jsonl").exists():
                return False
            _, form = status(tasks, env=clean_home)
            return sum(f["state"] == "alive" and f["started"] > 0 for f in form["farmers"]) == 2
        wait_for(both_running, timeout=HANG, what="two farmers running tasks")
        code, form = status(tasks, env=clean_home)
        assert code == 3
        consistent(form)
        assert form["total"] == 9 and form["running"] >= 2
        farmers = {f["pid"]: f for f in form["farmers"]}
        assert sorted(farmers) == sorted([first.pid, second.pid])
        for farmer in farmers.values():
            assert (farmer["host"], farmer["state"], farmer["slots"], farmer["ranks"]) == \
                (environment.hostname(), "alive", 2, 1)
            assert farmer["heartbeat"] is not None
        assert sum(f["running"] for f in form["farmers"]) == form["running"]
        text = run_farmer("status", tasks, env=clean_home, timeout=60)
        assert text.returncode == 3 and "farmers  2 alive" in text.stdout and "longest running now:" in text.stdout
    finally:
        for farmer in (first, second):
            farmer.communicate(timeout=HANG)
    code, form = status(tasks, env=clean_home)
    assert code == 1, "nothing left, one failed"
    assert (form["finished"], form["failed"], form["running"], form["pending"]) == (8, 1, 0, 0)
    assert form["eta_s"] == 0.0
    assert [f["state"] for f in form["farmers"]] == ["stopped", "stopped"]
    assert sum(f["done"] for f in form["farmers"]) == 9
    assert form["failures"]["by_reason"] == [{"exit_code": 5, "signal": None, "reason": "exited", "tasks": 1}]
    (latest,) = form["failures"]["latest"]
    assert (latest["id"], latest["command"], latest["exit_code"]) == (2, "sleep 0.3; exit 5", 5)
    assert Path(latest["log"]).exists(), "logs/log_2 or the pack file that holds its run"
    text = run_farmer("status", "-w", tmp_path / "tasks.txt_workdir", env=clean_home, timeout=60)
    assert text.returncode == 1
    assert "failed   1: exit code 5 x1" in text.stdout and "task 2: exit code 5" in text.stdout


def test_a_farmer_killed_with_sigkill_is_shown_dead(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 60"] * 4)
    farmer = start_farmer(tasks, "-n", "2", env=clean_home)
    try:
        wait_for(lambda: (tmp_path / "tasks.txt_workdir" / "journal.jsonl").exists()
                 and status(tasks, env=clean_home)[1]["farmers"][0]["started"] == 2, timeout=HANG,
                 what="two tasks started")
    finally:
        farmer.kill()
        farmer.communicate(timeout=HANG)
    code, form = status(tasks, env=clean_home)
    assert code == 3
    (row,) = form["farmers"]
    assert row["state"] == "dead" and row["pid"] == farmer.pid and "gone" in row["why"]
    assert (form["running"], form["pending"], form["held_by_dead"]) == (0, 4, 2)
    assert form["longest_running"] == [], "a dead farmer's runs are not running"
    assert form["eta_s"] is None, "no farmer runs: no ETA"
    text = run_farmer("status", tasks, env=clean_home, timeout=60).stdout
    assert "dead (its process" in text and "holds 2 tasks" in text


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install mpich")
def test_an_mpi_job_is_one_farmer_of_two_ranks(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 3"] * 8)
    job = subprocess.Popen([MPIEXEC, "-n", "2", *farmer_cmd(tasks, "-n", "2")], env=clean_home,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        seen: list[tuple[int, dict]] = []

        def both_ranks() -> bool:
            if not (tmp_path / "tasks.txt_workdir" / "journal.jsonl").exists():
                return False
            seen.append(status(tasks, env=clean_home))
            farmers = seen[-1][1]["farmers"]
            return len(farmers) == 1 and set(farmers[0]["by_rank"]) == {"0", "1"}
        wait_for(both_ranks, timeout=HANG, what="both ranks running tasks")
        # The status that saw both ranks at work, not a later one: on a loaded machine a later
        # look can fall between one batch of 3 s tasks ending and the next one's starts (reported
        # once a run is a second old).
        code, form = seen[-1]
        assert code == 3
        consistent(form)
        (row,) = form["farmers"]
        assert (row["ranks"], row["slots"], row["state"]) == (2, 2, "alive")
        assert {rank for run in form["longest_running"] for rank in [run["rank"]]} == {0, 1}
    finally:
        _, err = job.communicate(timeout=HANG)
    assert job.returncode == 0, err
    code, form = status(tasks, env=clean_home)
    assert code == 0 and form["finished"] == 8 and form["farmers"][0]["done"] == 8


def test_no_such_work_directory_is_one_line_and_exit_2(tmp_path: Path, clean_home: dict[str, str]) -> None:
    assert_one_line_error(run_farmer("status", tmp_path / "nothing.txt", env=clean_home), "nothing.txt_workdir",
                          "is not a work directory")
    assert_one_line_error(run_farmer("status", env=clean_home), "give the task list or -w")
    assert_one_line_error(run_farmer("events", "-w", tmp_path, env=clean_home), "is not a work directory")
    assert_one_line_error(run_farmer("status", "-w", tmp_path, "--watch", "0", env=clean_home), "--watch")
    assert not (tmp_path / "nothing.txt_workdir").exists(), "status creates nothing"


def test_watch_redraws_in_place_on_a_terminal_and_ctrl_c_exits_0(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 0.4"] * 30)
    farmer = start_farmer(tasks, "-n", "2", env=clean_home)
    try:
        wait_for(lambda: (tmp_path / "tasks.txt_workdir" / "journal.jsonl").exists(), what="the journal")
        watch = PtyRun(farmer_cmd("status", tasks, "--watch", "0.5"), env=clean_home)
        watch.read_for(3.0)
        watch.send(b"\x03")  # Ctrl-C, as a person types it
        code = watch.finish(timeout=30)
    finally:
        farmer.communicate(timeout=HANG)
    screen = watch.output.decode(errors="replace")
    assert code == 0, screen
    assert "Traceback" not in screen and "KeyboardInterrupt" not in screen
    frames = screen.count("mpifarmer status of")
    assert frames >= 4, screen
    assert screen.count("\x1b[1A") >= 4 * (frames - 1), "each redraw moves up over the last frame: in place"
    finished = [int(n) for n in __import__("re").findall(r"tasks    30: (\d+) finished", screen)]
    assert finished[-1] > finished[0], "the figures moved between frames"
    assert screen.rstrip().endswith("\x1b[?25h") or "\x1b[?25h" in screen[-40:], "the cursor is given back"


def test_watch_without_a_terminal_prints_one_status_after_another(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true"] * 3)
    assert run_farmer(tasks, env=clean_home).returncode == 0
    watch = subprocess.Popen(farmer_cmd("status", tasks, "--watch", "0.3", "--json"), env=clean_home,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=30)
    assert watch.returncode == 0, err
    forms = [json.loads(line) for line in out.splitlines()]
    assert len(forms) >= 3 and all(form["finished"] == 3 for form in forms)


def test_events_follow_while_tasks_run_across_compactions(tmp_path: Path, clean_home: dict[str, str]) -> None:
    # runs of more than a second: a farmer records a run's start only if it still runs a second on
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 1.3; echo {i}" for i in range(20)])
    workdir = tmp_path / "tasks.txt_workdir"
    env = dict(clean_home, MPIFARMER_COMPACT_BYTES="1500")  # a compaction every dozen records or so
    farmer = start_farmer(tasks, "-n", "2", env=env)
    wait_for(lambda: (workdir / "journal.jsonl").exists(), what="the journal")
    follow = subprocess.Popen(farmer_cmd("events", tasks, "--follow"), env=clean_home, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        _, farmer_err = farmer.communicate(timeout=HANG)
        assert farmer.returncode == 0, farmer_err
        time.sleep(1.5)  # the follower polls twice a second
    finally:
        follow.send_signal(signal.SIGINT)
        out, err = follow.communicate(timeout=30)
    assert follow.returncode == 0, err
    assert len(list((workdir / "history").glob("journal.*.jsonl"))) >= 3, "compacted under the follower"
    followed = [json.loads(line) for line in out.splitlines()]
    assert all(event["v"] == 1 for event in followed)
    added = [e["task"] for e in followed if e["event"] == "task-added"]
    ended = [(e["task"], e["outcome"]) for e in followed if e["event"] == "task-ended"]
    started = [e["task"] for e in followed if e["event"] == "task-started"]
    assert added == list(range(20))
    assert sorted(ended) == [(i, "finished") for i in range(20)]
    assert sorted(started) == list(range(20))
    assert [e["event"] for e in followed if e["event"].startswith("farmer-")] == ["farmer-joined", "farmer-left"]
    after = run_farmer("events", tasks, env=clean_home)
    assert after.returncode == 0
    assert [json.loads(line) for line in after.stdout.splitlines()] == followed, "the same story, read after"


def test_a_packed_failure_points_at_its_pack_and_status_changes_nothing(tmp_path: Path,
                                                                         clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["echo fine", "echo broken >&2; exit 7", "echo fine too"])
    assert run_farmer(tasks, "-n", "2", "--logs", "packed", env=clean_home).returncode == 1
    workdir = tmp_path / "tasks.txt_workdir"
    before = {path: (path.stat().st_mtime_ns, path.stat().st_size) for path in workdir.rglob("*")}
    code, form = status(tasks, env=clean_home)
    assert code == 1
    (latest,) = form["failures"]["latest"]
    assert latest["id"] == 1 and latest["exit_code"] == 7
    pack = Path(latest["log"])
    assert pack.parent == workdir / "logs" and pack.name.startswith("pack.") and b"broken" in pack.read_bytes()
    assert run_farmer("status", tasks, env=clean_home).returncode == 1
    assert run_farmer("events", tasks, env=clean_home).returncode == 0
    after = {path: (path.stat().st_mtime_ns, path.stat().st_size) for path in workdir.rglob("*")}
    assert after == before, "status and events write nothing"
