"""The HoldRunner in real farmers: slots are held for their time and no process is started."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest
from farmhelpers import HANG, MPIEXEC, farmer_cmd, journal, start_farmer, view, write_list

HOLD = 0.2


def define_hold(env: dict[str, str], seconds: float = HOLD) -> None:
    runners = Path(env["HOME"]) / ".mpifarmer" / "runners.d"
    runners.mkdir(parents=True, exist_ok=True)
    (runners / "hold.ini").write_text(f"[hold]\nRunner = mpifarmer.runners.HoldRunner\nseconds = {seconds}\n")


def children(pid: int) -> set[int]:
    """PIDs of the live processes whose parent is ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.add(int(entry))
    return found


def ends(workdir: Path) -> list[dict]:
    return [r for r in journal(workdir) if r["e"] == "end"]


def test_a_local_farm_holds_each_slot_for_the_time_without_a_process(tmp_path: Path,
                                                                     clean_home: dict[str, str]) -> None:
    define_hold(clean_home)
    marker = tmp_path / "ran"
    tasks = write_list(tmp_path / "tasks.txt", [f"touch {marker}.{i}" for i in range(20)])
    started = time.monotonic()
    farmer = start_farmer(tasks, "-r", "hold", "-n", "2", env=clean_home)
    seen: set[int] = set()
    while farmer.poll() is None and time.monotonic() - started < HANG:
        seen |= children(farmer.pid)
        time.sleep(0.01)
    _, err = farmer.communicate(timeout=HANG)
    wall = time.monotonic() - started
    assert farmer.returncode == 0, err
    assert seen == set(), "the pool started processes (a spawner, a sentinel or tasks)"
    assert not list(tmp_path.glob("ran.*")), "a task's command ran"
    workdir = tmp_path / "tasks.txt_workdir"
    assert sorted(view(workdir, "finished")) == list(range(20))
    logs = workdir / "logs"
    assert not logs.exists() or all(log.stat().st_size == 0 for log in logs.iterdir())
    records = ends(workdir)
    assert sorted(r["id"] for r in records) == list(range(20)) and {r["rc"] for r in records} == {0}
    # Each run held its slot for the time, and a slot held one run at a time.
    assert all(r["t1"] - r["t0"] >= HOLD - 0.002 for r in records)
    by_slot: dict[int, list[tuple[float, float]]] = {}
    for r in records:
        by_slot.setdefault(r["slot"], []).append((r["t0"], r["t1"]))
    assert sorted(by_slot) == [0, 1]
    for runs in by_slot.values():
        runs.sort()
        assert all(later[0] >= earlier[1] - 0.002 for earlier, later in itertools.pairwise(runs))
    assert wall >= HOLD * 20 / 2  # a lower bound only: 20 holds, 2 at a time


def test_a_stop_ends_held_runs_as_interrupted(tmp_path: Path, clean_home: dict[str, str]) -> None:
    define_hold(clean_home, 30.0)
    tasks = write_list(tmp_path / "tasks.txt", [f"task {i}" for i in range(4)])
    farmer = start_farmer(tasks, "-r", "hold", "-n", "2", "--timeout", "1", env=clean_home)
    _, err = farmer.communicate(timeout=HANG)
    assert farmer.returncode == 3, err
    workdir = tmp_path / "tasks.txt_workdir"
    assert sorted(r["id"] for r in ends(workdir) if r["st"] == "interrupted") == [0, 1]
    assert len(view(workdir, "toprocess")) == 4 and view(workdir, "finished") == {}


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install mpich")
def test_under_mpiexec_the_other_ranks_run_most_tasks(tmp_path: Path, clean_home: dict[str, str]) -> None:
    import subprocess

    define_hold(clean_home, 0.1)
    tasks = write_list(tmp_path / "tasks.txt", [f"task {i}" for i in range(90)])
    result = subprocess.run([MPIEXEC, "-n", "3", *farmer_cmd(tasks, "-r", "hold", "-n", "3")], env=clean_home,
                            capture_output=True, text=True, timeout=HANG)
    assert result.returncode == 0, result.stderr
    workdir = tmp_path / "tasks.txt_workdir"
    records = ends(workdir)
    assert sorted(r["id"] for r in records) == list(range(90)) and {r["st"] for r in records} == {"finished"}
    remote = sum(1 for r in records if r["rank"] != 0)
    assert remote > len(records) / 2, f"ranks 1 and 2 ran {remote} of {len(records)}"
    assert {r["rank"] for r in records} == {0, 1, 2}
