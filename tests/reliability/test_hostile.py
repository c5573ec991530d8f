"""A hostile environment: the bad inputs and broken surroundings that tests/integration does not cover yet.

Already covered there (test_bad_input.py, test_disk_full.py, test_sharing.py) and not repeated here: a
missing task list, a directory as task list, an empty list, only blank lines or comments, non-UTF-8 and NUL
bytes, a work directory that is a file or cannot be created, a missing lock directory, --proc 0 / -3 /
many, --timeout -5 / soon, a bad --lock-mode or --lease-timeout, an unknown runner or handler, an INI runner
with a bad class path, an unknown key or a syntax error, a YAML syntax error, a list edited between runs,
and tasks that fill the work directory's disk.

Added here: a 1 MB task line, CRLF line ends, a bad byte deep in a long line, a read-only work directory
(read-only bind mount, since root ignores permissions) and a read-only lock directory, more option values,
YAML runners and task-list handlers with bad class paths and keys, a disk filled by another process during
the run, a disk too full for the first journal append, a list edited while the farm runs, and view files
that others can read. Each bad input must end
with exit code 2, one line naming the file, line or option, no traceback, and an unchanged work directory.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from farmhelpers import assert_one_line_error, journal, run_farmer, runs_per_task, start_farmer, view, write_list


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here (needs root): {done.stderr.strip()}")


@pytest.fixture
def read_only(tmp_path: Path):
    """A directory made read-only by a read-only bind mount onto itself; yields (directory, seal)."""
    directory = tmp_path / "ro"
    directory.mkdir()
    mounted = []

    def seal() -> None:
        mount("--bind", str(directory), str(directory))
        mounted.append(directory)
        mount("-o", "remount,bind,ro", str(directory))

    yield directory, seal
    for path in mounted:
        subprocess.run(["umount", str(path)], check=True)


# -- unusual but valid task lists -------------------------------------------------------------------


def test_a_1_mb_task_line_runs(tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    long_line = f": {'x' * (1 << 20)}; echo long >> {out}"
    tasks = write_list(tmp_path / "tasks.txt", ["echo short >> " + str(out), long_line])
    result = run_farmer(tasks, cwd=tmp_path, env=clean_home)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(out.read_text().split()) == ["long", "short"]
    assert view(tmp_path / "tasks.txt_workdir", "finished")[1] == long_line
    again = run_farmer(tasks, cwd=tmp_path, env=clean_home)  # the restart recognises the same list
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(out.read_text().split()) == ["long", "short"]


def test_a_bad_byte_deep_in_a_long_line_is_named_by_line_and_column(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = tmp_path / "tasks.txt"
    tasks.write_bytes(b"echo ok\n: " + b"y" * 900_000 + b"\xff\n")
    assert_one_line_error(run_farmer(tasks, cwd=tmp_path, env=clean_home), "tasks.txt:2:", "column 900003")
    assert not (tmp_path / "tasks.txt_workdir").exists()


def test_crlf_line_ends_are_not_part_of_the_commands(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = tmp_path / "tasks.txt"
    tasks.write_bytes(b"# made on Windows\r\necho a > a.txt\r\n\r\necho b > b.txt\r\n")
    result = run_farmer(tasks, cwd=tmp_path, env=clean_home)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("?.txt*")) == ["a.txt", "b.txt"]  # not "a.txt\r"
    assert view(tmp_path / "tasks.txt_workdir", "finished") == {0: "echo a > a.txt", 1: "echo b > b.txt"}
    tasks.write_bytes(tasks.read_bytes().replace(b"\r\n", b"\n"))  # converted to LF: the same tasks
    again = run_farmer(tasks, cwd=tmp_path, env=clean_home)
    assert again.returncode == 0, again.stderr


# -- options -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (["--proc", "1.5"], "1.5"),
    (["--proc", ""], "--proc"),
    (["--timeout", "nan"], "--timeout"),
    (["--timeout", "0"], "--timeout"),
    (["--rank-timeout", "0"], "--rank-timeout"),
    (["--lease-timeout", "-1"], "--lease-timeout"),
    (["--max-requeues", "0"], "--max-requeues"),
    (["--mode", "cluster"], "--mode"),
    (["--proc"], "--proc"),
])
def test_more_bad_option_values(tmp_path: Path, clean_home: dict[str, str], args: list[str], expected: str) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    assert_one_line_error(run_farmer(tasks, *args, cwd=tmp_path, env=clean_home), expected)
    assert not (tmp_path / "tasks.txt_workdir").exists()


# -- runner and handler definitions ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("img.yaml", "img:\n  Runner: nosuchmodule.Runner\n", "nosuchmodule"),
    ("img.yaml", "img:\n  Runner: mpifarmer.runners.NoSuchRunner\n", "NoSuchRunner"),
    ("img.yaml", "img:\n  Runner: mpifarmer.runners.ShifterRunner\n  image: x\n  imgae: y\n", "imgae"),
    ("img.yaml", "- just\n- a list\n", "img.yaml"),
    ("img.ini", "[img]\nRunner = mpifarmer.runners.NoSuchRunner\n", "NoSuchRunner"),
    ("img.ini", "[img]\nRunner = os.path.join\n", "os.path.join"),
])
def test_bad_runner_definitions_beyond_the_integration_tests(
        tmp_path: Path, clean_home: dict[str, str], name: str, content: str, expected: str) -> None:
    runners = Path(clean_home["HOME"]) / ".mpifarmer" / "runners.d"
    runners.mkdir(parents=True)
    (runners / name).write_text(content)
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    line = assert_one_line_error(run_farmer(tasks, "-r", "img", cwd=tmp_path, env=clean_home), expected)
    assert name in line
    assert not (tmp_path / "tasks.txt_workdir").exists()




@pytest.mark.parametrize(("name", "content", "expected"), [
    ("files.ini", "[files]\nTaskList = nosuchmodule.Handler\n", "nosuchmodule"),
    ("files.ini", "[files]\nTaskList = mpifarmer.tasklists.TemplateTaskList\ncomand = x {}\n", "comand"),
    ("files.ini", "[files\nTaskList = x\n", "files.ini"),
    ("files.yaml", "files:\n  TaskList: [unclosed\n", "files.yaml"),
])
def test_bad_task_list_handler_definitions(
        tmp_path: Path, clean_home: dict[str, str], name: str, content: str, expected: str) -> None:
    (tmp_path / name).write_text(content)  # handlers are also read from the current directory
    tasks = write_list(tmp_path / "tasks.txt", ["input-1"])
    line = assert_one_line_error(run_farmer(tasks, "-t", "files", cwd=tmp_path, env=clean_home), expected)
    assert name in line
    assert not (tmp_path / "tasks.txt_workdir").exists()


# -- a read-only work directory ------------------------------------------------------------------------------


@pytest.mark.needs_root
def test_existing_work_directory_on_a_read_only_mount(tmp_path: Path, clean_home: dict[str, str], read_only) -> None:
    directory, seal = read_only
    tasks = write_list(tmp_path / "tasks.txt", ["true", "true"])
    workdir = directory / "wd"
    assert run_farmer(tasks, "-w", workdir, cwd=tmp_path, env=clean_home).returncode == 0
    write_list(tasks, ["true", "true", "true"])  # a new task to record
    before = snapshot(workdir)
    seal()
    result = run_farmer(tasks, "-w", workdir, cwd=tmp_path, env=clean_home)
    assert_one_line_error(result, str(workdir), "Read-only file system")
    assert snapshot(workdir) == before


@pytest.mark.needs_root
def test_new_work_directory_on_a_read_only_mount(tmp_path: Path, clean_home: dict[str, str], read_only) -> None:
    directory, seal = read_only
    seal()
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    result = run_farmer(tasks, "-w", directory / "wd", cwd=tmp_path, env=clean_home)
    assert_one_line_error(result, str(directory / "wd"), "cannot create")


@pytest.mark.needs_root
def test_read_only_lock_directory(tmp_path: Path, clean_home: dict[str, str], read_only) -> None:
    directory, seal = read_only
    seal()
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    result = run_farmer(tasks, "--lock-dir", directory, cwd=tmp_path, env=clean_home)
    assert_one_line_error(result, str(directory), "lock")
    assert not (tmp_path / "tasks.txt_workdir").exists()


# -- a disk filled by someone else ---------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path):
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point))
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last block, as another job would."""
    filler = directory / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    return filler


@pytest.mark.needs_root
def test_disk_filled_by_another_process_during_the_run(
        tmp_path: Path, small_fs: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"  # on another filesystem: the record of what really ran
    count = 200
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 0.01; echo {task} >> {out}" for task in range(count)])
    workdir = small_fs / "wd"
    farmer = start_farmer(tasks, "-w", workdir, "-n", "2", cwd=tmp_path, env=clean_home)
    deadline = time.monotonic() + 60
    while len(runs_per_task(out)) < 40:
        assert time.monotonic() < deadline and farmer.poll() is None
        time.sleep(0.02)
    filler = fill(small_fs)
    _, err = farmer.communicate(timeout=120)
    assert farmer.returncode == 3, err
    assert "Traceback" not in err, err
    assert "full" in err or "cannot write" in err
    before = {r["id"] for r in journal(workdir) if r["e"] == "end" and r["st"] == "finished"}
    assert not [r for r in journal(workdir) if r["e"] == "end" and r["st"] == "failed"]
    filler.unlink()
    again = run_farmer(tasks, "-w", workdir, "-n", "2", cwd=tmp_path, env=clean_home)
    assert again.returncode == 0, again.stderr
    finished = Counter(r["id"] for r in journal(workdir) if r["e"] == "end" and r["st"] == "finished")
    assert finished == Counter(range(count)), "every task recorded finished exactly once"
    ran = runs_per_task(out)
    assert set(ran) == set(range(count))
    twice = {task for task, runs in ran.items() if runs > 1}
    assert not twice & before, "a task recorded finished ran again"
    assert len(twice) <= 4, f"only tasks in flight when the disk filled may run twice: {sorted(twice)}"
    assert sorted(view(workdir, "finished")) == list(range(count))


# -- a list edited while the farm runs -------------------------------------------------------------------------


def test_a_line_edited_while_the_farm_runs_adds_no_task(tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    count = 40  # 40 x 0.5 s on 2 slots: 10 s, so the watcher (every 5 s) looks while the farm runs
    lines = [f"sleep 0.5; echo {task} >> {out}" for task in range(count)]
    tasks = write_list(tmp_path / "tasks.txt", lines)
    workdir = tmp_path / "tasks.txt_workdir"
    farmer = start_farmer(tasks, "-n", "2", cwd=tmp_path, env=clean_home)
    time.sleep(1.0)
    lines[2] += "; echo edited"  # an editor rewrites the file with line 3 longer
    write_list(tasks, lines)
    _, err = farmer.communicate(timeout=120)
    added = sum(len(r["lines"]) for r in journal(workdir) if r["e"] == "add")
    assert added == count, f"the edit added {added - count} tasks: {journal(workdir)[-5:]}"
    assert farmer.returncode == 0, err
    assert runs_per_task(out) == {task: 1 for task in range(count)}
    refused = run_farmer(tasks, cwd=tmp_path, env=clean_home)
    assert_one_line_error(refused, "tasks.txt:3:")


def test_a_comment_removed_while_lines_are_appended(tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    count = 40
    lines = ["# a header comment, deleted while the farm runs"] + [
        f"sleep 0.5; echo {task} >> {out}" for task in range(count)]
    tasks = write_list(tmp_path / "tasks.txt", lines)
    workdir = tmp_path / "tasks.txt_workdir"
    farmer = start_farmer(tasks, "-n", "2", cwd=tmp_path, env=clean_home)
    time.sleep(1.0)
    appended = [f"echo appended-{n} >> {out}" for n in range(3)]
    write_list(tasks, lines[1:] + appended)  # an editor saves the list without the comment, plus 3 tasks
    _, err = farmer.communicate(timeout=120)
    recorded = [line for r in journal(workdir) if r["e"] == "add" for line in r["lines"]]
    assert recorded[count:] == appended[: len(recorded) - count], "the lines recorded for the appended IDs"
    assert "Traceback" not in err and farmer.returncode == 0, err
    restart = run_farmer(tasks, cwd=tmp_path, env=clean_home)
    assert restart.returncode == 0, restart.stderr
    words = out.read_text().split()
    assert Counter(word for word in words if word.isdigit()) == Counter(str(task) for task in range(count))
    assert sorted(word for word in words if not word.isdigit()) == [f"appended-{n}" for n in range(3)]


# -- a work directory shared with a group -------------------------------------------------------------------


def test_views_are_as_readable_as_the_journal(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    old = os.umask(0o022)
    try:
        assert run_farmer(tasks, cwd=tmp_path, env=clean_home).returncode == 0
    finally:
        os.umask(old)
    workdir = tmp_path / "tasks.txt_workdir"
    modes = {name: stat.S_IMODE((workdir / name).stat().st_mode)
             for name in ("journal.jsonl", "toprocess", "running", "finished", "failed", "timeline.json")}
    assert set(modes.values()) == {0o644}, {name: oct(mode) for name, mode in modes.items()}


@pytest.mark.needs_root
def test_a_disk_too_full_for_the_first_journal_append(
        tmp_path: Path, small_fs: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", [f"echo {task}" for task in range(40_000)])  # a ~500 kB add record
    filler = small_fs / "filler"
    size = os.statvfs(small_fs)
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k",
                    f"count={size.f_bavail * size.f_frsize // 4096 - 6}"], capture_output=True, check=True)
    workdir = small_fs / "wd"
    try:
        result = run_farmer(tasks, "-w", workdir, cwd=tmp_path, env=clean_home)
        assert "Traceback" not in result.stderr, result.stderr[-1500:]
        assert result.returncode in (2, 3), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "space" in result.stderr, result.stderr
    finally:
        filler.unlink()
    write_list(tasks, [f"echo {task}" for task in range(40)])  # a list whose logs fit
    shutil.rmtree(workdir)
    assert run_farmer(tasks, "-w", workdir, cwd=tmp_path, env=clean_home).returncode == 0
