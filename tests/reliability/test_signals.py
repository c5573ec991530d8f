"""Stop signals at every moment: under load, twice in a row, during start-up, during shutdown, on one MPI rank.

Whatever the moment, a farmer asked to stop ends with exit code 3 (or 0 when nothing was left), leaves no
task process behind (every task carries a marker in its command line, found by scanning /proc), records
its interrupted tasks as interrupted (never failed), and the next run finishes the list with every task
finished exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from crash import mpiexec
from farmhelpers import (
    HANG,
    farmer_cmd,
    journal,
    rank_pids,
    run_farmer,
    runs_per_task,
    task_processes,
    view,
    wait_for,
    write_list,
)

SIGNALS = [signal.SIGUSR1, signal.SIGTERM, signal.SIGINT]
SIGNAL_IDS = [s.name for s in SIGNALS]


def marked_list(tmp_path: Path, count: int, out: Path, marker: str, *, seconds: float = 0.2,
                release: Path | None = None, ignore_term: bool = False, long_from: int | None = None) -> Path:
    """Tasks that append their ID to ``out`` when they complete and carry ``marker`` in their command line.

    With ``release``, task ``long_from`` and the ones after it (all of them if None) wait until that file
    exists; ``ignore_term`` makes a task (and its children) ignore SIGTERM, so only SIGKILL stops it."""
    lines = []
    for task in range(count):
        work = f"sleep {seconds}"
        if release is not None and (long_from is None or task >= long_from):
            work = f"[ -e {release} ] || sleep 60"
        trap = "trap '' TERM; " if ignore_term else ""
        lines.append(f"{trap}{work}; echo {task} >> {out} # {marker}")
    return write_list(tmp_path / "tasks.txt", lines)


def start(tasks: Path, *args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(farmer_cmd(tasks, *args), cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def finished_counts(workdir: Path) -> Counter:
    return Counter(r["id"] for r in journal(workdir) if r["e"] == "end" and r["st"] == "finished")


def assert_stopped_cleanly(farmer: subprocess.Popen[str], marker: str, workdir: Path) -> str:
    """Exit code 3, no traceback, no task process left, nothing failed; return the farmer's stderr."""
    _, err = farmer.communicate(timeout=HANG)
    assert farmer.returncode == 3, (farmer.returncode, err)
    assert "Traceback" not in err, err
    wait_for(lambda: task_processes(marker) == [], what="the stopped farmer's task processes to be gone", timeout=5)
    assert view(workdir, "failed") == {}
    assert not any(r["e"] == "end" and r["st"] == "failed" for r in journal(workdir))
    return err


def assert_rerun_finishes(tasks: Path, out: Path, count: int, env: dict[str, str], cwd: Path,
                          release: Path | None = None) -> None:
    """The next run finishes the list; every task finished (and completed) exactly once over all runs."""
    if release is not None:
        release.touch()
    rerun = run_farmer(tasks, "-n", "4", cwd=cwd, env=env)
    assert rerun.returncode == 0, rerun.stderr
    workdir = tasks.parent / f"{tasks.name}_workdir"
    assert finished_counts(workdir) == Counter(range(count)), "each task recorded finished exactly once"
    assert runs_per_task(out) == {task: 1 for task in range(count)}, "each task completed exactly once"
    assert sorted(view(workdir, "finished")) == list(range(count))


# -- under load -------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", SIGNALS, ids=SIGNAL_IDS)
def test_stop_signal_under_load(tmp_path: Path, clean_home: dict[str, str], signum: int) -> None:
    out, marker = tmp_path / "out", f"sigload-{tmp_path.name}"
    tasks = marked_list(tmp_path, 60, out, marker, seconds=0.15)
    workdir = tmp_path / "tasks.txt_workdir"
    farmer = start(tasks, "-n", "4", env=clean_home, cwd=tmp_path)
    wait_for(lambda: len(runs_per_task(out)) >= 8 and len(task_processes(marker)) >= 4, what="a loaded farmer")
    farmer.send_signal(signum)
    err = assert_stopped_cleanly(farmer, marker, workdir)
    assert signal.Signals(signum).name in err
    interrupted = [r for r in journal(workdir) if r["e"] == "end" and r["st"] == "interrupted"]
    assert interrupted, "the running tasks were recorded as interrupted"
    assert_rerun_finishes(tasks, out, 60, clean_home, tmp_path)


@pytest.mark.parametrize("signum", SIGNALS, ids=SIGNAL_IDS)
def test_stop_signal_twice_kills_tasks_that_ignore_the_first(
        tmp_path: Path, clean_home: dict[str, str], signum: int) -> None:
    out, release, marker = tmp_path / "out", tmp_path / "release", f"sigtwice-{tmp_path.name}"
    tasks = marked_list(tmp_path, 6, out, marker, release=release, ignore_term=True)
    workdir = tmp_path / "tasks.txt_workdir"
    farmer = start(tasks, "-n", "3", env=clean_home, cwd=tmp_path)
    wait_for(lambda: len(task_processes(marker)) >= 3, what="three running tasks")
    farmer.send_signal(signum)
    time.sleep(0.3)  # the tasks ignore the SIGTERM the first signal sent them
    assert farmer.poll() is None
    farmer.send_signal(signum)
    err = assert_stopped_cleanly(farmer, marker, workdir)
    assert "again" in err
    assert sorted(view(workdir, "toprocess")) == list(range(6))
    assert_rerun_finishes(tasks, out, 6, clean_home, tmp_path, release)


# -- during start-up --------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", SIGNALS, ids=SIGNAL_IDS)
def test_stop_signal_right_after_start_before_any_task_ran(
        tmp_path: Path, clean_home: dict[str, str], signum: int) -> None:
    """At the farmer's first log line (its handlers are in place) no task has completed yet."""
    out, marker = tmp_path / "out", f"sigstart-{tmp_path.name}"
    tasks = marked_list(tmp_path, 12, out, marker, seconds=0.5)
    workdir = tmp_path / "tasks.txt_workdir"
    farmer = start(tasks, "-n", "4", env=clean_home, cwd=tmp_path)
    assert farmer.stderr is not None
    first = farmer.stderr.readline()
    assert "mpifarmer: task list" in first, first
    farmer.send_signal(signum)
    assert_stopped_cleanly(farmer, marker, workdir)
    assert not out.exists(), "no task completed"
    assert sorted(view(workdir, "toprocess")) == list(range(12))
    assert_rerun_finishes(tasks, out, 12, clean_home, tmp_path)


def early_exit_is_expected(signum: int, code: int, err: str) -> bool:
    """What a farmer signalled during start-up must do: exit 3 (or 0 when nothing was left), without a
    traceback. (mpifarmer catches stop signals from the first line of ``python -m mpifarmer`` on; only a
    signal while the Python interpreter itself starts, before any mpifarmer code, can still kill it.)"""
    if code in (0, 3) and "Traceback" not in err:
        return True
    return code == -signum


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.3, 0.6, 1.0])
def test_stop_signal_at_any_moment_of_start_up_leaves_a_work_directory_the_next_run_finishes(
        tmp_path: Path, clean_home: dict[str, str], delay: float) -> None:
    """Whatever the start-up step a signal interrupts, the work directory stays usable: the next run
    finishes every task exactly once. (The exit codes are checked by the tests around this one.)"""
    out, marker = tmp_path / "out", f"sigearly-{tmp_path.name}"
    tasks = marked_list(tmp_path, 12, out, marker, seconds=0.1)
    workdir = tmp_path / "tasks.txt_workdir"
    for signum in SIGNALS:
        farmer = start(tasks, "-n", "4", env=clean_home, cwd=tmp_path)
        time.sleep(delay)
        farmer.send_signal(signum)
        _, err = farmer.communicate(timeout=HANG)
        assert early_exit_is_expected(signum, farmer.returncode, err), (signum, farmer.returncode, err)
        wait_for(lambda: task_processes(marker) == [], what="no task processes", timeout=5)
    assert_rerun_finishes(tasks, out, 12, clean_home, tmp_path)
    assert not [r for r in journal(workdir) if r["e"] == "end" and r["st"] == "failed"]


@pytest.mark.parametrize("signum", SIGNALS, ids=SIGNAL_IDS)
def test_stop_signal_while_mpifarmer_is_imported_exits_3(
        tmp_path: Path, clean_home: dict[str, str], signum: int) -> None:
    """mpifarmer catches stop signals from its first line on, before the rest of it is imported. The
    signal is sent the moment the process has mpifarmer's handlers (SIGUSR1 caught, read from /proc:
    Python itself catches SIGINT from the start), which is while the command line and everything behind
    it are still being imported (about 0.1 s): a fixed delay instead landed before the first line on a
    slow machine, where the interpreter alone took longer."""
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 1"] * 4)
    farmer = start(tasks, "-n", "2", env=clean_home, cwd=tmp_path)
    deadline = time.monotonic() + HANG
    while not catches(farmer.pid, signal.SIGUSR1):
        assert farmer.poll() is None and time.monotonic() < deadline, "no handler was ever installed"
        time.sleep(0.0005)
    farmer.send_signal(signum)
    _, err = farmer.communicate(timeout=HANG)
    assert "Traceback" not in err, err
    assert farmer.returncode == 3, (farmer.returncode, err)


BIG_LIST = 400_000


@pytest.mark.parametrize("signum", [
    signal.SIGUSR1,
    signal.SIGTERM,
    signal.SIGINT,
], ids=SIGNAL_IDS)
def test_stop_signal_while_the_work_directory_is_opened_exits_3(
        tmp_path: Path, clean_home: dict[str, str], signum: int) -> None:
    """A large list makes opening the work directory take a while: the farmer has registered (the journal
    exists) but writes its views and builds its pool before it starts. A signal then must still mean 3."""
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("".join(f": {task}\n" for task in range(BIG_LIST)))
    workdir = tmp_path / "tasks.txt_workdir"
    farmer = start(tasks, "-n", "2", env=clean_home, cwd=tmp_path)
    wait_for(lambda: (workdir / "journal.jsonl").exists(), what="the journal", timeout=HANG)
    farmer.send_signal(signum)
    _, err = farmer.communicate(timeout=HANG)
    assert "Traceback" not in err, err
    assert farmer.returncode == 3, (farmer.returncode, err)


# -- during shutdown --------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", SIGNALS, ids=SIGNAL_IDS)
def test_stop_signal_while_the_last_tasks_finish(tmp_path: Path, clean_home: dict[str, str], signum: int) -> None:
    out, release, marker = tmp_path / "out", tmp_path / "release", f"siglast-{tmp_path.name}"
    tasks = marked_list(tmp_path, 10, out, marker, seconds=0.05, release=release, long_from=8)
    workdir = tmp_path / "tasks.txt_workdir"
    farmer = start(tasks, "-n", "4", env=clean_home, cwd=tmp_path)
    wait_for(lambda: len(runs_per_task(out)) == 8 and len(task_processes(marker)) >= 2,
             what="only the two last tasks running")
    farmer.send_signal(signum)
    assert_stopped_cleanly(farmer, marker, workdir)
    assert sorted(view(workdir, "toprocess")) == [8, 9]
    assert sorted(view(workdir, "finished")) == list(range(8))
    assert_rerun_finishes(tasks, out, 10, clean_home, tmp_path, release)


@pytest.mark.parametrize("signum", SIGNALS, ids=SIGNAL_IDS)
def test_stop_signal_after_the_stop_line_keeps_exit_code_0(
        tmp_path: Path, clean_home: dict[str, str], signum: int) -> None:
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"echo {task} >> {out}" for task in range(4)])
    workdir = tmp_path / "tasks.txt_workdir"
    codes = []
    for _ in range(5):  # the window is short; five tries make the outcome certain either way
        farmer = start(tasks, "-n", "2", env=clean_home, cwd=tmp_path)
        assert farmer.stderr is not None
        for line in farmer.stderr:
            if "exit code" in line:  # the stop line
                farmer.send_signal(signum)
                break
        _, err = farmer.communicate(timeout=HANG)
        codes.append(farmer.returncode)
        assert sorted(view(workdir, "finished")) == list(range(4))  # the work directory is complete anyway
    assert runs_per_task(out) == {task: 1 for task in range(4)}
    assert codes == [0] * 5, codes


# -- MPI: one rank only ------------------------------------------------------------------------------


@pytest.mark.skipif(mpiexec() is None, reason="no mpiexec: pip install mpich")
@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("signum", SIGNALS, ids=SIGNAL_IDS)
def test_stop_signal_on_one_mpi_rank_drains_the_job(
        tmp_path: Path, clean_home: dict[str, str], signum: int, rank: int) -> None:
    out, release, marker = tmp_path / "out", tmp_path / "release", f"sigrank-{tmp_path.name}"
    tasks = marked_list(tmp_path, 16, out, marker, release=release)
    workdir = tmp_path / "tasks.txt_workdir"
    launcher = mpiexec()
    assert launcher is not None
    job = subprocess.Popen([launcher, "-n", "3", *farmer_cmd(tasks, "-n", "2")], cwd=tmp_path, env=clean_home,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: len(rank_pids(tasks)) == 3, what="3 ranks")
        wait_for(lambda: len(task_processes(marker)) >= 6, what="every rank running tasks")
        os.kill(rank_pids(tasks)[rank], signum)
        _, err = job.communicate(timeout=HANG)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode == 3, (job.returncode, err)
    assert "Traceback" not in err, err
    wait_for(lambda: task_processes(marker) == [], what="no task processes", timeout=5)
    interrupted = {r["id"] for r in journal(workdir) if r["e"] == "end" and r["st"] == "interrupted"}
    assert len(interrupted) == 6, "the two slots of each of the three ranks were interrupted"
    assert view(workdir, "failed") == {} and sorted(view(workdir, "toprocess")) == list(range(16))
    assert_rerun_finishes(tasks, out, 16, clean_home, tmp_path, release)



def sigterm_to_mpiexec(launcher: str, tasks: Path, proc: str, env: dict[str, str], ready: Callable[[], bool],
                       what: str, settle: float = 0.0) -> tuple[int, str]:
    """Run ``mpiexec -n 4`` on ``tasks``, SIGTERM mpiexec once ``ready`` (and ``settle`` s more); its
    exit code and stderr."""
    job = subprocess.Popen([launcher, "-n", "4", *farmer_cmd(tasks, "-n", proc)], cwd=tasks.parent, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(ready, what=what)
        time.sleep(settle)
        job.send_signal(signal.SIGTERM)
        _, err = job.communicate(timeout=HANG)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    return job.returncode, err


@pytest.mark.skipif(mpiexec() is None, reason="no mpiexec: pip install mpich")
def test_sigterm_to_mpiexec_ends_the_job_with_3(tmp_path: Path, clean_home: dict[str, str]) -> None:
    """SIGTERM to mpiexec, as a batch script's mpiexec gets it from Slurm or scancel. Found by the crash
    harness's drain kill point: rank 0 exited with 3 while the worker ranks were still on their way out,
    and MPICH's process manager answers a non-zero exit by SIGKILLing the ranks still alive, so mpiexec
    said 9 in about half the runs (fixed in b91b636: workers exit 0 and rank 0 leaves last)."""
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 30"])
    workdir = tmp_path / "tasks.txt_workdir"
    launcher = mpiexec()
    assert launcher is not None
    codes = []

    def farm_running() -> bool:
        if len(rank_pids(tasks)) < 4 or not (workdir / "journal.jsonl").exists():
            return False
        return len(task_processes("sleep\x0030")) >= 1 or any(r["e"] == "claim" for r in journal(workdir))

    for _ in range(12):  # with the bug, each try ended with 9 about half the time
        code, err = sigterm_to_mpiexec(launcher, tasks, "2", clean_home, farm_running, "the farm running",
                                       settle=0.5)
        codes.append(code)
        assert "exit code 3" in err, err  # rank 0 always means 3
        if code != 3:
            break
    assert codes == [3] * 12, codes


def catches(pid: int, signum: int = signal.SIGTERM) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (mpifarmer installs one on its first line)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) & (1 << (signum - 1)))


@pytest.mark.skipif(mpiexec() is None, reason="no mpiexec: pip install mpich")
def test_sigterm_during_start_up_ends_the_mpi_job_with_3(tmp_path: Path, clean_home: dict[str, str]) -> None:
    """SIGTERM to mpiexec while the ranks start. Found by the crash harness (CI of 5488f2a): rank 0 saw
    the signal before any worker's hello had arrived, told only the ranks it had heard from (itself) to
    finish and left; Hydra then SIGKILLed the workers, which waited for a word from rank 0, and mpiexec
    said 9. Rank 0 must tell every rank of the job to finish and wait for their goodbyes."""
    tasks = write_list(tmp_path / "tasks.txt", ["sleep 30"] * 8)
    workdir = tmp_path / "tasks.txt_workdir"
    launcher = mpiexec()
    assert launcher is not None
    codes = []
    for _ in range(4):
        code, err = sigterm_to_mpiexec(
            launcher, tasks, "1", clean_home,
            lambda: len(pids := rank_pids(tasks)) == 4 and all(map(catches, pids.values())),
            "4 ranks past mpifarmer's first line")
        codes.append(code)
        assert "Traceback" not in err, err
        assert "did not say goodbye" not in err, err
        if code != 3:
            break
    assert codes == [3] * 4, (codes, err)
    assert sorted(view(workdir, "toprocess")) == list(range(8))
