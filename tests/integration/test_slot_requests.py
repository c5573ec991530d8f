"""A task may ask for several of its pool's slots: it starts when that many are free, in list order, and a
task that asks for more than a pool has is recorded failed at once (reason ``unavailable``), never run again.
Real farmers, real spawners, local and MPI mode."""

from __future__ import annotations

from pathlib import Path

import pytest
from farmhelpers import MPIEXEC, farmer_cmd, install_handler, journal, run_farmer, write_list

HANDLER = '''
from mpifarmer.tasklists import TaskList


class Sized(TaskList):
    """The first word of a line is how many slots the task needs, the rest its command."""

    def command(self, line):
        size, _, command = line.partition(" ")
        return command, {"resources": {"slots": int(size)}}
'''

#: (slots asked for, seconds): with 3 slots per pool, the 5-slot task can never run.
SIZES = [(1, 0.3), (3, 0.3), (1, 0.2), (5, 0.1), (2, 0.3), (1, 0.2), (1, 0.2), (2, 0.2)]
SLOTS = 3


def sized_setup(tmp_path: Path, env: dict[str, str]) -> tuple[Path, Path, dict[str, str]]:
    env = install_handler(tmp_path, env, "sized", "sizedhandler", HANDLER, "Sized")
    out = tmp_path / "out"
    lines = [f"{size} echo s $PROC_NUMBER $(date +%s.%N) $MPIFARMER_POOL >> {out}; sleep {seconds}; "
             f"echo e $PROC_NUMBER $(date +%s.%N) $MPIFARMER_POOL >> {out}" for size, seconds in SIZES]
    return write_list(tmp_path / "tasks.txt", lines), out, env


def check_slots_respected(tmp_path: Path, out: Path) -> None:
    events = []
    for line in out.read_text().splitlines():
        kind, task, when, pool = line.split()
        events.append((float(when), kind, int(task), pool))
    impossible = {i for i, (size, _) in enumerate(SIZES) if size > SLOTS}
    assert {task for _, kind, task, _ in events if kind == "e"} == set(range(len(SIZES))) - impossible
    in_use: dict[str, int] = {}
    for _, kind, task, pool in sorted(events):  # each pool (rank) on its own
        if kind == "s":
            in_use[pool] = in_use.get(pool, 0) + SIZES[task][0]
            assert in_use[pool] <= SLOTS, f"task {task} started with {in_use[pool]} slots in use in pool {pool}"
        else:
            in_use[pool] -= SIZES[task][0]
    records = journal(tmp_path / "tasks.txt_workdir")
    ends = {r["id"]: r for r in records if r["e"] == "end"}
    assert {task for task, r in ends.items() if r["st"] == "failed"} == impossible
    for task in impossible:
        assert ends[task]["why"] == "unavailable"
        log = next((tmp_path / "tasks.txt_workdir").glob(f"**/log_{task}*")).read_text()
        assert "asks for 5 slots, and this pool has 3" in log, log
    assert sum(1 for r in records if r["e"] == "end" and r["id"] in impossible) == 1


def test_tasks_take_the_slots_they_ask_for_and_an_impossible_one_fails_once(tmp_path: Path,
                                                                           clean_home: dict[str, str]) -> None:
    tasks, out, env = sized_setup(tmp_path, clean_home)
    result = run_farmer(tasks, "-t", "sized", "-n", str(SLOTS), env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # the work directory holds a failed task
    assert "asks for 5 slots, and this pool has 3" in result.stderr, result.stderr
    check_slots_respected(tmp_path, out)
    # A second run does not try the failed task again (it would never fit).
    again = run_farmer(tasks, "-t", "sized", "-n", str(SLOTS), env=env, cwd=tmp_path)
    assert again.returncode == 1 and "asks for 5" not in again.stderr, again.stderr


@pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")
def test_slot_requests_hold_on_every_rank_in_mpi_mode(tmp_path: Path, clean_home: dict[str, str]) -> None:
    import subprocess

    tasks, out, env = sized_setup(tmp_path, clean_home)
    result = subprocess.run([MPIEXEC, "-n", "2", *farmer_cmd(tasks, "-t", "sized", "-n", str(SLOTS))], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    check_slots_respected(tmp_path, out)
