"""Bad input ends with exit code 2, one line naming what is wrong, and an untouched work directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from farmhelpers import assert_one_line_error, run_farmer, write_list


def test_missing_task_list(tmp_path: Path, clean_home: dict[str, str]) -> None:
    result = run_farmer(tmp_path / "nope.txt", env=clean_home)
    assert_one_line_error(result, "nope.txt", "no such file")
    assert not (tmp_path / "nope.txt_workdir").exists()


def test_directory_as_task_list(tmp_path: Path, clean_home: dict[str, str]) -> None:
    assert_one_line_error(run_farmer(tmp_path, env=clean_home), str(tmp_path), "directory")


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"# only\n  # comments\n"])
def test_list_without_tasks(tmp_path: Path, clean_home: dict[str, str], content: bytes) -> None:
    tasks = tmp_path / "tasks.txt"
    tasks.write_bytes(content)
    assert_one_line_error(run_farmer(tasks, env=clean_home), "tasks.txt", "no tasks")
    assert not (tmp_path / "tasks.txt_workdir").exists()


@pytest.mark.parametrize(("content", "line"), [
    (b"echo ok\n# fine\necho caf\xe9\n", 3),
    (b"echo ok\necho a\x00b\n", 2),
    (b"\xff\xfeecho\n", 1),
])
def test_bytes_that_are_not_text(tmp_path: Path, clean_home: dict[str, str], content: bytes, line: int) -> None:
    tasks = tmp_path / "tasks.txt"
    tasks.write_bytes(content)
    assert_one_line_error(run_farmer(tasks, env=clean_home), f"tasks.txt:{line}:")
    assert not (tmp_path / "tasks.txt_workdir").exists()


def test_workdir_that_is_a_file(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    (tmp_path / "wd").write_text("not a directory")
    assert_one_line_error(run_farmer(tasks, "-w", tmp_path / "wd", env=clean_home), "wd", "not a directory")
    assert (tmp_path / "wd").read_text() == "not a directory"


def test_workdir_that_cannot_be_created(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    # /proc refuses new directories even to root, which chmod would not stop.
    assert_one_line_error(run_farmer(tasks, "-w", "/proc/mpifarmer-test", env=clean_home), "/proc/mpifarmer-test")


def test_missing_lock_dir(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    result = run_farmer(tasks, "--lock-dir", tmp_path / "missing", env=clean_home)
    assert_one_line_error(result, "missing", "does not exist")
    assert not (tmp_path / "tasks.txt_workdir").exists()
    env = dict(clean_home, MPIFARMER_LOCK_DIR=str(tmp_path / "missing"))
    assert_one_line_error(run_farmer(tasks, env=env), "MPIFARMER_LOCK_DIR")


def test_lock_dir_outside_the_workdir_is_used(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    (tmp_path / "locks").mkdir()
    assert run_farmer(tasks, "--lock-dir", tmp_path / "locks", env=clean_home).returncode == 0
    assert [p.name.startswith("mpifarmer-") for p in (tmp_path / "locks").iterdir()] == [True]
    assert not (tmp_path / "tasks.txt_workdir" / "lock").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["--proc", "0"], "--proc"),
    (["-n", "-3"], "-n/--proc"),
    (["--proc", "many"], "many"),
    (["--timeout", "-5"], "--timeout"),
    (["--timeout", "soon"], "soon"),
    (["--lock-mode", "nfs"], "--lock-mode"),
    (["--lease-timeout", "0"], "--lease-timeout"),
    (["--no-such-option"], "--no-such-option"),
])
def test_bad_option_values(tmp_path: Path, clean_home: dict[str, str], args: list[str], expected: str) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    assert_one_line_error(run_farmer(tasks, *args, env=clean_home), expected)
    assert not (tmp_path / "tasks.txt_workdir").exists()


def test_no_task_list_given(clean_home: dict[str, str]) -> None:
    assert_one_line_error(run_farmer(env=clean_home), "TASKLIST")


@pytest.mark.parametrize(("content", "expected"), [
    ("[img]\nRunner = nosuchmodule.Runner\n", "nosuchmodule"),
    ("[img]\nRunner = mpifarmer.runners.ShifterRunner\nimage = x\nimgae = y\n", "imgae"),
    ("[img\nRunner = x\n", "img.ini"),
])
def test_bad_runner_definitions(tmp_path: Path, clean_home: dict[str, str], content: str, expected: str) -> None:
    runners = Path(clean_home["HOME"]) / ".mpifarmer" / "runners.d"
    runners.mkdir(parents=True)
    (runners / "img.ini").write_text(content)
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    line = assert_one_line_error(run_farmer(tasks, "-r", "img", env=clean_home), expected)
    assert "img.ini" in line
    assert not (tmp_path / "tasks.txt_workdir").exists()


def test_yaml_syntax_error_in_runner_file(tmp_path: Path, clean_home: dict[str, str]) -> None:
    runners = Path(clean_home["HOME"]) / ".mpifarmer" / "runners.d"
    runners.mkdir(parents=True)
    (runners / "bad.yaml").write_text("img:\n  Runner: [unclosed\n")
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    assert_one_line_error(run_farmer(tasks, env=clean_home), "bad.yaml")


def test_unknown_runner_and_handler(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = write_list(tmp_path / "tasks.txt", ["true"])
    assert_one_line_error(run_farmer(tasks, "-r", "fast", env=clean_home), "fast")
    assert_one_line_error(run_farmer(tasks, "-t", "fancy", cwd=tmp_path, env=clean_home), "fancy")
    assert not (tmp_path / "tasks.txt_workdir").exists()
