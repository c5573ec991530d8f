"""Crash consistency: farmers SIGKILLed at random moments lose no task and run no finished task again.

The reduced run here makes about 30 kills per mode; ``MPIFARMER_CRASH_KILLS=200`` (and optionally
``MPIFARMER_CRASH_SEED``) runs the full one. The harness and what it checks are in ``crash.py``.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from crash import MODES, Figures, Round, mpiexec, processes_with, run_mode
from farmhelpers import HANG, journal, run_farmer

KILLS = int(os.environ.get("MPIFARMER_CRASH_KILLS", "30"))
SEED = int(os.environ.get("MPIFARMER_CRASH_SEED", "20261124"))


@pytest.mark.parametrize("mode", MODES)
def test_killed_farmers_lose_nothing_and_rerun_nothing_finished(
        tmp_path: Path, clean_home: dict[str, str], report, mode: str) -> None:
    if mode == "mpi" and mpiexec() is None:
        pytest.skip("no mpiexec: pip install mpich")
    figures = run_mode(mode, KILLS, SEED, tmp_path, clean_home)
    report(f"crash (seed {SEED}) {figures.summary()}")
    assert figures.problems == [], "\n".join(figures.problems[:20])
    assert figures.kills >= KILLS
    assert figures.losses == figures.unexplained == figures.overlaps == figures.finished_reruns == 0
    assert figures.runs >= figures.tasks


# -- the checker itself: it must catch what it is meant to catch ---------------------------------------


def fabricated_round(tmp_path: Path, runs: list[tuple[int, str, str, float, float | None]],
                     finished: list[tuple[int, str, float, float]], journal_extra: bytes = b"") -> Round:
    """A round whose files say what the arguments say: runs (task, nonce, farmer, start, end) and finished
    records (task, farmer, t0, t1); two farmers registered, f0 (killed) and f1 (clean)."""
    round_ = Round(tmp_path, "local", 0, random.Random(0), 0, Figures("local"), {}, print)
    round_.killed_fids = {"f0"}
    records = [{"e": "add", "first": 0, "lines": round_.lines},
               {"e": "hello", "f": "f0", "pid": 1, "t": 1.0}, {"e": "hello", "f": "f1", "pid": 2, "t": 2.0}]
    records += [{"e": "end", "f": f, "id": task, "st": "finished", "rc": 0, "t0": t0, "t1": t1}
                for task, f, t0, t1 in finished]
    (round_.workdir).mkdir()
    (round_.workdir / "journal.jsonl").write_bytes(
        b"".join(json.dumps(r).encode() + b"\n" for r in records) + journal_extra)
    round_.out.write_text("".join(
        f"{task} {nonce} start {start} {farmer}\n" + (f"{task} {nonce} end {end} {farmer}\n" if end else "")
        for task, nonce, farmer, start, end in runs))
    return round_


def all_tasks_once(count: int = 60) -> tuple[list, list]:
    runs = [(task, f"n{task}", "f1", 10.0 + task, 10.5 + task) for task in range(count)]
    finished = [(task, "f1", 9.99 + task, 10.6 + task) for task in range(count)]
    return runs, finished


def test_checker_passes_a_consistent_round(tmp_path: Path) -> None:
    round_ = fabricated_round(tmp_path, *all_tasks_once())
    round_.check(after_kill=True)
    round_.verify_runs()
    assert round_.figures.problems == []


def test_checker_allows_a_rerun_of_a_task_whose_farmer_was_killed(tmp_path: Path) -> None:
    runs, finished = all_tasks_once()
    runs.insert(0, (5, "killed-run", "f0", 1.0, None))
    round_ = fabricated_round(tmp_path, runs, finished)
    round_.check(after_kill=True)
    round_.verify_runs()
    assert round_.figures.problems == [] and round_.figures.duplicates == 1


def test_checker_catches_a_duplicate_without_a_kill(tmp_path: Path) -> None:
    runs, finished = all_tasks_once()
    runs.insert(0, (5, "lost-end", "f1", 1.0, 1.5))
    round_ = fabricated_round(tmp_path, runs, finished)
    round_.verify_runs()
    assert round_.figures.unexplained == 1


def test_checker_catches_a_finished_task_that_runs_again(tmp_path: Path) -> None:
    runs, finished = all_tasks_once()
    round_ = fabricated_round(tmp_path, runs, finished)
    round_.check(after_kill=True)
    with round_.out.open("a") as stream:
        stream.write("7 again start 100.0 f1\n")
    round_.check(after_kill=True)
    assert round_.figures.finished_reruns == 1


def test_checker_catches_overlapping_runs(tmp_path: Path) -> None:
    runs, finished = all_tasks_once()
    runs.insert(0, (3, "early", "f0", 12.0, 13.5))  # still running when the recorded run started at 13.0
    round_ = fabricated_round(tmp_path, runs, finished)
    with round_.out.open("a") as stream:
        stream.write("4 n4 overlap 14.0 f1\n")
    round_.check(after_kill=True)
    assert round_.figures.overlaps == 2


def test_checker_catches_a_lost_task_and_a_damaged_journal(tmp_path: Path) -> None:
    runs, finished = all_tasks_once()
    round_ = fabricated_round(tmp_path, runs, finished[1:], journal_extra=b'{"e":"end","f"\n')
    round_.check(after_kill=True)
    round_.verify_runs()
    assert round_.figures.losses == 1
    assert any("damaged journal lines" in problem for problem in round_.figures.problems)


# -- what a restart kills ----------------------------------------------------------------------------


def test_a_restart_kills_the_dead_farmers_tasks_and_nothing_else(tmp_path: Path, clean_home: dict[str, str]) -> None:
    marker = f"spawnerpg-{tmp_path.name}"
    tasks = tmp_path / "tasks.txt"
    tasks.write_text(f"sleep 60; : {marker}\n" * 4)
    # Farmer A runs in a process group of its own with a bystander in it, as a job script would be.
    shell = (f"(exec -a bystander-{marker} sleep 300) & "
             f"exec {shlex.quote(sys.executable)} -m mpifarmer tasks.txt -n 2")
    farmer = subprocess.Popen(["bash", "-c", shell], cwd=tmp_path, env=clean_home, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + HANG
        while len(processes_with(marker)) < 3:  # the bystander and two tasks
            assert time.monotonic() < deadline, "farmer A did not start its tasks"
            time.sleep(0.05)
        bystander = processes_with(f"bystander-{marker}")
        spawners = [pid for pid in processes_with("_spawnd") if _pgid(pid) == farmer.pid]
        assert len(bystander) == 1 and len(spawners) == 1
        # A spawner that has not exited yet when the next farmer looks (as when a task hangs in I/O).
        os.kill(spawners[0], signal.SIGSTOP)
        farmer.kill()
        farmer.wait()
        restart = run_farmer(tasks, "-n", "2", "--timeout", "1", cwd=tmp_path, env=clean_home)
        assert "is dead" in restart.stderr, restart.stderr
        assert processes_with(f"bystander-{marker}") == bystander, "the restart killed farmer A's process group"
    finally:
        for pid in processes_with(marker) + [p for p in processes_with("_spawnd") if _pgid(p) == farmer.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


# -- bug 15: a record cut just before its newline --------------------------------------------------------


def finished_records(workdir: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    if not (workdir / "journal.jsonl").exists():
        return counts
    for record in journal(workdir):
        if record.get("e") == "end" and record.get("st") == "finished":
            counts[record["id"]] = counts.get(record["id"], 0) + 1
    return counts


def test_a_finished_record_cut_before_its_newline_is_not_finished_twice(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    """A farmer killed after writing a task's end record but before its newline (bug 15): the next
    farmer takes the cut record for torn, runs the task again, and its own append must not turn the
    cut record into a second ``finished`` for everyone who reads the journal after it."""
    out = tmp_path / "out"
    tasks = tmp_path / "tasks.txt"
    go = tmp_path / "go"
    tasks.write_text("".join(f"echo {i} >> {out}" + (f"; [ -e {go} ] || sleep 30\n" if i == 1 else "\n")
                             for i in range(4)))
    workdir = tmp_path / "wd"
    first = subprocess.Popen([sys.executable, "-m", "mpifarmer", str(tasks), "-w", str(workdir), "-n", "1"],
                             env=clean_home, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + HANG
    while not (out.exists() and out.read_text().split() == ["0", "1"] and finished_records(workdir) == {0: 1}):
        assert time.monotonic() < deadline and first.poll() is None, first.stderr.read() if first.stderr else ""
        time.sleep(0.05)
    first.kill()
    first.wait()
    records = [json.loads(line) for line in (workdir / "journal.jsonl").read_bytes().splitlines()]
    fid = next(r["f"] for r in records if r["e"] == "hello")
    cut = {"e": "end", "f": fid, "id": 1, "st": "finished", "rc": 0, "t0": 1.0, "t1": 2.0, "host": "h",
           "rank": 0, "slot": 0, "why": "exited"}
    with (workdir / "journal.jsonl").open("ab") as stream:  # the write the SIGKILL cut: all but "\n"
        stream.write(json.dumps(cut, separators=(",", ":")).encode())
    go.touch()
    second = run_farmer(tasks, "-w", workdir, "-n", "1", env=clean_home, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert finished_records(workdir) == {0: 1, 1: 1, 2: 1, 3: 1}
    assert sorted(out.read_text().split()) == ["0", "1", "1", "2", "3"], "task 1 ran again: its end was lost"


def test_the_unended_fault_cuts_the_last_newline_and_the_restart_loses_and_reruns_nothing(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("".join(f"echo {i}\n" for i in range(6)))
    workdir = tmp_path / "wd"
    env = clean_home | {"MPIFARMER_FAULT": "3:unended"}
    killed = run_farmer(tasks, "-w", workdir, "-n", "1", env=env, cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL
    data = (workdir / "journal.jsonl").read_bytes()
    assert not data.endswith(b"\n") and json.loads(data.rsplit(b"\n", 1)[1]), "a whole record with no newline"
    again = run_farmer(tasks, "-w", workdir, "-n", "1", env=clean_home, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert set(finished_records(workdir).values()) == {1} and len(finished_records(workdir)) == 6


# -- compaction: a kill after each of its steps ----------------------------------------------------------


@pytest.mark.parametrize("step", [1, 2, 3])
def test_a_farmer_killed_in_a_compaction_leaves_a_work_directory_that_finishes(
        tmp_path: Path, clean_home: dict[str, str], step: int) -> None:
    out = tmp_path / "out"
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("".join(f"echo {i} >> {out}\n" for i in range(60)))
    workdir = tmp_path / "wd"
    env = clean_home | {"MPIFARMER_COMPACT_BYTES": "1500"}
    killed = run_farmer(tasks, "-w", workdir, "-n", "2", env=env | {"MPIFARMER_FAULT": f"2:compact{step}"},
                        cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    generation = json.loads((workdir / "journal.jsonl").read_bytes().split(b"\n")[0]).get("gen")
    assert generation == (2 if step == 3 else 1), f"killed in the second compaction, after step {step}"
    # What the killed farmer held: claimed, and no end of its recorded. Its pool ran queued tasks on
    # while it compacted (a kill mid-run, since compaction at the snapshot's size), so more than
    # its two slots' worth may have run unrecorded; none of the others may run again.
    records = journal(workdir)
    held = {task for r in records if r["e"] == "claim" for task in r["ids"]} - {
        r["id"] for r in records if r["e"] == "end"}
    ran_before = [int(line) for line in out.read_text().split()]
    again = run_farmer(tasks, "-w", workdir, "-n", "2", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert finished_records(workdir) == dict.fromkeys(range(60), 1)
    generation = json.loads((workdir / "journal.jsonl").read_bytes().split(b"\n")[0])["gen"]
    assert sorted(p.name for p in workdir.glob("snapshot.*")) == [f"snapshot.{generation}"]
    assert len((workdir / "finished").read_text().splitlines()) == 60
    runs = [int(line) for line in out.read_text().split()]
    assert set(runs) == set(range(60))
    twice = sorted(task for task in set(runs) if runs.count(task) > 1)
    assert all(runs.count(task) == 2 for task in twice), "a task ran again at most once"
    assert set(twice) <= held & set(ran_before), f"only tasks the killed farmer held ran again: {twice}, held {held}"
