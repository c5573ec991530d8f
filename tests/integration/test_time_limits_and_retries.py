"""Per-task timeouts, retries and --max-failures with real farmers (local, lock mode, mpiexec), and
their bad options: exit 2, one line."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
from farmhelpers import (
    MPIEXEC,
    assert_one_line_error,
    farmer_cmd,
    journal,
    run_farmer,
    start_farmer,
    task_processes,
    view,
    wait_for,
    write_list,
)


def ends_of(workdir: Path, task: int | None = None) -> list[dict]:
    return [r for r in journal(workdir) if r["e"] == "end" and (task is None or r["id"] == task)]


def counter(path: Path) -> str:
    """Shell that appends a line to ``path`` and sets $c to the number of runs so far (this one included)."""
    return f"echo x >> {path}; c=$(wc -l < {path})"


# -- timeouts --


def test_a_task_past_its_timeout_is_stopped_within_the_grace_failed_and_its_slot_reused(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", [
        "sleep 30",  # dies of the SIGTERM
        "trap '' TERM; sleep 30",  # ignores it: killed after the grace
        "echo done"])
    result = run_farmer(tasks, "-n", "1", "--task-timeout", "0.5", env=clean_home)
    assert result.returncode == 1, result.stderr
    workdir = tmp_path / "tasks.txt_workdir"
    first, second, third = (ends_of(workdir, task)[0] for task in range(3))
    assert (first["st"], first["why"], first["sig"]) == ("failed", "timed-out", signal.SIGTERM)
    assert (second["st"], second["why"], second["sig"]) == ("failed", "timed-out", signal.SIGKILL)
    assert third["st"] == "finished"
    assert 0.5 <= first["t1"] - first["t0"] < 0.5 + 3.0  # stopped within the grace
    assert 0.5 + 3.0 <= second["t1"] - second["t0"] < 0.5 + 3.0 + 5.0  # the grace, then SIGKILL
    # the slot was taken by the next task at once, not after a recheck of the work directory
    assert second["t0"] - first["t1"] < 1.5 and third["t0"] - second["t1"] < 1.5
    assert view(workdir, "failed") == {0: "sleep 30", 1: "trap '' TERM; sleep 30"}  # PyTaskFarmer's lines
    assert "ran longer than its time limit" in result.stderr


def test_a_timed_out_run_ends_when_its_whole_process_group_is_gone(tmp_path: Path,
                                                                   clean_home: dict[str, str]) -> None:
    # The first run's shell dies of the SIGTERM, its subshell ignores it and still holds the task's
    # lock: the retry must wait for it (killed after the grace), not start beside it. The crash
    # harness met the same with a plain `sleep` that had not yet exited 15 ms after the SIGTERM.
    runs, out, lock, marker = tmp_path / "runs", tmp_path / "out", tmp_path / "lock", f"group-{tmp_path.name}"
    tasks = write_list(tmp_path / "tasks.txt", [
        f"exec 9>>{lock}; flock -n 9 || echo overlap >> {out}; {counter(runs)}; "
        f"if [ $c -eq 1 ]; then (trap '' TERM; sleep 30; echo lived >> {out}); fi; echo run $c >> {out} # {marker}"])
    result = run_farmer(tasks, "-n", "2", "--task-timeout", "0.5", "--retries", "1", env=clean_home)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "run 2\n"  # no overlap, and the subshell did not live on
    first, second = ends_of(tmp_path / "tasks.txt_workdir", 0)
    assert (first["st"], first["why"]) == ("retrying", "timed-out")
    assert first["t1"] - first["t0"] >= 0.5 + 3.0  # its subshell went on until the SIGKILL after the grace
    assert second["t0"] >= first["t1"] and second["st"] == "finished"
    assert task_processes(marker) == []


# -- retries --


def test_a_task_that_fails_twice_then_succeeds_ends_finished_with_every_attempts_log(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    runs, stubborn = tmp_path / "runs", tmp_path / "stubborn"
    tasks = write_list(tmp_path / "tasks.txt", [
        f"{counter(runs)}; echo run $c; [ $c -ge 3 ]",  # fails twice, then succeeds
        f"{counter(stubborn)}; exit 7"])  # fails every time
    result = run_farmer(tasks, "-n", "2", "--retries", "2", "--retry-delay", "0.3", "-v", env=clean_home)
    assert result.returncode == 1, result.stderr
    workdir = tmp_path / "tasks.txt_workdir"
    ends = ends_of(workdir, 0)
    assert [(r["st"], r.get("att")) for r in ends] == [("retrying", 1), ("retrying", 2), ("finished", 3)]
    assert all(later["t0"] >= earlier["t1"] + 0.3 for earlier, later in zip(ends, ends[1:], strict=False))
    assert [(r["st"], r["rc"], r["att"]) for r in ends_of(workdir, 1)] == [
        ("retrying", 7, 1), ("retrying", 7, 2), ("failed", 7, 3)]
    assert view(workdir, "finished") == {0: tasks.read_text().splitlines()[0]}
    assert list(view(workdir, "failed")) == [1]
    logs = workdir / "logs"
    assert (logs / "log_0").read_text() == "mpifarmer: task 0, attempt 3 of 3\nrun 3\n"
    assert (logs / "log_0.1").read_text() == "mpifarmer: task 0, attempt 1 of 3\nrun 1\n"
    assert (logs / "log_0.2").read_text() == "mpifarmer: task 0, attempt 2 of 3\nrun 2\n"
    assert result.stderr.count("task 0 failed, attempt") == 2  # --verbose logs each retry
    assert "task 1 failed after 3 attempts (exit code 7" in result.stderr


@pytest.mark.parametrize("layout", ["files", "packed"])
def test_mpifarmer_log_shows_every_attempt_begun_by_its_attempt_line(tmp_path: Path, clean_home: dict[str, str],
                                                                     layout: str) -> None:
    runs = tmp_path / "runs"
    tasks = write_list(tmp_path / "tasks.txt", [f"{counter(runs)}; echo run $c; [ $c -ge 2 ]"])
    result = run_farmer(tasks, "--retries", "1", "--logs", layout, env=clean_home)
    assert result.returncode == 0, result.stderr
    shown = subprocess.run(farmer_cmd("log", "0", tasks), env=clean_home, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "run 1 of 2" in lines[0] and "run 2 of 2" in lines[3], lines
    assert lines[1:3] == ["mpifarmer: task 0, attempt 1 of 2", "run 1"]
    assert lines[4:] == ["mpifarmer: task 0, attempt 2 of 2", "run 2"]


def test_attempts_survive_a_sigkill_and_a_restart(tmp_path: Path, clean_home: dict[str, str]) -> None:
    runs = tmp_path / "runs"
    # runs 1 and 2 fail, run 3 hangs (the farmer is killed meanwhile), run 4 fails
    tasks = write_list(tmp_path / "tasks.txt", [f"{counter(runs)}; if [ $c -eq 3 ]; then sleep 60; fi; exit 1"])
    farmer = start_farmer(tasks, "--retries", "2", env=clean_home)
    try:
        wait_for(lambda: runs.exists() and len(runs.read_text().split()) == 3, what="the third run")
    finally:
        farmer.kill()
        farmer.communicate(timeout=60)
    result = run_farmer(tasks, "--retries", "2", env=clean_home)
    assert result.returncode == 1, result.stderr
    workdir = tmp_path / "tasks.txt_workdir"
    # the killed run was no attempt; the restart went on from two used: one left, not three
    assert [(r["st"], r.get("att")) for r in ends_of(workdir)] == [("retrying", 1), ("retrying", 2), ("failed", 3)]
    assert len(runs.read_text().split()) == 4
    assert (workdir / "logs" / "log_0").read_text().startswith("mpifarmer: task 0, attempt 3 of 3\n")


def test_a_drain_never_consumes_an_attempt(tmp_path: Path, clean_home: dict[str, str]) -> None:
    runs = tmp_path / "runs"
    # runs 1 and 2 wait to be stopped by a drain; runs 3 and 4 fail
    tasks = write_list(tmp_path / "tasks.txt", [f"{counter(runs)}; if [ $c -le 2 ]; then sleep 60; fi; exit 1"])
    for drained in (1, 2):
        farmer = start_farmer(tasks, "--retries", "1", env=clean_home)
        wait_for(lambda n=drained: runs.exists() and len(runs.read_text().split()) == n, what=f"run {drained}")
        farmer.send_signal(signal.SIGTERM)
        _, err = farmer.communicate(timeout=60)
        assert farmer.returncode == 3, err
    result = run_farmer(tasks, "--retries", "1", env=clean_home)
    assert result.returncode == 1, result.stderr
    ends = ends_of(tmp_path / "tasks.txt_workdir")
    assert [(r["st"], r.get("att")) for r in ends] == [("interrupted", None), ("interrupted", None),
                                                      ("retrying", 1), ("failed", 2)]


# -- --max-failures --


def failing_list(tmp_path: Path, count: int = 30, failing: tuple[int, ...] = (1, 2, 3)) -> Path:
    return write_list(tmp_path / "tasks.txt", ["exit 1" if i in failing else "sleep 0.3" for i in range(count)])


def check_stopped_by_failures(workdir: Path, count: int, limit: int) -> None:
    finished, failed, pending = (view(workdir, name) for name in ("finished", "failed", "toprocess"))
    assert len(failed) >= limit
    assert pending and len(finished) + len(failed) + len(pending) == count  # the rest is left, pending
    assert view(workdir, "running") == {}


def test_max_failures_stops_the_farm_with_4_and_a_restart_stops_at_once(tmp_path: Path,
                                                                        clean_home: dict[str, str]) -> None:
    tasks = failing_list(tmp_path)
    result = run_farmer(tasks, "-n", "2", "--max-failures", "3", env=clean_home)
    assert result.returncode == 4, result.stderr
    assert "3 tasks of the work directory have failed (--max-failures 3)" in result.stderr
    workdir = tmp_path / "tasks.txt_workdir"
    check_stopped_by_failures(workdir, 30, 3)
    before = ends_of(workdir)
    again = run_farmer(tasks, "-n", "2", "--max-failures", "3", env=clean_home)
    assert again.returncode == 4, again.stderr
    assert ends_of(workdir) == before  # nothing ran


def test_max_failures_ends_every_farmer_of_the_work_directory_with_4(tmp_path: Path,
                                                                     clean_home: dict[str, str]) -> None:
    tasks = failing_list(tmp_path, count=60, failing=(4, 5, 6))
    farmers = [start_farmer(tasks, "-n", "2", "--max-failures", "3", env=clean_home) for _ in range(3)]
    codes = []
    for farmer in farmers:
        _, err = farmer.communicate(timeout=120)
        codes.append((farmer.returncode, err[-2000:]))
    assert [code for code, _ in codes] == [4, 4, 4], codes
    check_stopped_by_failures(tmp_path / "tasks.txt_workdir", 60, 3)


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install mpich")
def test_max_failures_in_mpi_mode_ends_the_job_with_4(tmp_path: Path, clean_home: dict[str, str]) -> None:
    lines = [json.dumps({"cmd": "sleep 0.3"})] * 30
    for task in (2, 3, 4):
        lines[task] = json.dumps({"cmd": "sleep 30", "timeout": 0.3})  # they fail by timing out
    tasks = write_list(tmp_path / "tasks.jsonl", lines)
    result = subprocess.run([MPIEXEC, "-n", "2", *farmer_cmd(tasks, "-t", "jsonl", "-n", "2", "--max-failures", "2")],
                            env=clean_home, capture_output=True, text=True, timeout=120)
    assert result.returncode == 4, result.stderr
    workdir = tmp_path / "tasks.jsonl_workdir"
    check_stopped_by_failures(workdir, 30, 2)
    assert {r["why"] for r in ends_of(workdir) if r["st"] == "failed"} == {"timed-out"}


# -- bad options --


@pytest.mark.parametrize(("args", "option"), [
    (["--task-timeout", "0"], "--task-timeout"), (["--task-timeout", "-1"], "--task-timeout"),
    (["--task-timeout", "soon"], "--task-timeout"), (["--task-timeout"], "--task-timeout"),
    (["--retries", "-1"], "--retries"), (["--retries", "1.5"], "--retries"), (["--retries", "x"], "--retries"),
    (["--retry-delay", "-1"], "--retry-delay"), (["--retry-delay", "nan"], "--retry-delay"),
    (["--max-failures", "0"], "--max-failures"), (["--max-failures", "-2"], "--max-failures"),
    (["--max-failures", "many"], "--max-failures"),
])
def test_a_bad_option_value_is_exit_2_in_one_line(tmp_path: Path, clean_home: dict[str, str], args: list[str],
                                                  option: str) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    assert_one_line_error(run_farmer(tasks, *args, env=clean_home), f"argument {option}:")
    assert not (tmp_path / "tasks.txt_workdir").exists()
