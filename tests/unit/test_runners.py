"""Runners build argv lists: compared exactly, and run for the shell semantics that matter."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mpifarmer.runners import BasicRunner, Runner, ShifterRunner
from mpifarmer.task import Task

BASH = shutil.which("bash") or "/bin/bash"


def task(command: str) -> Task:
    return Task(id=0, line=command, command=command)


def run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=30, check=False)
    return done.returncode, done.stdout


def shifter_script_argv(runner: ShifterRunner, command: str) -> list[str]:
    """Run the script a ShifterRunner would give the container's bash, with the host's bash."""
    argv = runner.build(task(command))
    assert argv[-4:-1] == ["--", "/bin/bash", "-c"]
    return [BASH, "-c", argv[-1]]


# --- the interface ----------------------------------------------------------------------------


def test_runner_is_abstract() -> None:
    with pytest.raises(TypeError):
        Runner()  # type: ignore[abstract]


def test_build_is_pure_and_repeatable() -> None:
    runner = ShifterRunner("img", setup="s", tempdir=True)
    assert runner.build(task("echo 1")) == runner.build(task("echo 1"))


# --- BasicRunner ------------------------------------------------------------------------------


def test_basic_runner_argv() -> None:
    assert BasicRunner().build(task("echo hello | wc -c")) == [BASH, "-c", "echo hello | wc -c"]


def test_basic_runner_bash_is_absolute() -> None:
    assert Path(BasicRunner().shell).is_absolute()


def test_basic_runner_pipes_and_quotes() -> None:
    code, out = run(BasicRunner().build(task("printf '%s\\n' \"a  b\" 'c;d' | tr a-z A-Z")))
    assert (code, out) == (0, "A  B\nC;D\n")


def test_basic_runner_expands_variables_and_keeps_exit_status() -> None:
    env = {"PATH": "/usr/bin:/bin", "GREETING": "hi there"}
    code, out = run(BasicRunner().build(task('echo "$GREETING"; exit 7')), env=env)
    assert (code, out) == (7, "hi there\n")


# --- ShifterRunner: argv ----------------------------------------------------------------------


def test_shifter_minimal() -> None:
    argv = ShifterRunner("docker:ubuntu:22.04").build(task("echo hi"))
    assert argv == ["shifter", "--image=docker:ubuntu:22.04", "--", "/bin/bash", "-c", "echo hi"]


def test_shifter_setup_guards_the_whole_task() -> None:
    argv = ShifterRunner("img", setup="source /opt/env.sh").build(task("a || b"))
    assert argv == ["shifter", "--image=img", "--", "/bin/bash", "-c", "source /opt/env.sh && { a || b\n}"]


def test_shifter_volumes_and_modules_from_strings() -> None:
    runner = ShifterRunner("img", volumes="/a:/x  /b:/y:ro", modules=" cvmfs gpu ")
    assert runner.build(task("t")) == [
        "shifter",
        "--image=img",
        "--volume=/a:/x",
        "--volume=/b:/y:ro",
        "--module=cvmfs",
        "--module=gpu",
        "--",
        "/bin/bash",
        "-c",
        "t",
    ]


def test_shifter_volumes_and_modules_from_lists() -> None:
    runner = ShifterRunner("img", volumes=["/a b:/x"], modules=["cvmfs"])
    assert runner.build(task("t"))[:4] == ["shifter", "--image=img", "--volume=/a b:/x", "--module=cvmfs"]


def test_shifter_empty_setup_is_no_setup() -> None:
    assert ShifterRunner("img", setup="   ").build(task("t"))[-1] == "t"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("True", True),
        ("false", False),
        ("YES", True),
        ("no", False),
        ("1", True),
        ("0", False),
        (" on ", True),
        (0, False),
        (1, True),
    ],
)
def test_shifter_tempdir_values(value: object, expected: bool) -> None:
    assert ShifterRunner("img", tempdir=value).tempdir is expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["maybe", "", "2", 2, None, 1.0])
def test_shifter_bad_tempdir_is_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="tempdir must be true or false"):
        ShifterRunner("img", tempdir=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"image": ""}, ValueError, "image must be a non-empty string"),
        ({"image": "img", "volumes": 3}, TypeError, "volumes must be a space-separated string or a list"),
        ({"image": "img", "modules": ["cvmfs", 1]}, TypeError, "modules must list strings"),
        ({"image": "img", "setup": ["a"]}, TypeError, "setup must be a string"),
    ],
)
def test_shifter_bad_options(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ShifterRunner(**kwargs)  # type: ignore[arg-type]


def test_shifter_tempdir_argv_prefix() -> None:
    argv = ShifterRunner("img", modules="cvmfs", tempdir="true").build(task("t"))
    assert argv[:6] == ["shifter", "--image=img", "--module=cvmfs", "--", "/bin/bash", "-c"]
    assert "mktemp -d" in argv[-1]


# --- ShifterRunner: the script, run with the host's bash --------------------------------------


def test_shifter_script_setup_failure_stops_the_task() -> None:
    runner = ShifterRunner("img", setup="false")
    code, out = run(shifter_script_argv(runner, "echo ran || echo rescued; echo after"))
    assert (code, out) == (1, "")


def test_shifter_script_setup_environment_reaches_the_task() -> None:
    runner = ShifterRunner("img", setup="export X='a b'")
    code, out = run(shifter_script_argv(runner, 'echo "$X" # a comment'))
    assert (code, out) == (0, "a b\n")


@pytest.mark.parametrize("setup", ["", "export Y=1"])
@pytest.mark.parametrize(
    ("command", "status"),
    [("pwd > where; true", 0), ("pwd > where; exit 3", 3), ("pwd > where; exec false", 1)],
)
def test_shifter_tempdir_is_used_and_removed(tmp_path: Path, setup: str, command: str, status: int) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(scratch)}
    runner = ShifterRunner("img", setup=setup, tempdir=True)
    command = command.replace("where", str(out / "where"))
    code, _ = run(shifter_script_argv(runner, command), cwd=tmp_path, env=env)
    assert code == status
    ran_in = Path((out / "where").read_text().strip())
    assert ran_in.parent == scratch
    assert ran_in.name.startswith("mpifarmer.")
    assert list(scratch.iterdir()) == []


def test_shifter_tempdir_removed_on_sigterm(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    argv = shifter_script_argv(ShifterRunner("img", tempdir=True), "touch started; sleep 30")
    with subprocess.Popen(argv, env=env, start_new_session=True) as process:
        for _ in range(200):
            if any(tmp_path.glob("mpifarmer.*/started")):
                break
            time.sleep(0.05)
        else:
            process.kill()
            pytest.fail("the task did not start")
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=10) == 143
    assert list(tmp_path.iterdir()) == []


def test_repr_names_options() -> None:
    assert repr(BasicRunner()) == "BasicRunner()"
    assert "image='img'" in repr(ShifterRunner("img"))
