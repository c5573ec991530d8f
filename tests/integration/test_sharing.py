"""Several farmers on one work directory, lock modes, leases, and a task list that grows or changes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from farmhelpers import HANG, farmer_cmd, journal, run_farmer, runs_per_task, start_farmer, view, write_list


def counting_list(tmp_path: Path, count: int, seconds: float, out: Path) -> Path:
    return write_list(tmp_path / "tasks.txt", [f"sleep {seconds}; echo {i} >> {out}" for i in range(count)])


@pytest.mark.parametrize("mode", ["flock", "soft", "strict"])
def test_farmers_share_one_work_directory(tmp_path: Path, clean_home: dict[str, str], mode: str) -> None:
    out = tmp_path / "out"
    tasks = counting_list(tmp_path, 60, 0.05, out)
    farmers = [start_farmer(tasks, "-n", "2", "--lock-mode", mode, env=clean_home) for _ in range(3)]
    for farmer in farmers:
        _, err = farmer.communicate(timeout=HANG)
        assert farmer.returncode == 0, err
    assert runs_per_task(out) == {i: 1 for i in range(60)}
    workdir = tmp_path / "tasks.txt_workdir"
    records = journal(workdir)
    by_farmer = {r["f"] for r in records if r["e"] == "end"}
    assert len(by_farmer) == 3, "every farmer ran some tasks"
    claimed = [task for r in records if r["e"] == "claim" for task in r["ids"]]
    assert sorted(claimed) == list(range(60)), "each task claimed exactly once"
    assert sorted(view(workdir, "finished")) == list(range(60))


def test_a_farmer_leaves_with_0_when_the_last_tasks_are_held_by_a_live_farmer(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    release = tmp_path / "release"
    tasks = write_list(tmp_path / "tasks.txt", [f"while [ ! -e {release} ]; do sleep 0.05; done"])
    holder = start_farmer(tasks, env=clean_home)
    workdir = tmp_path / "tasks.txt_workdir"
    deadline = time.monotonic() + 30
    while not (workdir / "journal.jsonl").exists() or not any(r["e"] == "claim" for r in journal(workdir)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    late = run_farmer(tasks, env=clean_home, timeout=30)
    assert late.returncode == 0, late.stderr
    assert holder.poll() is None  # still running its task
    release.touch()
    holder.communicate(timeout=HANG)
    assert holder.returncode == 0


def forge_ghost(workdir: Path, lines: list[str], held: list[int], beat_age: float) -> None:
    """A work directory in which a farmer on another node holds ``held`` and last beat ``beat_age`` ago."""
    workdir.mkdir()
    ghost = "f0-othernode-4242"
    with (workdir / "journal.jsonl").open("w") as stream:
        for record in ({"e": "add", "first": 0, "lines": lines},
                       {"e": "hello", "f": ghost, "host": "othernode", "boot": "x", "pid": 4242, "t": time.time()},
                       {"e": "claim", "f": ghost, "ids": held}):
            stream.write(json.dumps(record) + "\n")
    (workdir / "farmers").mkdir()
    beat = workdir / "farmers" / ghost
    beat.write_text("{}")
    old = time.time() - beat_age
    os.utime(beat, (old, old))


def test_claims_of_a_farmer_elsewhere_return_when_its_lease_expires(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    """A farmer on another node cannot be checked by pid: only its heartbeat tells."""
    out = tmp_path / "out"
    tasks = counting_list(tmp_path, 4, 0, out)
    forge_ghost(tmp_path / "tasks.txt_workdir", tasks.read_text().splitlines(), [1, 2], beat_age=10)
    result = run_farmer(tasks, "--lease-timeout", "5", env=clean_home, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "lease" in result.stderr
    assert runs_per_task(out) == {0: 1, 1: 1, 2: 1, 3: 1}


def test_suspect_farmer_is_waited_for_until_its_lease_expires(tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    tasks = counting_list(tmp_path, 1, 0, out)
    # late by more than 3 beats (of 0.4 s) but within the 4 s lease: suspect, so wait rather than leave
    forge_ghost(tmp_path / "tasks.txt_workdir", tasks.read_text().splitlines(), [0], beat_age=3)
    started = time.monotonic()
    result = run_farmer(tasks, "--lease-timeout", "4", env=clean_home, timeout=60)
    assert result.returncode == 0, result.stderr
    assert runs_per_task(out) == {0: 1}  # it waited, then took the task over
    assert time.monotonic() - started >= 0.9


def test_lines_appended_while_running_run_in_the_same_invocation(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("".join(f"sleep 3; echo {i} >> {out}\n" for i in range(4)) + f"echo 4 >> {out}")
    farmer = start_farmer(tasks, "-n", "2", env=clean_home)
    time.sleep(1)
    with tasks.open("a") as stream:  # finish the unterminated line, then add two more
        stream.write(f"\n# more work\necho 5 >> {out}\necho 6 >> {out}\n")
    _, err = farmer.communicate(timeout=HANG)
    assert farmer.returncode == 0, err
    assert "2 tasks appended" in err
    assert runs_per_task(out) == {i: 1 for i in range(7)}
    assert sorted(view(tmp_path / "tasks.txt_workdir", "finished")) == list(range(7))


def test_restart_adds_appended_lines_and_ignores_comment_changes(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", ["# v1", f"echo 0 >> {out}", f"echo 1 >> {out}"])
    assert run_farmer(tasks, env=clean_home).returncode == 0
    write_list(tasks, ["# v2: comments changed", "", f"echo 0 >> {out}", "# note", f"echo 1 >> {out}",
                       f"echo 2 >> {out}"])
    result = run_farmer(tasks, env=clean_home)
    assert result.returncode == 0, result.stderr
    assert runs_per_task(out) == {0: 1, 1: 1, 2: 1}


@pytest.mark.parametrize(("new_lines", "line"), [
    (["echo 0", "echo CHANGED", "echo 2"], 3),  # edited: line 3 of the file (after the comment)
    (["echo 0", "echo 2"], 3),                  # removed
    (["echo 0", "echo 2", "echo 1"], 3),        # reordered
    (["echo 0", "echo 1"], 4),                  # last one removed: points past the end
])
def test_changed_task_lines_are_refused_and_nothing_is_written(
        tmp_path: Path, clean_home: dict[str, str], new_lines: list[str], line: int) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["# header", "echo 0", "echo 1", "echo 2"])
    assert run_farmer(tasks, env=clean_home).returncode == 0
    workdir = tmp_path / "tasks.txt_workdir"
    before = {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file() and p.name != "lock"}
    write_list(tasks, ["# header", *new_lines])
    result = run_farmer(tasks, env=clean_home)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert f"{tasks}:{line}:" in lines[0]
    after = {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file() and p.name != "lock"}
    assert after == before


def test_farmers_exit_codes_documented_in_help() -> None:
    result = subprocess.run(farmer_cmd("--help"), capture_output=True, text=True)
    assert result.returncode == 0
    for code in ("0", "1", "2", "3"):
        assert f"\n  {code}  " in result.stdout
    for option in ("--proc", "--timeout", "--workdir", "--verbose", "--runner", "--tasklist", "--retry-failed",
                   "--lock-mode", "--lock-dir", "--lease-timeout", "--version"):
        assert option in result.stdout


def test_lines_appended_near_the_end_are_run_by_farmers_about_to_leave(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    """Appended after the farmers' last look at the list and before they conclude that nothing is left."""
    out = tmp_path / "out"
    tasks = counting_list(tmp_path, 10, 0.8, out)
    farmers = [start_farmer(tasks, "-n", "1", env=clean_home) for _ in range(2)]
    time.sleep(2.5)
    with tasks.open("a") as stream:
        stream.write("".join(f"sleep 0.1; echo {i} >> {out}\n" for i in range(10, 20)))
    errors = []
    for farmer in farmers:
        _, err = farmer.communicate(timeout=HANG)
        assert farmer.returncode == 0, err
        errors.append(err)
    assert runs_per_task(out) == {i: 1 for i in range(20)}
    assert sorted(view(tmp_path / "tasks.txt_workdir", "finished")) == list(range(20))
    # Each stop line counts what the list holds (the first farmer to leave may leave the last tasks to
    # the other, which holds them), and the work directory ends complete.
    for err in errors:
        finished, failed, left = map(int, re.search(r"work directory: (\d+) finished, (\d+) failed, (\d+) left",
                                                    err).groups())
        assert finished + failed + left == 20, err
    assert any("work directory: 20 finished, 0 failed, 0 left" in err for err in errors), errors


def test_the_stop_line_counts_lines_appended_but_not_yet_recorded(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = counting_list(tmp_path, 2, 1.5, tmp_path / "out")
    farmer = start_farmer(tasks, "-n", "2", env=clean_home)
    time.sleep(1)
    with tasks.open("a") as stream:
        stream.write("true\ntrue\ntrue\n")
    farmer.send_signal(signal.SIGTERM)
    _, err = farmer.communicate(timeout=HANG)
    assert farmer.returncode == 3, err
    assert "work directory: 0 finished, 0 failed, 5 left" in err, err
