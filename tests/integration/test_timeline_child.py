"""The child process that rewrites timeline.json while a farm runs: a real process each time."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpifarmer.scheduling import records as rec
from mpifarmer.store.journal import Journal
from mpifarmer.store.timeline_child import TimelineChild
from mpifarmer.store.workdir import WorkDir
from tests.farmhelpers import wait_for


def _workdir(tmp_path: Path, runs: int) -> WorkDir:
    wd = WorkDir(tmp_path / "wd")
    wd.prepare()
    Journal(wd.journal).append([rec.add(0, [f"true {i}" for i in range(runs)])] + [
        rec.end("A", i, st=rec.FINISHED, rc=0, sig=None, t0=100.0 + i, t1=100.5 + i, host="n1", rank=0, slot=i % 2)
        for i in range(runs)])
    return wd


def _events(wd: WorkDir) -> list[dict]:
    return [e for e in json.loads(wd.timeline.read_text())["traceEvents"] if e["ph"] == "X"]


def test_a_child_writes_the_timeline_and_its_cost_is_known(tmp_path: Path) -> None:
    wd = _workdir(tmp_path, 50)
    child = TimelineChild(wd)
    child.start()
    wait_for(lambda: not child.running, timeout=60, what="the timeline child to finish")
    assert sorted(e["args"]["id"] for e in _events(wd)) == list(range(50))
    assert child.cost > 0


def test_stop_kills_a_child_at_work(tmp_path: Path) -> None:
    wd = _workdir(tmp_path, 1)
    child = TimelineChild(wd)
    child.start()
    pid = child._child.pid
    child.stop()
    assert not child.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_child_that_cannot_write_says_why_as_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if os.geteuid() == 0:
        # root writes into a read-only directory: make the timeline's path a directory instead
        wd = _workdir(tmp_path, 3)
        wd.timeline.mkdir()
    else:
        wd = _workdir(tmp_path, 3)
        wd.root.chmod(0o555)
    child = TimelineChild(wd)
    with caplog.at_level(logging.WARNING, logger="mpifarmer.store.timeline_child"):
        child.start()
        wait_for(lambda: not child.running, timeout=60, what="the timeline child to finish")
    assert any("could not rewrite" in r.getMessage() and "timeline.json" in r.getMessage() for r in caplog.records)
    wd.root.chmod(0o755)


def test_a_child_dies_with_its_farmer(tmp_path: Path) -> None:
    """A parent (standing in for the farmer) starts a child on a journal big enough to take a
    while, and is SIGKILLed: the child must not live on to write an old timeline later."""
    wd = _workdir(tmp_path, 200_000)
    script = (
        "import sys, time\n"
        "from mpifarmer.store.timeline_child import TimelineChild\n"
        "from mpifarmer.store.workdir import WorkDir\n"
        f"child = TimelineChild(WorkDir({str(wd.root)!r})); child.start()\n"
        "print(child._child.pid, flush=True); time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    time.sleep(0.3)  # the child is under way (interpreter started, reading the journal)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()

    def gone() -> bool:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{child_pid}/stat") as stat:  # a zombie waits for init to reap it: gone too
            return stat.read().rpartition(")")[2].split()[0] == "Z"

    wait_for(gone, timeout=10, what="the child to die with its parent")
    assert not wd.timeline.exists()


def test_a_running_farm_rewrites_its_timeline_and_leaves_it_exact(tmp_path: Path) -> None:
    """A real farm, its timeline paced at 0.2 s: timeline.json shows finished runs while later
    tasks still run, and at rest holds every run."""
    from tests.farmhelpers import start_farmer, write_list

    tasks = write_list(tmp_path / "tasks.txt", ["true"] * 4 + ["sleep 0.3"] * 10)
    workdir = tmp_path / "wd"
    farm = start_farmer(tasks, "-n", "1", "-w", workdir,
                        env=dict(os.environ, MPIFARMER_TIMELINE_EVERY="0.2"))
    wd = WorkDir(workdir)

    def some_runs_shown() -> bool:  # some, not all: the timeline at rest would show all 14
        try:
            return 4 <= len(_events(wd)) < 14
        except (OSError, ValueError):
            return False

    wait_for(some_runs_shown, timeout=60, what="a timeline of some of the runs, written while the farm ran")
    farm.communicate(timeout=120)
    assert farm.returncode == 0
    assert sorted(e["args"]["id"] for e in _events(wd)) == list(range(14))
