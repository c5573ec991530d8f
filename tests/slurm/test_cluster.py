"""Smoke tests of the real single-host Slurm test cluster (slurm/testcluster).

These check the cluster features mpifarmer relies on: srun steps, job arrays,
MPI over PMI2 with the mpi4py of the running interpreter, and requeue.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

# Jobs get a Slurm time limit too, so a stuck job is killed by Slurm itself.
JOB_TIME = "--time=5"


def test_srun_hostname(slurm_cluster):
    proc = slurm_cluster.run(["srun", JOB_TIME, "-n", "4", "hostname"], timeout=60)
    lines = proc.stdout.splitlines()
    assert len(lines) == 4, proc.stdout
    assert all(line.strip() for line in lines), proc.stdout


def test_sbatch_array_wait(slurm_cluster, tmp_path: Path):
    script = tmp_path / "task.sh"
    script.write_text(
        "#!/bin/bash\n"
        'echo "$SLURM_JOB_ID" > "task-$SLURM_ARRAY_TASK_ID.txt"\n'
    )
    slurm_cluster.run(
        [
            "sbatch",
            "--wait",
            "--array=0-3",
            JOB_TIME,
            f"--chdir={tmp_path}",
            f"--output={tmp_path}/slurm-%A_%a.out",
            str(script),
        ],
        timeout=120,
    )
    files = sorted(p.name for p in tmp_path.glob("task-*.txt"))
    assert files == [f"task-{i}.txt" for i in range(4)]
    job_ids = {(tmp_path / f).read_text().strip() for f in files}
    assert len(job_ids) == 4, job_ids


def test_srun_mpi4py_pmi2_one_world(slurm_cluster):
    if importlib.util.find_spec("mpi4py") is None:
        pytest.fail(
            f"mpi4py is not installed in {sys.executable}; "
            f"run: {sys.executable} -m pip install mpi4py mpich",
            pytrace=False,
        )
    proc = slurm_cluster.run(
        [
            "srun",
            JOB_TIME,
            "-n",
            "4",
            "--mpi=pmi2",
            sys.executable,
            "-c",
            "from mpi4py import MPI; print(MPI.COMM_WORLD.size)",
        ],
        timeout=120,
    )
    assert proc.stdout.split() == ["4"] * 4, proc.stdout + proc.stderr


def _job_state(slurm_cluster, job_id: str) -> str:
    out = slurm_cluster.run(["squeue", "-h", "-j", job_id, "-o", "%T"], check=False, timeout=30)
    return out.stdout.strip()


def _wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}", pytrace=False)


def test_requeue_restarts_running_batch_job(slurm_cluster, tmp_path: Path):
    """scontrol requeue: same job id, SLURM_RESTART_COUNT=1, appended output."""
    out = tmp_path / "job.out"
    script = tmp_path / "sleeper.sh"
    script.write_text(
        "#!/bin/bash\n"
        'echo "restart=${SLURM_RESTART_COUNT:-0}"\n'
        "sleep 120\n"
    )
    job_id = slurm_cluster.run(
        [
            "sbatch",
            "--parsable",
            JOB_TIME,
            "--open-mode=append",
            f"--chdir={tmp_path}",
            f"--output={out}",
            str(script),
        ],
        timeout=30,
    ).stdout.strip().split(";")[0]
    try:
        _wait_for(
            lambda: out.exists() and "restart=0" in out.read_text(),
            60,
            f"job {job_id} to start",
        )
        slurm_cluster.run(["scontrol", "requeue", job_id], timeout=30)
        # cred_expire=10 + sched_interval=1: measured about 11 s.
        _wait_for(
            lambda: "restart=1" in out.read_text(),
            90,
            f"requeued job {job_id} to run again",
        )
        assert _job_state(slurm_cluster, job_id) == "RUNNING"
        text = out.read_text()
        assert "restart=0" in text and "restart=1" in text, text
    finally:
        slurm_cluster.run(["scancel", job_id], check=False, timeout=30)
