"""Real farmers on real task lists: execution, work-directory files, restart, exit codes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from farmhelpers import run_farmer, runs_per_task, view, write_list


def test_every_line_runs_through_bash_with_its_environment(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", [
        "# a comment, not a task",
        "echo 'single quotes' \"double $((1 + 2))\" | tr a-z A-Z",
        "",
        "   ",
        "echo $PROC_NUMBER $MPIFARMER_TASK_ID $MPIFARMER_WORKDIR > env_$PROC_NUMBER.txt",
        "pwd > cwd.txt; cat > stdin.txt",
        "  # indented comment",
        "echo to-stdout; echo to-stderr >&2",
    ])
    result = run_farmer(tasks, "-n", "2", cwd=tmp_path, env=clean_home)
    assert result.returncode == 0, result.stderr
    workdir = tmp_path / "tasks.txt_workdir"
    assert view(workdir, "finished") == {
        0: "echo 'single quotes' \"double $((1 + 2))\" | tr a-z A-Z",
        1: "echo $PROC_NUMBER $MPIFARMER_TASK_ID $MPIFARMER_WORKDIR > env_$PROC_NUMBER.txt",
        2: "pwd > cwd.txt; cat > stdin.txt",
        3: "echo to-stdout; echo to-stderr >&2",
    }
    assert view(workdir, "toprocess") == {} and view(workdir, "failed") == {}
    assert (workdir / "logs" / "log_0").read_text() == "SINGLE QUOTES DOUBLE 3\n"
    assert (tmp_path / "env_1.txt").read_text() == f"1 1 {workdir}\n"
    assert (tmp_path / "cwd.txt").read_text() == f"{tmp_path}\n"
    assert (tmp_path / "stdin.txt").read_text() == ""  # stdin is /dev/null
    assert (workdir / "logs" / "log_3").read_text() == "to-stdout\nto-stderr\n"  # both streams logged


def test_failures_exit_1_and_restart_runs_nothing_again(tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"echo {i} >> {out}; exit $(( {i} % 3 == 1 ))" for i in range(9)])
    first = run_farmer(tasks, "-n", "3", env=clean_home)
    assert first.returncode == 1, first.stderr
    workdir = tmp_path / "tasks.txt_workdir"
    assert sorted(view(workdir, "failed")) == [1, 4, 7]
    assert sorted(view(workdir, "finished")) == [0, 2, 3, 5, 6, 8]
    second = run_farmer(tasks, "-n", "3", env=clean_home)
    assert second.returncode == 1
    assert runs_per_task(out) == {i: 1 for i in range(9)}


def test_retry_failed_moves_a_fixed_task_to_finished(tmp_path: Path, clean_home: dict[str, str]) -> None:
    marker = tmp_path / "fixed"
    tasks = write_list(tmp_path / "tasks.txt", ["true", f"test -e {marker}", "false"])
    assert run_farmer(tasks, env=clean_home).returncode == 1
    workdir = tmp_path / "tasks.txt_workdir"
    assert sorted(view(workdir, "failed")) == [1, 2]
    marker.touch()
    assert run_farmer(tasks, env=clean_home).returncode == 1  # without the flag nothing reruns
    assert sorted(view(workdir, "failed")) == [1, 2]
    assert run_farmer(tasks, "--retry-failed", env=clean_home).returncode == 1
    assert sorted(view(workdir, "finished")) == [0, 1]
    assert sorted(view(workdir, "failed")) == [2]


def test_default_workdir_is_beside_the_list_and_w_overrides(tmp_path: Path, clean_home: dict[str, str]) -> None:
    (tmp_path / "lists").mkdir()
    tasks = write_list(tmp_path / "lists" / "t.txt", ["true"])
    assert run_farmer("lists/t.txt", cwd=tmp_path, env=clean_home).returncode == 0
    assert view(tmp_path / "lists" / "t.txt_workdir", "finished") == {0: "true"}
    assert run_farmer(tasks, "-w", tmp_path / "elsewhere", env=clean_home).returncode == 0
    assert view(tmp_path / "elsewhere", "finished") == {0: "true"}


def test_pytaskfarmer_flags_are_accepted(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true", "true"])
    result = run_farmer("--proc", "2", "--verbose", "1", "--workdir", tmp_path / "wd", "--runner", "default",
                        "--tasklist", "default", "--timeout", "60", tasks, env=clean_home)
    assert result.returncode == 0, result.stderr
    assert "task 1 started" in result.stderr  # verbose is on
    result = run_farmer("run", tasks, "-v", "False", "-w", tmp_path / "wd2", env=clean_home)
    assert result.returncode == 0 and "started" not in result.stderr


def test_crlf_and_missing_final_newline(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = tmp_path / "tasks.txt"
    tasks.write_bytes(b"echo a\r\n# c\r\n\r\necho b\r\necho c")
    assert run_farmer(tasks, env=clean_home).returncode == 0
    assert view(tmp_path / "tasks.txt_workdir", "finished") == {0: "echo a", 1: "echo b", 2: "echo c"}
    assert (tmp_path / "tasks.txt_workdir" / "logs" / "log_2").read_text() == "c\n"


def test_a_one_megabyte_line_runs(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", [": " + "x" * (1 << 20) + "; echo ok"])
    assert run_farmer(tasks, env=clean_home).returncode == 0
    assert (tmp_path / "tasks.txt_workdir" / "logs" / "log_0").read_text() == "ok\n"


def test_timeline_has_one_complete_event_per_run(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 0.1"] * 5 + ["false"])
    assert run_farmer(tasks, "-n", "2", env=clean_home).returncode == 1
    trace = json.loads((tmp_path / "tasks.txt_workdir" / "timeline.json").read_text())
    complete = [event for event in trace["traceEvents"] if event["ph"] == "X"]
    assert sorted(event["args"]["id"] for event in complete) == list(range(6))
    assert {event["tid"] for event in complete} == {0, 1}
    assert all(event["dur"] >= 90_000 for event in complete if event["args"]["id"] < 5)
    names = [event["args"]["name"] for event in trace["traceEvents"] if event.get("name") == "process_name"]
    assert names == [f"{os.uname().nodename} rank 0"]


def test_template_handler_from_the_current_directory(tmp_path: Path, clean_home: dict[str, str]) -> None:
    (tmp_path / "files.ini").write_text("[files]\nTaskList = mpifarmer.tasklists.TemplateTaskList\n"
                                        "command = wc -c < {} > {}.size\n")
    (tmp_path / "my input.txt").write_text("12345")
    tasks = write_list(tmp_path / "inputs.txt", ["my input.txt"])
    result = run_farmer(tasks, "-t", "files", cwd=tmp_path, env=clean_home)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "my input.txt.size").read_text().strip() == "5"


def test_runner_from_home_definitions(tmp_path: Path, clean_home: dict[str, str]) -> None:
    """A ShifterRunner definition in PyTaskFarmer's place, run against a stand-in shifter that
    records its arguments (no Shifter on this machine) and runs the command after ``--``."""
    runners = Path(clean_home["HOME"]) / ".pytaskfarmer" / "runners.d"
    runners.mkdir(parents=True)
    (runners / "img.ini").write_text("[img]\nRunner = taskfarmer.runners.ShifterRunner\nimage = docker:alpine\n"
                                     "setup = export GREETING=hi\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shifter = bin_dir / "shifter"
    shifter.write_text('#!/bin/bash\necho "shifter $*" > "$MPIFARMER_WORKDIR/argv_$PROC_NUMBER"\n'
                       'while [ "$1" != "--" ]; do shift; done; shift; exec "$@"\n')
    shifter.chmod(0o755)
    env = dict(clean_home, PATH=f"{bin_dir}:{clean_home['PATH']}")
    tasks = write_list(tmp_path / "tasks.txt", ["echo $GREETING from task"])
    result = run_farmer(tasks, "-r", "img", env=env)
    assert result.returncode == 0, result.stderr
    workdir = tmp_path / "tasks.txt_workdir"
    assert (workdir / "logs" / "log_0").read_text() == "hi from task\n"
    assert (workdir / "argv_0").read_text().startswith("shifter --image=docker:alpine -- ")


def test_a_runner_with_another_shell(tmp_path: Path, clean_home: dict[str, str]) -> None:
    """``shell = sh`` hands each line to sh instead of bash: $BASH_VERSION is unset there."""
    runners = Path(clean_home["HOME"]) / ".mpifarmer" / "runners.d"
    runners.mkdir(parents=True)
    (runners / "sh.yaml").write_text("sh: {Runner: mpifarmer.runners.BasicRunner, shell: sh}\n")
    tasks = write_list(tmp_path / "tasks.txt", ['echo "bash=${BASH_VERSION:-none} id=$PROC_NUMBER"'] * 2)
    workdir = tmp_path / "tasks.txt_workdir"
    assert run_farmer(tasks, "-r", "sh", env=clean_home).returncode == 0
    assert (workdir / "logs" / "log_1").read_text() == "bash=none id=1\n"
    (tmp_path / "again.txt").write_text(tasks.read_text())
    assert run_farmer(tmp_path / "again.txt", env=clean_home).returncode == 0  # the default is still bash
    assert re.fullmatch(r"bash=\d\S* id=1\n", (tmp_path / "again.txt_workdir" / "logs" / "log_1").read_text())


def test_verbose_lines_name_the_slot_each_task_started_in(tmp_path: Path, clean_home: dict[str, str]) -> None:
    """Short tasks are queued in the pool ahead of their start: the start line comes when the
    task really starts, with its slot, and the end line follows it."""
    tasks = write_list(tmp_path / "tasks.txt", ["true"] * 60)
    result = run_farmer(tasks, "-n", "2", "-v", env=clean_home)
    assert result.returncode == 0, result.stderr
    starts = dict(re.findall(r"task (\d+) started in slot (-?\d+): true", result.stderr))
    assert sorted(map(int, starts)) == list(range(60))
    assert set(starts.values()) <= {"0", "1"}
    for task in (0, 59):
        assert result.stderr.index(f"task {task} started") < result.stderr.index(f"task {task} finished")


def test_a_pytaskfarmer_work_directory_is_taken_over(tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"echo {i} >> {out}" for i in range(5)])
    workdir = tmp_path / "tasks.txt_workdir"
    workdir.mkdir()
    (workdir / "finished").write_text(f"3 echo 3 >> {out}\n0 echo 0 >> {out}\n")
    (workdir / "failed").write_text(f"1 echo 1 >> {out}\n")
    (workdir / "toprocess").write_text(f"2 echo 2 >> {out}\n4 echo 4 >> {out}\n")
    result = run_farmer(tasks, env=clean_home)
    assert result.returncode == 1, result.stderr  # task 1 failed under PyTaskFarmer
    assert runs_per_task(out) == {2: 1, 4: 1}
    assert sorted(view(workdir, "finished")) == [0, 2, 3, 4]
    assert sorted(view(workdir, "failed")) == [1]
    assert run_farmer(tasks, "--retry-failed", env=clean_home).returncode == 0
    assert runs_per_task(out) == {1: 1, 2: 1, 4: 1}


def test_a_pytaskfarmer_work_directory_of_another_list_is_refused(tmp_path: Path,
                                                                  clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["echo a", "echo b"])
    workdir = tmp_path / "tasks.txt_workdir"
    workdir.mkdir()
    (workdir / "finished").write_text("1 echo something else\n")
    result = run_farmer(tasks, env=clean_home)
    assert result.returncode == 2
    assert "finished:1" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (workdir / "finished").read_text() == "1 echo something else\n"


def test_count_words_agree_with_their_numbers(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    result = run_farmer(tasks, "-n", "1", env=clean_home)
    assert result.returncode == 0, result.stderr
    assert ": 1 task, 1 to run" in result.stderr and "1 worker," in result.stderr, result.stderr
    assert "1 workers" not in result.stderr and "1 tasks" not in result.stderr
    more = write_list(tmp_path / "more.txt", ["true", "true"])
    result = run_farmer(more, "-n", "2", env=clean_home)
    assert ": 2 tasks, 2 to run" in result.stderr and "2 workers," in result.stderr, result.stderr


def test_a_journal_of_a_newer_format_is_refused_in_one_line(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("echo a\n")
    workdir = tmp_path / "wd"
    workdir.mkdir()
    journal = b'{"e":"journal","v":99,"gen":3}\n'
    (workdir / "journal.jsonl").write_bytes(journal)
    result = run_farmer(tasks, "-w", workdir, env=clean_home, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "newer" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (workdir / "journal.jsonl").read_bytes() == journal
