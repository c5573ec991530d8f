"""MPI mode under a real launcher: mpiexec from the mpich wheel, 2 and 4 ranks on this host."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from farmhelpers import (
    HANG,
    MPIEXEC,
    farmer_cmd,
    journal,
    rank_pids,
    run_farmer,
    runs_per_task,
    view,
    wait_for,
    write_list,
)

pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install mpich")


def mpi_cmd(ranks: int, *args: str | os.PathLike[str]) -> list[str]:
    return [MPIEXEC, "-n", str(ranks), *farmer_cmd(*args)]


def run_mpi(ranks: int, *args, env: dict[str, str], timeout: float = HANG) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mpi_cmd(ranks, *args), env=env, capture_output=True, text=True, timeout=timeout)


def start_mpi(ranks: int, *args, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(mpi_cmd(ranks, *args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def ends_by_rank(workdir: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for record in journal(workdir):
        if record["e"] == "end" and record["st"] == "finished":
            counts[record["rank"]] = counts.get(record["rank"], 0) + 1
    return counts


@pytest.mark.parametrize("ranks", [2, 4])
def test_every_task_runs_once_and_every_rank_works(tmp_path: Path, clean_home: dict[str, str], ranks: int) -> None:
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 0.05; echo {i} >> {out}" for i in range(80)])
    result = run_mpi(ranks, tasks, "-n", "2", env=clean_home)
    assert result.returncode == 0, result.stderr
    assert runs_per_task(out) == {i: 1 for i in range(80)}
    workdir = tmp_path / "tasks.txt_workdir"
    assert sorted(view(workdir, "finished")) == list(range(80))
    by_rank = ends_by_rank(workdir)
    assert sorted(by_rank) == list(range(ranks)), f"every rank ran tasks: {by_rank}"
    assert f"on {ranks} ranks" in result.stderr
    assert len([r for r in journal(workdir) if r["e"] == "hello"]) == 1  # one farmer in the work directory


def test_a_signal_drains_every_rank(tmp_path: Path, clean_home: dict[str, str]) -> None:
    out, release = tmp_path / "out", tmp_path / "release"
    tasks = write_list(tmp_path / "tasks.txt", [f"[ -e {release} ] || sleep 60; echo {i} >> {out}"
                                                for i in range(20)])
    job = start_mpi(4, tasks, "-n", "2", env=clean_home)
    workdir = tmp_path / "tasks.txt_workdir"
    wait_for(lambda: len(rank_pids(tasks)) == 4, what="4 ranks")
    wait_for(lambda: (workdir / "journal.jsonl").exists() and any(
        r["e"] == "start" and r["rank"] == 3 for r in journal(workdir)), what="rank 3 running a task")
    os.kill(rank_pids(tasks)[2], signal.SIGTERM)  # one rank only, as a stray signal would
    _, err = job.communicate(timeout=HANG)
    assert job.returncode == 3, err
    interrupted = {r["id"] for r in journal(workdir) if r["e"] == "end" and r["st"] == "interrupted"}
    assert len(interrupted) == 8  # 2 slots on each of 4 ranks
    assert view(workdir, "failed") == {} and len(view(workdir, "toprocess")) == 20
    release.touch()
    result = run_mpi(2, tasks, "-n", "2", env=clean_home)
    assert result.returncode == 0, result.stderr
    assert runs_per_task(out) == {i: 1 for i in range(20)}


def test_sigkill_of_the_whole_job_then_restart(tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 0.3; echo {i} >> {out}" for i in range(40)])
    job = start_mpi(4, tasks, "-n", "2", env=clean_home)
    wait_for(lambda: len(runs_per_task(out)) >= 8, what="some finished tasks")
    os.killpg(job.pid, signal.SIGKILL)
    job.communicate(timeout=HANG)
    workdir = tmp_path / "tasks.txt_workdir"
    finished_before = {r["id"] for r in journal(workdir) if r["e"] == "end" and r["st"] == "finished"}
    result = run_mpi(2, tasks, "-n", "2", env=clean_home)
    assert result.returncode == 0, result.stderr
    counts = runs_per_task(out)
    assert set(counts) == set(range(40))
    assert all(counts[i] == 1 for i in finished_before)
    assert sorted(view(workdir, "finished")) == list(range(40))


def test_a_rank_killed_on_its_own_ends_the_job_and_a_restart_recovers(
        tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 0.5; echo {i} >> {out}" for i in range(30)])
    job = start_mpi(4, tasks, "-n", "2", env=clean_home)
    wait_for(lambda: len(rank_pids(tasks)) == 4, what="4 ranks")
    wait_for(lambda: len(runs_per_task(out)) >= 4, what="some finished tasks")
    os.kill(rank_pids(tasks)[2], signal.SIGKILL)
    _, err = job.communicate(timeout=HANG)  # must not hang
    assert job.returncode != 0
    result = run_farmer(tasks, "-n", "4", env=clean_home)
    assert result.returncode == 0, result.stderr
    assert set(runs_per_task(out)) == set(range(30))
    assert sorted(view(tmp_path / "tasks.txt_workdir", "finished")) == list(range(30))


def test_an_mpi_job_and_a_local_farmer_share_a_work_directory(tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 0.05; echo {i} >> {out}" for i in range(120)])
    job = start_mpi(2, tasks, "-n", "2", env=clean_home)
    local = subprocess.Popen(farmer_cmd(tasks, "-n", "2"), env=clean_home, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    _, job_err = job.communicate(timeout=HANG)
    _, local_err = local.communicate(timeout=HANG)
    assert job.returncode == 0, job_err
    assert local.returncode == 0, local_err
    assert runs_per_task(out) == {i: 1 for i in range(120)}
    farmers = {r["f"] for r in journal(tmp_path / "tasks.txt_workdir") if r["e"] == "end"}
    assert len(farmers) == 2, "both farmers ran tasks"


def test_mode_local_under_mpiexec_gives_independent_farmers(tmp_path: Path, clean_home: dict[str, str]) -> None:
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 0.05; echo {i} >> {out}" for i in range(40)])
    result = run_mpi(2, tasks, "-n", "1", "--mode", "local", env=clean_home)
    assert result.returncode == 0, result.stderr
    assert runs_per_task(out) == {i: 1 for i in range(40)}
    assert len([r for r in journal(tmp_path / "tasks.txt_workdir") if r["e"] == "hello"]) == 2


def test_bad_input_under_mpi_ends_every_rank_with_2(tmp_path: Path, clean_home: dict[str, str]) -> None:
    tasks = tmp_path / "tasks.txt"
    tasks.write_bytes(b"echo ok\necho \xff\n")
    result = run_mpi(3, tasks, env=clean_home, timeout=60)
    assert result.returncode == 2
    assert "tasks.txt:2:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "tasks.txt_workdir").exists()


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_idle_ranks_do_not_spin(tmp_path: Path, clean_home: dict[str, str]) -> None:
    """One long task keeps the job alive while three ranks have nothing to do: a rank blocked
    in MPI_Recv would burn a whole core; polling with a backoff costs next to nothing."""
    release = tmp_path / "release"
    tasks = write_list(tmp_path / "tasks.txt", [f"while [ ! -e {release} ]; do sleep 0.05; done"])
    job = start_mpi(4, tasks, "-n", "1", env=clean_home)
    try:
        wait_for(lambda: len(rank_pids(tasks)) == 4, what="4 ranks")
        time.sleep(1.0)  # past start-up
        pids = rank_pids(tasks)
        before = {rank: cpu_ticks(pid) for rank, pid in pids.items()}
        time.sleep(3.0)
        used = {rank: (cpu_ticks(pid) - before[rank]) / os.sysconf("SC_CLK_TCK") for rank, pid in pids.items()}
    finally:
        release.touch()
    _, err = job.communicate(timeout=HANG)
    assert job.returncode == 0, err
    # A generous ceiling (a spinning rank uses about 3 s of CPU in 3 s); measured: about 0.05 s.
    assert all(seconds < 0.6 for seconds in used.values()), used


def test_a_hung_rank_is_taken_for_lost_and_the_job_ends(tmp_path: Path, clean_home: dict[str, str]) -> None:
    """A rank that stops answering (SIGSTOP: a hung node) is noticed by the farmer's own
    heartbeat: MPI would not tell. The job ends within the rank timeout; a restart recovers."""
    out = tmp_path / "out"
    tasks = write_list(tmp_path / "tasks.txt", [f"sleep 0.3; echo {i} >> {out}" for i in range(30)])
    job = start_mpi(3, tasks, "-n", "1", "--rank-timeout", "3", env=clean_home)
    wait_for(lambda: len(rank_pids(tasks)) == 3, what="3 ranks")
    wait_for(lambda: len(runs_per_task(out)) >= 3, what="some finished tasks")
    hung = rank_pids(tasks)[2]
    os.kill(hung, signal.SIGSTOP)
    try:
        _, err = job.communicate(timeout=60)
    finally:
        try:
            os.kill(hung, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert job.returncode == 3, err
    assert "rank 2" in err and "lost" in err
    result = run_farmer(tasks, "-n", "2", env=clean_home)
    assert result.returncode == 0, result.stderr
    assert set(runs_per_task(out)) == set(range(30))
    assert sorted(view(tmp_path / "tasks.txt_workdir", "finished")) == list(range(30))
