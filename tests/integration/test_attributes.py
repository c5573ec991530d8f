"""Per-task attributes from the task-list handler to the spawner and back with the run's end, in the journal,
in local and MPI mode; and a work directory written by the release before attributes opens unchanged."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from farmhelpers import MPIEXEC, farmer_cmd, install_handler, journal, run_farmer, view, write_list

HANDLER = '''
from mpifarmer.tasklists import TaskList


class Coloured(TaskList):
    """The first word of a line is a colour (the task's COLOUR variable), the rest its command."""

    def command(self, line):
        colour, _, command = line.partition(" ")
        return command, {"env": {"COLOUR": colour}, "colour": colour}
'''

COLOURS = ["red", "green", "blue", "cyan", "amber", "olive"]


def coloured_setup(tmp_path: Path, env: dict[str, str]) -> tuple[Path, Path, dict[str, str]]:
    env = install_handler(tmp_path, env, "colour", "colourhandler", HANDLER, "Coloured")
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"{colour} sleep 0.2; echo $PROC_NUMBER $COLOUR >> {out}"
                                                for colour in COLOURS])
    return tasks, out, env


def check_attributes_travelled(tmp_path: Path, out: Path) -> list[dict]:
    records = journal(tmp_path / "tasks.txt_workdir")
    adds = [r for r in records if r["e"] == "add"]
    assert adds[0]["attrs"] == {str(i): {"env": {"COLOUR": c}, "colour": c} for i, c in enumerate(COLOURS)}
    # the spawner started each task with its own environment
    assert sorted(out.read_text().splitlines()) == sorted(f"{i} {c}" for i, c in enumerate(COLOURS))
    # and each run's end came back with the attributes it ran with, and why it ended
    ends = [r for r in records if r["e"] == "end"]
    assert {r["id"]: r["attrs"]["colour"] for r in ends} == dict(enumerate(COLOURS))
    assert {r["why"] for r in ends} == {"exited"}
    return ends


def test_attributes_travel_from_the_handler_to_the_spawner_and_back(tmp_path: Path,
                                                                  clean_home: dict[str, str]) -> None:
    tasks, out, env = coloured_setup(tmp_path, clean_home)
    result = run_farmer(tasks, "-t", "colour", "-n", "2", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check_attributes_travelled(tmp_path, out)


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install mpich")
def test_attributes_travel_to_other_ranks_and_back(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks, out, env = coloured_setup(tmp_path, clean_home)
    result = subprocess.run([MPIEXEC, "-n", "3", *farmer_cmd(tasks, "-t", "colour", "-n", "1")], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    ends = check_attributes_travelled(tmp_path, out)
    assert {r["rank"] for r in ends} - {0}, "some tasks ran on other ranks"


RELEASE = Path(__file__).resolve().parents[1] / "data" / "release-c7f6225"


def test_a_work_directory_of_the_release_before_attributes_opens_unchanged(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    """The journal and task list that mpifarmer c7f6225 wrote (two runs, a stop, --retry-failed)."""
    workdir = tmp_path / "tasks.txt_workdir"
    workdir.mkdir()
    shutil.copy(RELEASE / "tasks.txt", tmp_path / "tasks.txt")
    shutil.copy(RELEASE / "journal.jsonl", workdir / "journal.jsonl")
    before = (workdir / "journal.jsonl").read_bytes()
    result = run_farmer(tmp_path / "tasks.txt", env=clean_home)
    assert result.returncode == 1, result.stderr  # "exit 3" failed, and nothing is left to run
    assert "5 tasks, 0 to run (4 finished, 1 failed)" in result.stderr, result.stderr
    after = (workdir / "journal.jsonl").read_bytes()
    assert after.startswith(before)
    assert {r["e"] for r in journal(workdir)[len(before.splitlines()):]} == {"hello", "bye"}
    assert view(workdir, "finished") == {0: "echo a", 1: "echo b", 3: "echo c", 4: "sleep 3; echo d"}
    assert view(workdir, "failed") == {2: "exit 3"}
    with (tmp_path / "tasks.txt").open("a") as stream:
        stream.write("echo e\n")
    result = run_farmer(tmp_path / "tasks.txt", env=clean_home)
    assert result.returncode == 1 and "1 to run" in result.stderr, result.stderr
    assert sorted(view(workdir, "finished")) == [0, 1, 3, 4, 5]
