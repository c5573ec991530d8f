"""--logs packed and mpifarmer log ID, with real farmers: local mode, mpiexec -n 2, a farmer killed
mid-run and restarted, a spawner killed mid-append, the files layout, and switching layouts."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from farmhelpers import (
    HANG,
    MPIEXEC,
    assert_one_line_error,
    farmer_cmd,
    install_handler,
    journal,
    run_farmer,
    start_farmer,
    view,
    wait_for,
    write_list,
)

from mpifarmer.store.packs import read_index, verify


def log_of(workdir: Path, task: int, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(farmer_cmd("log", str(task), "-w", workdir), env=env, capture_output=True, timeout=HANG)


def check_indexes(workdir: Path) -> dict[int, list[dict]]:
    """Every index line is well-formed and its bytes are in its pack; return the entries by task."""
    by_task: dict[int, list[dict]] = {}
    for path in sorted((workdir / "logs").glob("pack.*.index")):
        index = read_index(os.fspath(path))
        assert index.damaged == 0 and index.tail == b"", path
        for entry in index.entries:
            assert verify(index.stem, entry) is not None, (path, entry)
            by_task.setdefault(entry["id"], []).append(entry)
    return by_task


def test_packed_logs_hold_every_tasks_output_in_two_files(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", [f"echo out {i}; echo err {i} >&2; printf 'no newline'"
                                                for i in range(200)])
    result = run_farmer(tasks, "-n", "2", "--logs", "packed", env=clean_home)
    assert result.returncode == 0, result.stderr
    workdir = tmp_path / "tasks.txt_workdir"
    names = sorted(os.listdir(workdir / "logs"))
    assert len(names) == 2 and names[0].endswith(".g0.0") and names[1].endswith(".g0.index"), names
    assert len(check_indexes(workdir)) == 200
    for task in (0, 57, 199):
        shown = log_of(workdir, task, clean_home)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == f"out {task}\nerr {task}\nno newline".encode()
    # the task list works as the work directory's name, as for a run
    by_list = subprocess.run(farmer_cmd("log", "12", tasks), env=clean_home, capture_output=True, timeout=HANG)
    assert by_list.stdout == b"out 12\nerr 12\nno newline"


def test_retried_runs_show_every_attempt_newest_last(tmp_path: Path, clean_home: dict[str, str]) -> None:
    flag = tmp_path / "flag"
    tasks = write_list(tmp_path / "tasks.txt", [f"if [ -e {flag} ]; then echo second; else echo first; exit 4; fi"])
    assert run_farmer(tasks, "--logs", "packed", env=clean_home).returncode == 1
    flag.touch()
    assert run_farmer(tasks, "--logs", "packed", "--retry-failed", env=clean_home).returncode == 0
    shown = log_of(tmp_path / "tasks.txt_workdir", 0, clean_home)
    lines = shown.stdout.decode().splitlines()
    assert lines[1::2] == ["first", "second"], lines
    assert "run 1 of 2" in lines[0] and "exit code 4" in lines[0]
    assert "run 2 of 2" in lines[2] and "exit code 0" in lines[2]


def test_the_files_layout_is_unchanged_and_readable_and_switching_keeps_both(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    flag = tmp_path / "flag"
    tasks = write_list(tmp_path / "tasks.txt", ["echo plain", f"[ -e {flag} ] && echo packed-retry || exit 1"])
    assert run_farmer(tasks, env=clean_home).returncode == 1
    workdir = tmp_path / "tasks.txt_workdir"
    assert sorted(os.listdir(workdir / "logs")) == ["log_0", "log_1"]
    shown = log_of(workdir, 0, clean_home)
    assert shown.returncode == 0 and shown.stdout == b"plain\n"
    flag.touch()
    assert run_farmer(tasks, "--logs", "packed", "--retry-failed", env=clean_home).returncode == 0
    shown = log_of(workdir, 1, clean_home)
    lines = shown.stdout.decode().splitlines()
    assert len(lines) == 3 and "log_1" in lines[0] and lines[2] == "packed-retry", lines


def test_under_mpiexec_each_rank_writes_its_own_packs(tmp_path: Path, clean_home: dict[str, str]) -> None:
    if MPIEXEC is None:
        pytest.skip("no mpiexec: pip install mpich")
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 0.02; echo task $PROC_NUMBER" for _ in range(120)])
    result = subprocess.run([MPIEXEC, "-n", "2", *farmer_cmd(tasks, "-n", "2", "--logs", "packed")], env=clean_home,
                            capture_output=True, text=True, timeout=HANG)
    assert result.returncode == 0, result.stderr
    workdir = tmp_path / "tasks.txt_workdir"
    ranks_of_ends = {r["id"]: r["rank"] for r in journal(workdir) if r["e"] == "end"}
    assert set(ranks_of_ends.values()) == {0, 1}
    for path in (workdir / "logs").glob("pack.*.index"):
        index = read_index(os.fspath(path))
        assert path.name.startswith(f"pack.{index.identity['f']}.r{index.identity['rank']}.g0"), path.name
        for entry in index.entries:  # a rank packs only what it ran
            assert ranks_of_ends[entry["id"]] == index.identity["rank"]
    assert sorted(check_indexes(workdir)) == list(range(120))
    for task in (0, 1, 60, 119):
        assert log_of(workdir, task, clean_home).stdout == f"task {task}\n".encode()


def test_a_farmer_killed_mid_run_leaves_every_finished_tasks_output_readable(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", [f"echo begin {i}; sleep 0.{i % 3}; echo done {i}" for i in range(60)])
    workdir = tmp_path / "tasks.txt_workdir"
    farmer = start_farmer(tasks, "-n", "3", "--logs", "packed", env=clean_home)
    wait_for(lambda: workdir.joinpath("journal.jsonl").exists()
             and sum(r["e"] == "end" for r in journal(workdir)) >= 15, what="15 ends")
    farmer.send_signal(signal.SIGKILL)
    farmer.communicate(timeout=HANG)
    finished_before = {r["id"] for r in journal(workdir) if r["e"] == "end" and r["st"] == "finished"}
    assert 15 <= len(finished_before) < 60
    restart = run_farmer(tasks, "-n", "3", "--logs", "packed", env=clean_home)
    assert restart.returncode == 0, restart.stderr
    assert sorted(view(workdir, "finished")) == list(range(60))
    check_indexes(workdir)
    assert len(list((workdir / "logs").glob("pack.*.index"))) == 2  # one per farmer
    for task in range(60):
        shown = log_of(workdir, task, clean_home)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.endswith(f"begin {task}\ndone {task}\n".encode()), (task, shown.stdout)


def test_a_spawner_killed_while_appending_loses_only_that_run(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", [f"echo run of {i}" for i in range(30)])
    env = dict(clean_home, MPIFARMER_PACK_FAULT="5:torn")  # the first spawner dies writing its 5th record
    result = run_farmer(tasks, "-n", "2", "--logs", "packed", env=env)
    assert result.returncode == 0, result.stderr
    assert "the spawner process died (killed by SIGKILL)" in result.stderr
    workdir = tmp_path / "tasks.txt_workdir"
    first = read_index(os.fspath(next((workdir / "logs").glob("pack.*.g0.index"))))
    # runs 1 to 4 ended before the kill; those whose index line shared the dying write are lost, and
    # ran again (the farmer had not been told of their end)
    assert 1 <= len(first.entries) <= 4 and [e["run"] for e in first.entries] == list(range(1, len(first.entries) + 1))
    by_task = check_indexes(workdir)
    assert sorted(by_task) == list(range(30))
    for task in range(30):
        assert log_of(workdir, task, clean_home).stdout.endswith(f"run of {task}\n".encode())


def test_a_task_that_cannot_start_has_its_reason_as_output(tmp_path: Path, clean_home: dict[str, str]) -> None:
    handler = ("from mpifarmer.tasklists import TaskList\n\nclass Big(TaskList):\n"
               "    def command(self, line):\n        return line, {'resources': {'slots': 9}}\n")
    env = install_handler(tmp_path, clean_home, "big", "bighandler", handler, "Big")
    tasks = write_list(tmp_path / "tasks.txt", ["echo never"])
    result = run_farmer(tasks, "-n", "2", "-t", "big", "--logs", "packed", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    shown = log_of(tmp_path / "tasks.txt_workdir", 0, env)
    assert shown.stdout.startswith(b"mpifarmer: not started: it asks for 9 slots"), shown.stdout


def test_bad_log_options_and_requests_are_one_line_errors(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["echo a"])
    assert_one_line_error(run_farmer(tasks, "--logs", "nonsense", env=clean_home), "--logs", "nonsense")
    assert not (tmp_path / "tasks.txt_workdir").exists()
    assert_one_line_error(run_farmer("log", "0", tasks, env=clean_home), "is not a work directory")
    assert run_farmer(tasks, "--logs", "packed", env=clean_home).returncode == 0
    assert_one_line_error(run_farmer("log", "1", tasks, env=clean_home), "task 1 is not in", "1 tasks")
    assert_one_line_error(run_farmer("log", "-3", tasks, env=clean_home), "-3")
    assert_one_line_error(run_farmer("log", "zero", tasks, env=clean_home), "'zero' is not a task ID")
    assert_one_line_error(run_farmer("log", "0", env=clean_home), "give the task list or -w")
    assert sum(r["e"] == "end" for r in journal(tmp_path / "tasks.txt_workdir")) == 1  # the log reader wrote nothing
