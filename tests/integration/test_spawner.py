"""The spawner can die (OOM killer, a user's kill, a cgroup limit): what happens to its tasks and the farm.

A dead spawner's tasks are killed (their process groups), the runs it held are recorded interrupted and
run again, a new spawner is started and the farm goes on. A farmer killed together with its spawner does
not leave its tasks running: a sentinel outside their process group kills them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from farmhelpers import (
    HANG,
    MPIEXEC,
    farmer_cmd,
    journal,
    rank_pids,
    start_farmer,
    task_processes,
    view,
    wait_for,
    write_list,
)


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in found]


def spawner_of(farmer_pid: int) -> int:
    """The farmer's spawner: its child running _spawnd.py (waits until there is one)."""
    found: list[int] = []

    def look() -> bool:
        found[:] = [child for child in _children(farmer_pid)
                    if b"_spawnd" in Path(f"/proc/{child}/cmdline").read_bytes()]
        return len(found) == 1

    wait_for(look, what=f"the spawner of {farmer_pid}")
    return found[0]


def start_stop_list(tmp_path: Path, count: int, log: Path, marker: str) -> Path:
    return write_list(tmp_path / "tasks.txt", [f"echo s {i} >> {log}; sleep 1; echo e {i} >> {log} # {marker}"
                                               for i in range(count)])


def records_of(log: Path) -> tuple[list[int], list[int]]:
    starts, ends = [], []
    for line in log.read_text().splitlines():
        kind, task = line.split()
        (starts if kind == "s" else ends).append(int(task))
    return starts, ends


def test_a_killed_spawner_is_replaced_and_its_tasks_are_interrupted_not_failed(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    log, marker = tmp_path / "L", f"spawnerkill-{tmp_path.name}"
    tasks = start_stop_list(tmp_path, 40, log, marker)
    farmer = start_farmer(tasks, "-n", "4", env=clean_home)
    spawner = spawner_of(farmer.pid)
    time.sleep(1.5)
    held = task_processes(marker)
    assert len(held) >= 4
    os.kill(spawner, signal.SIGKILL)
    # The dead spawner's tasks die at once: none of them writes its end record.
    wait_for(lambda: not set(held) & set(task_processes(marker)), timeout=5, what="the dead spawner's tasks to die")
    _, err = farmer.communicate(timeout=HANG)
    assert farmer.returncode == 0, err
    assert "spawner" in err
    workdir = tmp_path / "tasks.txt_workdir"
    assert view(workdir, "failed") == {}
    assert sorted(view(workdir, "finished")) == list(range(40))
    records = journal(workdir)
    interrupted = {r["id"] for r in records if r["e"] == "end" and r["st"] == "interrupted"}
    assert len(interrupted) >= 4, "the runs the spawner held were recorded interrupted"
    assert not [r for r in records if r["e"] == "end" and r["st"] == "failed"]
    starts, ends = records_of(log)
    # Every task ended exactly once; the interrupted ones started twice, and only they did.
    assert sorted(ends) == list(range(40))
    twice = {task for task in set(starts) if starts.count(task) > 1}
    assert twice <= interrupted
    assert task_processes(marker) == []


def test_a_spawner_that_keeps_dying_drains_the_farmer_with_exit_3(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    log, marker = tmp_path / "L", f"spawnerloop-{tmp_path.name}"
    tasks = start_stop_list(tmp_path, 40, log, marker)
    farmer = start_farmer(tasks, "-n", "2", env=clean_home)
    killed: set[int] = set()
    deadline = time.monotonic() + HANG
    while farmer.poll() is None and time.monotonic() < deadline:
        for child in _children(farmer.pid):
            try:
                if b"_spawnd" in Path(f"/proc/{child}/cmdline").read_bytes() and child not in killed:
                    os.kill(child, signal.SIGKILL)
                    killed.add(child)
            except OSError:
                pass
        time.sleep(0.05)
    _, err = farmer.communicate(timeout=HANG)
    assert farmer.returncode == 3, err
    assert len(killed) >= 2, "a new spawner was started after the first death"
    workdir = tmp_path / "tasks.txt_workdir"
    assert view(workdir, "failed") == {}
    assert not [r for r in journal(workdir) if r["e"] == "end" and r["st"] == "failed"]
    finished = set(view(workdir, "finished"))
    assert sorted(set(view(workdir, "toprocess")) | finished) == list(range(40))
    assert task_processes(marker) == []


def test_a_killed_spawner_in_lock_mode_fails_nothing_that_others_would_run(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    log, marker = tmp_path / "L", f"spawnerlock-{tmp_path.name}"
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 0.2; echo e {i} >> {log} # {marker}" for i in range(60)])
    farmers = [start_farmer(tasks, "-n", "2", env=clean_home) for _ in range(2)]
    os.kill(spawner_of(farmers[0].pid), signal.SIGKILL)
    for farmer in farmers:
        _, err = farmer.communicate(timeout=HANG)
        assert farmer.returncode == 0, err
    workdir = tmp_path / "tasks.txt_workdir"
    assert view(workdir, "failed") == {}
    assert sorted(view(workdir, "finished")) == list(range(60))


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install mpich")
def test_killing_one_ranks_spawner_in_mpi_mode_loses_and_fails_nothing(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    log, marker = tmp_path / "L", f"spawnermpi-{tmp_path.name}"
    tasks = start_stop_list(tmp_path, 24, log, marker)
    job = subprocess.Popen([MPIEXEC, "-n", "3", *farmer_cmd(tasks, "-n", "2")], env=clean_home,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: len(rank_pids(tasks)) == 3, what="three ranks")
        wait_for(lambda: log.exists() and len(records_of(log)[0]) >= 4, what="tasks running")
        os.kill(spawner_of(rank_pids(tasks)[1]), signal.SIGKILL)
        _, err = job.communicate(timeout=HANG)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 0, err
    workdir = tmp_path / "tasks.txt_workdir"
    assert view(workdir, "failed") == {}
    assert sorted(view(workdir, "finished")) == list(range(24))
    assert sorted(records_of(log)[1]) == list(range(24))
    assert task_processes(marker) == []


def test_tasks_die_with_a_farmer_killed_together_with_its_spawner(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    """kill -9 of the farmer's whole process group (farmer and spawner at once)."""
    marker = f"groupkill-{tmp_path.name}"
    tasks = write_list(tmp_path / "tasks.txt", [f"(sleep 60 && : {marker}) & sleep 60 && : {marker}"] * 2)
    farmer = subprocess.Popen(farmer_cmd(tasks, "-n", "2"), env=clean_home, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: len(task_processes(marker)) == 4, what="two tasks with two processes each")
    os.killpg(farmer.pid, signal.SIGKILL)
    farmer.communicate(timeout=HANG)
    wait_for(lambda: task_processes(marker) == [], timeout=5, what="the tasks to die with farmer and spawner")


def test_tasks_die_when_farmer_and_spawner_are_killed_one_by_one(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    """As an OOM killer would: the spawner first (the farmer sees it and acts), or both at once."""
    marker = f"bothkill-{tmp_path.name}"
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 60 && : {marker}"] * 2)
    farmer = start_farmer(tasks, "-n", "2", env=clean_home)
    spawner = spawner_of(farmer.pid)
    wait_for(lambda: len(task_processes(marker)) == 2, what="two running tasks")
    os.kill(farmer.pid, signal.SIGSTOP)  # so that it cannot act on the spawner's death
    os.kill(spawner, signal.SIGKILL)
    os.kill(farmer.pid, signal.SIGKILL)
    farmer.communicate(timeout=HANG)
    wait_for(lambda: task_processes(marker) == [], timeout=5, what="the tasks to die")


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM, signal.SIGINT])
def test_the_pools_helpers_survive_a_stop_signal_the_moment_they_start(tmp_path: Path, signum: int):
    """Slurm sends a step's stop signal to every process in it, the spawner and sentinel included,
    and a restarted job may get one in its first second (seen in CI: a requeued job's spawner was
    killed by SIGUSR1 while Python was still starting). The signal is sent the instant each helper
    exists, before it could have installed anything of its own."""
    from mpifarmer.pool import Pool
    from mpifarmer.runners import BasicRunner
    from mpifarmer.task import Task

    with pytest.MonkeyPatch.context() as patch:
        import mpifarmer.pool as pool_module

        started: list[subprocess.Popen] = []
        real_popen = subprocess.Popen

        def popen_and_signal(*args, **kwargs):
            child = real_popen(*args, **kwargs)
            os.kill(child.pid, signum)
            started.append(child)
            return child

        patch.setattr(pool_module.subprocess, "Popen", popen_and_signal)
        pool = Pool(2, BasicRunner(), log_path=lambda task: tmp_path / f"log_{task}")
    try:
        assert len(started) == 2  # the sentinel and the first spawner
        pool.start(Task(0, "echo ran", "echo ran"))
        outcomes: list = []
        deadline = time.monotonic() + 30
        while not outcomes and time.monotonic() < deadline:
            outcomes += pool.reap()
            time.sleep(0.01)
        assert [(o.returncode, o.reason) for o in outcomes] == [(0, "exited")]
        assert (tmp_path / "log_0").read_text() == "ran\n"
        assert [child.poll() for child in started] == [None, None]
    finally:
        pool.close()


def test_a_spawner_whose_farmer_died_before_it_read_its_requests_starts_none_of_them(tmp_path: Path) -> None:
    """Crash harness, lock mode: a farmer killed while its spawner was still starting up left run requests
    in the pipe; the spawner started them after another farmer had taken the tasks over, and the stray
    run's O_TRUNC of the log cut the output of the run that finished."""
    import json
    import marshal
    import struct
    import sys

    from mpifarmer import _spawnd

    life_read, life_write = os.pipe()
    spawner = subprocess.Popen([sys.executable, "-I", "-S", _spawnd.__file__, json.dumps({"slots": 2}),
                                str(life_write)], stdin=subprocess.PIPE, pass_fds=(life_write,))
    os.close(life_write)
    try:
        logs = [tmp_path / f"log_{task}" for task in range(2)]
        for task, log in enumerate(logs):
            payload = marshal.dumps(("run", task, ["/bin/sh", "-c", "true"], str(log), {}, {"slots": 1}, None, None))
            spawner.stdin.write(struct.pack(">I", len(payload)) + payload)  # type: ignore[union-attr]
        spawner.stdin.close()  # type: ignore[union-attr]  # the farmer is gone before the spawner has read a byte
        assert spawner.wait(timeout=HANG) == 0
    finally:
        os.close(life_read)
    assert not any(log.exists() for log in logs)  # nothing was started, no log truncated
