"""Stopping and restarting: signals, --timeout, kill -9, and what the next run does."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from farmhelpers import (
    HANG,
    farmer_cmd,
    journal,
    run_farmer,
    runs_per_task,
    start_farmer,
    task_processes,
    view,
    wait_for,
    write_list,
)


def sleeper_list(tmp_path: Path, count: int, seconds: float, out: Path) -> Path:
    """Tasks that take ``seconds`` and then append their ID to ``out`` (one line per completed run)."""
    return write_list(tmp_path / "tasks.txt", [f"sleep {seconds}; echo {i} >> {out}" for i in range(count)])


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM, signal.SIGINT])
def test_stop_signal_interrupts_running_tasks_and_a_rerun_finishes(
        tmp_path: Path, clean_home: dict[str, str], signum: int) -> None:
    out, release = tmp_path / "out", tmp_path / "release"
    marker = f"{tmp_path.name}-{signum}"
    # Tasks block until the release file exists; the marker makes their processes findable.
    tasks = write_list(tmp_path / "tasks.txt", [f"[ -e {release} ] || sleep 30; echo {i} >> {out} # {marker}"
                                                for i in range(6)])
    farmer = start_farmer(tasks, "-n", "2", env=clean_home)
    workdir = tmp_path / "tasks.txt_workdir"
    wait_for(lambda: len(task_processes(marker)) >= 2, what="two running tasks")
    sent = time.monotonic()
    farmer.send_signal(signum)
    _, err = farmer.communicate(timeout=HANG)
    assert farmer.returncode == 3, err
    assert time.monotonic() - sent < 10
    assert task_processes(marker) == []  # the whole process group was killed
    interrupted = [r for r in journal(workdir) if r["e"] == "end" and r["st"] == "interrupted"]
    assert sorted(r["id"] for r in interrupted) == [0, 1]
    assert view(workdir, "failed") == {} and view(workdir, "finished") == {}
    assert sorted(view(workdir, "toprocess")) == list(range(6))
    assert not out.exists()
    release.touch()
    rerun = run_farmer(tasks, "-n", "3", env=clean_home)
    assert rerun.returncode == 0, rerun.stderr
    assert runs_per_task(out) == {i: 1 for i in range(6)}


def test_signals_twice_in_a_row_still_stop_cleanly(tmp_path: Path, clean_home: dict[str, str]) -> None:
    # A task that ignores SIGTERM would delay the stop; the second signal kills at once.
    tasks = write_list(tmp_path / "tasks.txt", ["trap '' TERM; sleep 60"] * 4)
    farmer = start_farmer(tasks, "-n", "2", env=clean_home)
    workdir = tmp_path / "tasks.txt_workdir"
    wait_for(lambda: sum(r["e"] == "claim" for r in journal(workdir)) >= 1 if (workdir / "journal.jsonl").exists()
             else False, what="a claim")
    time.sleep(0.3)
    sent = time.monotonic()
    farmer.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    farmer.send_signal(signal.SIGTERM)
    _, err = farmer.communicate(timeout=HANG)
    assert farmer.returncode == 3, err
    assert time.monotonic() - sent < 5
    assert "again" in err
    assert sorted(view(workdir, "toprocess")) == [0, 1, 2, 3]


def test_timeout_stops_with_code_3_and_the_next_run_continues(tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    tasks = sleeper_list(tmp_path, 6, 0.8, out)
    first = run_farmer(tasks, "-n", "2", "--timeout", "1.2", env=clean_home)
    assert first.returncode == 3, first.stderr
    assert "--timeout" in first.stderr
    workdir = tmp_path / "tasks.txt_workdir"
    done_first = set(view(workdir, "finished"))
    assert len(done_first) == 2 and set(runs_per_task(out)) == done_first
    second = run_farmer(tasks, "-n", "2", env=clean_home)
    assert second.returncode == 0, second.stderr
    assert runs_per_task(out) == {i: 1 for i in range(6)}


def test_kill_9_then_restart_loses_nothing_and_reruns_nothing_finished(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    tasks = sleeper_list(tmp_path, 12, 0.4, out)
    workdir = tmp_path / "tasks.txt_workdir"
    farmer = start_farmer(tasks, "-n", "3", env=clean_home)
    wait_for(lambda: len(runs_per_task(out)) >= 4, what="four finished tasks")
    farmer.kill()
    farmer.communicate(timeout=HANG)
    finished_before = {r["id"] for r in journal(workdir) if r["e"] == "end" and r["st"] == "finished"}
    assert finished_before
    rerun = run_farmer(tasks, "-n", "3", env=clean_home)
    assert rerun.returncode == 0, rerun.stderr
    assert "is dead" in rerun.stderr  # the killed farmer's claims were taken back at once
    counts = runs_per_task(out)
    assert set(counts) == set(range(12))
    # A task whose end was recorded before the kill never ran again.
    assert all(counts[i] == 1 for i in finished_before)
    recorded = [r for r in journal(workdir) if r["e"] == "end" and r["st"] == "finished"]
    assert len({r["id"] for r in recorded}) == 12
    assert len(recorded) == 12, "a task recorded finished ran again"
    assert sorted(view(workdir, "finished")) == list(range(12))


def test_tasks_die_with_a_farmer_killed_by_sigkill(tmp_path: Path, clean_home: dict[str, str]) -> None:
    """The pool's spawner notices its farmer is gone and kills the tasks at once."""
    marker = f"orphan-{tmp_path.name}"
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 60 && : {marker}"] * 2)
    farmer = start_farmer(tasks, "-n", "2", env=clean_home)
    wait_for(lambda: len(task_processes(marker)) == 2, what="two running tasks")
    farmer.kill()
    farmer.communicate(timeout=HANG)
    wait_for(lambda: task_processes(marker) == [], timeout=10, what="the tasks to die with their farmer")


def test_orphans_of_a_killed_farmer_are_killed_before_their_tasks_rerun(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    """If the farmer, its spawner and its sentinel are all killed (as by ``kill -9`` of each), the
    tasks survive in their own process groups; the next farmer kills them before rerunning."""
    marker = f"orphan-{tmp_path.name}"
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 60 && : {marker}"] * 2)
    farmer = subprocess.Popen(farmer_cmd(tasks, "-n", "2"), env=clean_home, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: len(task_processes(marker)) == 2, what="two running tasks")
    helpers = subprocess.run(["pgrep", "-P", str(farmer.pid)], capture_output=True, text=True).stdout.split()
    sentinels = [int(pid) for pid in helpers if b"_sentinel" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert len(sentinels) == 1
    os.kill(sentinels[0], signal.SIGKILL)
    os.killpg(farmer.pid, signal.SIGKILL)
    farmer.communicate(timeout=HANG)
    time.sleep(0.3)
    assert len(task_processes(marker)) == 2  # nothing was left to kill them
    rerun = start_farmer(tasks, "-n", "2", env=clean_home)
    wait_for(lambda: any(r["e"] == "dead" for r in journal(tmp_path / "tasks.txt_workdir")), what="a dead record")
    time.sleep(0.5)
    pids = task_processes(marker)
    assert len(pids) == 2  # the two new runs, not four
    rerun.send_signal(signal.SIGTERM)
    rerun.communicate(timeout=HANG)
    assert rerun.returncode == 3


def test_task_killed_by_the_same_signal_as_its_farmer_counts_as_interrupted(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    """Slurm signals a step's processes together: the task may die before the farmer hears."""
    marker = f"together-{tmp_path.name}"
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 60 && : {marker}"])
    farmer = start_farmer(tasks, env=clean_home)
    wait_for(lambda: len(task_processes(marker)) == 1, what="the running task")
    for pid in task_processes(marker):
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.2)
    farmer.send_signal(signal.SIGTERM)
    farmer.communicate(timeout=HANG)
    assert farmer.returncode == 3
    workdir = tmp_path / "tasks.txt_workdir"
    assert view(workdir, "failed") == {}
    assert view(workdir, "toprocess") == {0: f"sleep 60 && : {marker}"}


def test_task_killed_by_a_signal_while_the_farmer_runs_on_is_failed(tmp_path: Path,
                                                                    clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["kill -KILL $$"])
    result = run_farmer(tasks, env=clean_home)
    assert result.returncode == 1
    assert "signal SIGKILL" in result.stderr
    assert sorted(view(tmp_path / "tasks.txt_workdir", "failed")) == [0]


def test_stop_during_startup_leaves_a_consistent_work_directory(tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    tasks = sleeper_list(tmp_path, 20, 0.2, out)
    for delay in (0.05, 0.15, 0.3):
        farmer = start_farmer(tasks, "-n", "2", env=clean_home)
        time.sleep(delay)
        farmer.send_signal(signal.SIGTERM)
        farmer.communicate(timeout=HANG)
        assert farmer.returncode in (3, -signal.SIGTERM), farmer.returncode
    final = run_farmer(tasks, "-n", "4", env=clean_home)
    assert final.returncode == 0, final.stderr
    assert set(runs_per_task(out)) == set(range(20))
    assert sorted(view(tmp_path / "tasks.txt_workdir", "finished")) == list(range(20))


def test_no_orphans_after_a_stop(tmp_path: Path, clean_home: dict[str, str]) -> None:
    marker = f"tree-{tmp_path.name}"
    # a pipeline and a background child: all in the task's process group
    tasks = write_list(tmp_path / "tasks.txt", [f"(sleep 60 && : {marker}) & sleep 60 | cat && : {marker}"])
    farmer = start_farmer(tasks, env=clean_home)
    wait_for(lambda: len(task_processes(marker)) >= 2, what="the task's processes")
    farmer.send_signal(signal.SIGUSR1)
    farmer.communicate(timeout=HANG)
    assert farmer.returncode == 3
    wait_for(lambda: task_processes(marker) == [], timeout=5, what="no leftover processes")
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1
