"""Lock modes used one after the other on one work directory, leftovers of dead holders, stops while waiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from farmhelpers import HANG, journal, run_farmer, runs_per_task, start_farmer, view, wait_for, write_list

from mpifarmer.store.locking import LOCK_MODES, locate_lock

PAIRS = [(first, second) for first in LOCK_MODES for second in LOCK_MODES]


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}-then-{b}" for a, b in PAIRS])
def test_every_pair_of_modes_works_one_after_the_other(tmp_path: Path, clean_home: dict[str, str], first: str,
                                                       second: str) -> None:
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"echo {i} >> {out}" for i in range(3)])
    result = run_farmer(tasks, "--lock-mode", first, env=clean_home, timeout=60)
    assert result.returncode == 0, result.stderr
    with tasks.open("a") as stream:
        stream.write(f"echo 3 >> {out}\n")
    result = run_farmer(tasks, "--lock-mode", second, env=clean_home, timeout=60)
    assert result.returncode == 0, result.stderr
    assert runs_per_task(out) == {0: 1, 1: 1, 2: 1, 3: 1}
    assert sorted(view(tmp_path / "tasks.txt_workdir", "finished")) == [0, 1, 2, 3]


def test_a_farmer_of_another_mode_is_refused_while_one_runs(tmp_path: Path, clean_home: dict[str, str]) -> None:
    """Two modes at once would not exclude each other: the second farmer says so and leaves."""
    release = tmp_path / "release"
    tasks = write_list(tmp_path / "tasks.txt", [f"while [ ! -e {release} ]; do sleep 0.05; done", "true"])
    holder = start_farmer(tasks, "-n", "1", env=clean_home)
    workdir = tmp_path / "tasks.txt_workdir"
    wait_for(lambda: (workdir / "journal.jsonl").exists() and any(r["e"] == "claim" for r in journal(workdir)),
             what="the first farmer's claim")
    holder_fid = next(r["f"] for r in journal(workdir) if r["e"] == "claim")
    before = len(journal(workdir))
    late = run_farmer(tasks, "--lock-mode", "soft", env=clean_home, timeout=30)
    assert late.returncode == 2, late.stderr
    assert "Traceback" not in late.stderr
    lines = late.stderr.strip().splitlines()
    assert len(lines) == 1 and "--lock-mode flock" in lines[0], late.stderr
    # The holder goes on writing (its long run's start record, after a second): only its own
    # records may have been added, none of the refused farmer's (a hello, an add, a claim).
    added = journal(workdir)[before:]
    assert all(r.get("f") == holder_fid for r in added), f"the refused farmer wrote {added}"
    release.touch()
    holder.communicate(timeout=HANG)
    assert holder.returncode == 0


def test_an_empty_soft_marker_left_by_a_killed_farmer_is_taken_over(tmp_path: Path,
                                                                    clean_home: dict[str, str]) -> None:
    """A farmer killed between creating its marker and writing it leaves an empty file."""
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"echo 0 >> {out}"])
    workdir = tmp_path / "tasks.txt_workdir"
    workdir.mkdir()
    marker = locate_lock(workdir, "soft", None, None)
    assert not marker.exists()  # locate_lock probes, and leaves nothing behind
    marker.touch()
    old = time.time() - 600
    os.utime(marker, (old, old))
    result = run_farmer(tasks, "--lock-mode", "soft", env=clean_home, timeout=60)
    assert result.returncode == 0, result.stderr
    assert runs_per_task(out) == {0: 1}


HOLD = """
import sys, time
from pathlib import Path
from mpifarmer.store.locking import WorkLock
lock = WorkLock(Path(sys.argv[1]), sys.argv[2])
assert lock.acquire(timeout=10)
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("mode", LOCK_MODES)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_farmer_waiting_for_the_lock_stops_on_a_signal(tmp_path: Path, clean_home: dict[str, str], mode: str,
                                                         signum: int) -> None:
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"echo 0 >> {out}"])
    assert run_farmer(tasks, "--lock-mode", mode, env=clean_home).returncode == 0
    with tasks.open("a") as stream:
        stream.write(f"echo 1 >> {out}\n")
    workdir = tmp_path / "tasks.txt_workdir"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(locate_lock(workdir, mode, None, None)), mode],
                              stdout=subprocess.PIPE, text=True, env=clean_home)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        before = (workdir / "journal.jsonl").read_bytes()
        farmer = start_farmer(tasks, "--lock-mode", mode, env=clean_home)
        time.sleep(1.5)
        assert farmer.poll() is None, "the farmer waits for the lock"
        sent = time.monotonic()
        farmer.send_signal(signum)
        _, err = farmer.communicate(timeout=HANG)
        assert time.monotonic() - sent < 10
        assert farmer.returncode == 3, err
        assert "Traceback" not in err and "lock" in err
        assert (workdir / "journal.jsonl").read_bytes() == before
    finally:
        holder.kill()
        holder.communicate()
    assert runs_per_task(out) == {0: 1}
