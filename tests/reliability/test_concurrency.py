"""Many farmers on one work directory: each task exactly once, and every farmer busy until the end.

"Busy until the end" is measured on the farmers' own end records: with T0 the earliest task start and T1
the latest task end of the run, every farmer must have ended a task in the last 20% of [T0, T1]. A farmer
that was starved of the lock, or that ran dry and left while others still had a backlog, fails it; a
farmer that merely started a little late does not. The threshold is relative, so a slow or busy machine
stretches the window with the run.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from crash import mpiexec
from farmhelpers import HANG, farmer_cmd, journal, view, write_list

#: The last fraction of the run in which every farmer must still have ended a task.
TAIL = 0.2


def start(args: list[str | os.PathLike[str]], env: dict[str, str], cwd: Path, err: Path) -> subprocess.Popen:
    with err.open("w") as stream:
        return subprocess.Popen([str(arg) for arg in args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=stream)


def wait_all(procs: list[subprocess.Popen], errs: list[Path]) -> None:
    for proc, err in zip(procs, errs, strict=True):
        proc.wait(timeout=HANG * 3)
        text = err.read_text()
        assert proc.returncode == 0, text[-3000:]
        assert "Traceback" not in text, text[-3000:]


def ends(workdir: Path) -> list[dict]:
    if not (workdir / "journal.jsonl").exists():
        return []
    return [r for r in journal(workdir) if r["e"] == "end"]


def assert_each_task_once(workdir: Path, count: int, out: Path) -> None:
    records = journal(workdir)
    finished = Counter(r["id"] for r in records if r["e"] == "end" and r["st"] == "finished")
    assert finished == Counter(range(count)), "each task recorded finished exactly once"
    assert not [r for r in records if r["e"] == "end" and r["st"] != "finished"]
    claimed = Counter(task for r in records if r["e"] == "claim" for task in r["ids"])
    assert claimed == Counter(range(count)), "each task claimed exactly once"
    written = Counter(int(line.split()[0]) for line in out.read_text().splitlines())
    assert written == Counter(range(count)), "each task ran exactly once"
    assert sorted(view(workdir, "finished")) == list(range(count))
    assert view(workdir, "toprocess") == {} and view(workdir, "running") == {} and view(workdir, "failed") == {}


@pytest.mark.parametrize(("mode", "count"), [("flock", 10_000), ("soft", 2_000), ("strict", 2_000)])
def test_eight_lock_mode_farmers_share_one_list(
        tmp_path: Path, clean_home: dict[str, str], report, mode: str, count: int) -> None:
    farmers = 8
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"echo $PROC_NUMBER >> {out}"] * count)
    workdir = tmp_path / "tasks.txt_workdir"
    errs = [tmp_path / f"farmer-{i}.err" for i in range(farmers)]
    procs = [start(farmer_cmd(tasks, "-n", "1", "--lock-mode", mode), clean_home, tmp_path, err) for err in errs]
    wait_all(procs, errs)
    assert_each_task_once(workdir, count, out)
    records = ends(workdir)
    t0, t1 = min(r["t0"] for r in records), max(r["t1"] for r in records)
    last = {}
    for record in records:
        last[record["f"]] = max(last.get(record["f"], 0.0), record["t1"])
    per_farmer = Counter(r["f"] for r in records)
    assert len(last) == farmers, f"every farmer ran tasks: {per_farmer}"
    late = {fid: round((t1 - end) / (t1 - t0), 3) for fid, end in last.items() if end < t1 - TAIL * (t1 - t0)}
    assert not late, f"farmers idle before the end (fraction of the run they missed): {late}"
    report(f"concurrency: 8 {mode} farmers, {count} tasks in {t1 - t0:.1f} s, tasks per farmer "
           f"{sorted(per_farmer.values())}, last end of each farmer within "
           f"{max((t1 - end) / (t1 - t0) for end in last.values()):.1%} of the run's end")


@pytest.mark.skipif(mpiexec() is None, reason="no mpiexec: pip install mpich")
def test_two_mpi_jobs_and_two_lock_mode_farmers_share_one_work_directory(
        tmp_path: Path, clean_home: dict[str, str], report) -> None:
    count = 600
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 0.02; echo {task} >> {out}" for task in range(count)])
    workdir = tmp_path / "tasks.txt_workdir"
    launcher = mpiexec()
    assert launcher is not None
    commands = [[launcher, "-n", "2", *farmer_cmd(tasks, "-n", "2")]] * 2 + [farmer_cmd(tasks, "-n", "2")] * 2
    errs = [tmp_path / f"farmer-{i}.err" for i in range(len(commands))]
    procs = [start(command, clean_home, tmp_path, err) for command, err in zip(commands, errs, strict=True)]
    wait_all(procs, errs)
    assert_each_task_once(workdir, count, out)
    by_farmer = Counter(r["f"] for r in ends(workdir))
    assert len(by_farmer) == 4, f"both MPI jobs and both local farmers ran tasks: {by_farmer}"
    mpi_ranks = {(r["f"], r["rank"]) for r in ends(workdir) if r["rank"] == 1}
    assert len(mpi_ranks) == 2, "rank 1 of each MPI job ran tasks"
    report(f"concurrency: 2 MPI jobs (mpiexec -n 2) + 2 local farmers, {count} tasks, per farmer "
           f"{sorted(by_farmer.values())}")


def test_lines_appended_while_farmers_run_all_run_once(tmp_path: Path, clean_home: dict[str, str], report) -> None:
    """Three farmers; lines are appended in batches while they run (with comments, blank lines and a line
    whose end arrives with the next batch): every task runs once, under the ID of its position."""
    out = tmp_path / "out"
    initial = 150  # 150 x 0.4 s over 6 slots: about 10 s, longer than the watchers' 5 s period
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 0.4; echo {task} $PROC_NUMBER >> {out}"
                                                for task in range(initial)])
    workdir = tmp_path / "tasks.txt_workdir"
    errs = [tmp_path / f"farmer-{i}.err" for i in range(3)]
    procs = [start(farmer_cmd(tasks, "-n", "2"), clean_home, tmp_path, err) for err in errs]
    count = initial
    for batch in range(3):
        progress = initial // 6 * (batch + 1)  # append after some progress, long before the end
        while len(ends(workdir)) < progress:
            assert all(proc.poll() is None for proc in procs), "a farmer ended before the appends"
            time.sleep(0.05)
        lines = [f"# batch {batch}", ""]
        for _ in range(20):
            lines.append(f"echo {count} $PROC_NUMBER >> {out}")
            count += 1
        text = "\n".join(lines)
        if batch < 2:
            cut = len(text) - 5  # leave the last line unfinished: the next batch completes it
            with tasks.open("a") as stream:
                stream.write(text[:cut])
                stream.flush()
                time.sleep(0.3)
                stream.write(text[cut:] + "\n")
        else:
            with tasks.open("a") as stream:
                stream.write(text + "\n")
    wait_all(procs, errs)
    assert_each_task_once(workdir, count, out)
    for line in out.read_text().splitlines():
        task, proc_number = line.split()
        assert task == proc_number, f"task {task} ran as PROC_NUMBER {proc_number}"
    noticed = sum(" appended to " in err.read_text() for err in errs)
    assert noticed >= 1
    report(f"concurrency: 3 farmers, {initial} tasks + {count - initial} appended in 3 batches while running: "
           f"all ran once ({noticed} farmers noticed appends themselves)")
