"""mpifarmer and the job scripts in slurm/ against the real single-host Slurm test cluster.

Every task appends its ID to a file only when it completes, so the file counts completed runs;
the work directory's journal says which farmer, rank and host ran what. Jobs get a Slurm time
limit and every wait is bounded, so a broken cluster fails a test instead of hanging it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from farmhelpers import journal, runs_per_task, view

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "slurm"
UP_SH = SCRIPTS / "testcluster" / "up.sh"
#: The ``slurm_cluster`` fixture's handle (tests/slurm/conftest.py); not imported, as two conftest modules exist.
SlurmCluster = Any
#: Slurm's own limit on every job (minutes): a stuck job is killed by Slurm too.
JOB_TIME = "--time=5"
#: Bound for a job that should finish by itself, and for one Slurm restart of a requeued job
#: (about 11 s with the test cluster's settings; Slurm's defaults would need over 2 min).
JOB_DONE = 120
#: Task length: long enough for a signal to land mid-run, short enough for a quick test.
TASK_SECONDS = 1.0


# ------------------------------------------------------------------ helpers ---


def write_tasks(path: Path, count: int, seconds: float = TASK_SECONDS, *, record: str = "$MPIFARMER_TASK_ID") -> Path:
    """A task list whose tasks sleep, then append ``record`` (by default their ID) to ``out.txt``.

    The append is the task's last action, so an interrupted task leaves no line (unless the
    interruption falls in the instant between the append and the exit). Each task is one process
    (bash execs the single command), so a signal Slurm sends to every process of the step kills it
    outright. A task shaped `sleep 1 && echo ...` can instead exit with 128+N when the signal reaches
    its child first (bash then exits 128+N; see
    test_task_exit_128_plus_stop_signal_just_before_the_stop_is_interrupted), kept out of the others.
    """
    out = path.parent / "out.txt"
    code = f'import os, time; time.sleep({seconds}); open("{out}", "a").write(os.path.expandvars("{record}") + "\\n")'
    path.write_text(f"{sys.executable} -c '{code}'\n" * count)
    return path


def farm_env(**extra: str) -> dict[str, str]:
    """What the job scripts and srun need: this interpreter runs mpifarmer (it has mpi4py and mpich)."""
    return {"MPIFARMER_PYTHON": sys.executable, **extra}


def ends(workdir: Path) -> list[dict]:
    return [record for record in journal(workdir) if record.get("e") == "end"]


def hellos(workdir: Path) -> dict[str, dict]:
    """Farmer ID -> its ``hello`` record (job, restart, host, ...)."""
    return {record["f"]: record for record in journal(workdir) if record.get("e") == "hello"}


def finished_twice(workdir: Path) -> list[int]:
    counts = Counter(record["id"] for record in ends(workdir) if record["st"] == "finished")
    return sorted(task for task, n in counts.items() if n > 1)


def assert_each_task_once(out: Path, workdir: Path, count: int) -> None:
    """Every task completed exactly once, by the tasks' own output and by the journal."""
    runs = runs_per_task(out)
    assert runs == dict.fromkeys(range(count), 1), f"runs per task: {runs}"
    assert finished_twice(workdir) == []
    assert sorted(view(workdir, "finished")) == list(range(count))


def sbatch(cluster: SlurmCluster, args: list[str], *, cwd: Path, timeout: float = 60) -> str:
    """Submit without waiting; return the job ID."""
    proc = cluster.run(["sbatch", "--parsable", JOB_TIME, f"--chdir={cwd}", *args], env=farm_env(),
                       timeout=timeout)
    return proc.stdout.strip().split(";")[0]


def job_records(cluster: SlurmCluster, job: str) -> list[dict[str, str]]:
    """``scontrol show job`` as one dict per job (an array's elements each have one); finished jobs stay
    visible for MinJobAge=300 s."""
    proc = cluster.run(["scontrol", "show", "job", "-o", job], check=False, timeout=30)
    records = []
    for line in proc.stdout.splitlines():
        fields: dict[str, str] = {}
        for word in line.split():
            key, sep, value = word.partition("=")
            if sep and key not in fields:
                fields[key] = value
        if fields:
            records.append(fields)
    return records


def job_info(cluster: SlurmCluster, job: str) -> dict[str, str]:
    records = job_records(cluster, job)
    return records[0] if records else {}


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, on_fail: Callable[[], str] = str) -> float:
    """Poll until ``predicate`` holds; return the seconds it took, or fail after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{on_fail()}", pytrace=False)


ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")


def wait_job_end(cluster: SlurmCluster, job: str, output: Path, timeout: float = JOB_DONE) -> dict[str, str]:
    """Wait until the job (every element of an array) has ended for good, not requeued; return its fields."""
    records: list[dict[str, str]] = []

    def done() -> bool:
        nonlocal records
        records = job_records(cluster, job)
        # An array not yet split into elements shows one pending record; it is not ended either.
        return bool(records) and all(r.get("JobState") in ENDED for r in records)

    wait_for(done, timeout, f"job {job} to end", lambda: f"scontrol: {records}\noutput:\n{read(output)}")
    return records[0]


def run_job(cluster: SlurmCluster, args: list[str], *, cwd: Path, output: Path) -> list[dict[str, str]]:
    """Submit, wait for the end (polling: faster than sbatch --wait), and check that every element completed."""
    job = sbatch(cluster, [f"--output={output}", *args], cwd=cwd)
    try:
        wait_job_end(cluster, job, output)
    finally:
        cancel(cluster, job)
    records = job_records(cluster, job)
    outputs = "\n".join(read(path) for path in sorted(output.parent.glob("*.out")))
    assert [(r["JobState"], r["ExitCode"]) for r in records] == [("COMPLETED", "0:0")] * len(records), outputs
    return records


def read(path: Path) -> str:
    return path.read_text() if path.exists() else f"({path} does not exist)"


def lines_in(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0


def cancel(cluster: SlurmCluster, job: str) -> None:
    cluster.run(["scancel", job], check=False, timeout=30)


# ---------------------------------------------------------------- srun ---


def test_srun_four_ranks_each_task_once(slurm_cluster: SlurmCluster, tmp_path: Path):
    tasks = write_tasks(tmp_path / "tasks.txt", 24, 0.3)
    proc = slurm_cluster.run(["srun", JOB_TIME, "-n", "4", sys.executable, "-m", "mpifarmer", str(tasks), "-n", "2"],
                             cwd=tmp_path, env=farm_env(), timeout=JOB_DONE)
    workdir = tmp_path / "tasks.txt_workdir"
    assert_each_task_once(tmp_path / "out.txt", workdir, 24)
    assert {record["rank"] for record in ends(workdir)} == {0, 1, 2, 3}, proc.stderr
    assert len(hellos(workdir)) == 1  # one farmer, four ranks


def test_srun_hello_records_the_world_size(slurm_cluster: SlurmCluster, tmp_path: Path):
    tasks = write_tasks(tmp_path / "tasks.txt", 2, 0.1)
    slurm_cluster.run(["srun", JOB_TIME, "-n", "2", sys.executable, "-m", "mpifarmer", str(tasks), "-n", "1"],
                      cwd=tmp_path, env=farm_env(), timeout=JOB_DONE)
    (hello,) = hellos(tmp_path / "tasks.txt_workdir").values()
    assert hello["ranks"] == 2


def test_srun_wrong_mpi_plugin_is_refused(slurm_cluster: SlurmCluster, tmp_path: Path):
    """With --mpi=none the MPICH ranks are worlds of size 1: the farmer must refuse, naming --mpi."""
    tasks = write_tasks(tmp_path / "tasks.txt", 4, 0.1)
    proc = slurm_cluster.run(["srun", JOB_TIME, "--mpi=none", "-n", "2", sys.executable, "-m", "mpifarmer",
                              str(tasks)], cwd=tmp_path, env=farm_env(), timeout=JOB_DONE, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "--mpi" in proc.stderr, proc.stderr
    assert not (tmp_path / "tasks.txt_workdir").exists()
    assert not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("signame", ["USR1", "TERM"])
def test_task_exit_128_plus_stop_signal_just_before_the_stop_is_interrupted(slurm_cluster, tmp_path: Path,
                                                                            signame: str):
    """As a task whose shell reported its child's death by the signal just before the farmer got its own.

    Seen for real: after `scancel JOB`, "task 5 failed on rank 0 (exit code 143)", and the next job on the
    work directory ended with exit code 1 and that task not run.
    """
    code = 128 + getattr(signal, f"SIG{signame}")
    ended = tmp_path / "ended"
    tasks = tmp_path / "tasks.txt"
    tasks.write_text(f"touch {ended}; exit {code}\nsleep 30\n")
    name = f"mpifarmer-{tmp_path.name}"
    farmer = subprocess.Popen(["srun", JOB_TIME, "-n", "1", f"--job-name={name}", sys.executable, "-m", "mpifarmer",
                               str(tasks), "-n", "2"], cwd=tmp_path, env={**slurm_cluster.env, **farm_env()},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(ended.exists, 60, "task 0 to end")
        time.sleep(0.2)
        # Every process of the step gets the signal, as from scancel, --signal=USR1@N or srun forwarding it.
        slurm_cluster.run(["scancel", f"--signal={signame}", f"--name={name}"], timeout=30)
        out, _ = farmer.communicate(timeout=60)
    finally:
        if farmer.poll() is None:
            slurm_cluster.run(["scancel", f"--name={name}"], check=False, timeout=30)
            farmer.communicate(timeout=60)
    assert farmer.returncode == 3, out
    states = {record["id"]: record["st"] for record in ends(tmp_path / "tasks.txt_workdir")}
    assert states == {0: "interrupted", 1: "interrupted"}, out


# ---------------------------------------------------------------- sbatch scripts ---


def test_array_script_elements_share_the_list(slurm_cluster: SlurmCluster, tmp_path: Path):
    tasks = write_tasks(tmp_path / "tasks.txt", 32, 0.5)
    records = run_job(slurm_cluster, ["--array=0-3", "--cpus-per-task=2", str(SCRIPTS / "array.sh"), tasks.name],
                      cwd=tmp_path, output=tmp_path / "array-%a.out")
    assert len(records) == 4
    workdir = tmp_path / "tasks.txt_workdir"
    assert_each_task_once(tmp_path / "out.txt", workdir, 32)
    farmers = hellos(workdir)
    assert len(farmers) == 4, farmers
    # Each element is its own farmer (its own job ID, same array).
    assert len({hello["job"] for hello in farmers.values()}) == 4
    working = {record["f"] for record in ends(workdir)}
    assert len(working) >= 2, f"only {working} of {sorted(farmers)} ran tasks"


def test_multinode_script_on_one_node(slurm_cluster: SlurmCluster, tmp_path: Path):
    tasks = write_tasks(tmp_path / "tasks.txt", 24, 0.3)
    output = tmp_path / "job.out"
    run_job(slurm_cluster, ["--nodes=1", "--ntasks-per-node=4", "--cpus-per-task=2", str(SCRIPTS / "multinode.sh"),
                            tasks.name], cwd=tmp_path, output=output)
    workdir = tmp_path / "tasks.txt_workdir"
    assert_each_task_once(tmp_path / "out.txt", workdir, 24)
    assert len(hellos(workdir)) == 1
    # --cpus-per-task reached the ranks: 4 ranks x 2 workers.
    assert "2 workers on 4 ranks" in read(output), read(output)


def test_cancelled_job_then_new_job_finishes(slurm_cluster: SlurmCluster, tmp_path: Path):
    count = 24
    tasks = write_tasks(tmp_path / "tasks.txt", count)
    out, workdir = tmp_path / "out.txt", tmp_path / "tasks.txt_workdir"
    args = ["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=2"]
    first = sbatch(slurm_cluster, [*args, f"--output={tmp_path}/first.out", str(SCRIPTS / "multinode.sh"),
                                   tasks.name], cwd=tmp_path)
    try:
        wait_for(lambda: lines_in(out) >= 4, 60, "4 tasks of the first job", lambda: read(tmp_path / "first.out"))
        slurm_cluster.run(["scancel", first], timeout=30)
        info = wait_job_end(slurm_cluster, first, tmp_path / "first.out")
        assert info["JobState"] == "CANCELLED"
        wait_for(lambda: not slurm_cluster.run(["squeue", "-h", "-j", first], check=False).stdout.strip(), 60,
                 f"job {first} to leave the queue")
    finally:
        cancel(slurm_cluster, first)
    done_before = {r["id"] for r in ends(workdir) if r["st"] == "finished"}
    assert 4 <= len(done_before) < count, "the cancel did not fall mid-run"

    run_job(slurm_cluster, [*args, str(SCRIPTS / "multinode.sh"), tasks.name], cwd=tmp_path,
            output=tmp_path / "second.out")
    runs = runs_per_task(out)
    assert sorted(view(workdir, "finished")) == list(range(count)), read(tmp_path / "second.out")
    assert finished_twice(workdir) == []
    assert sorted(runs) == list(range(count)), runs
    assert {task: runs[task] for task in done_before} == dict.fromkeys(done_before, 1)
    # Beyond those, only a task interrupted in the instant after its output could show twice.
    interrupted = {r["id"] for r in ends(workdir) if r["st"] == "interrupted"}
    assert {task for task, n in runs.items() if n > 1} <= interrupted
    second = {f for f, hello in hellos(workdir).items() if hello["job"] != first}
    assert len(second) == 1
    assert not {r["id"] for r in ends(workdir) if r["f"] in second} & done_before


def _requeue_cycle(cluster: SlurmCluster, tmp_path: Path, farmer_args: list[str], *, ranks: int, kick: bool,
                   script: str = "requeue.sh", sbatch_args: tuple[str, ...] = (),
                   slurm_may_warn: bool = False) -> dict[str, float]:
    """Run ``script``, signal it mid-run, follow it through its requeue to the end; return timings.

    ``slurm_may_warn``: the job's own time-limit warning may stop a restarted run too (flex jobs).
    """
    count = 24
    tasks = write_tasks(tmp_path / "tasks.txt", count)
    out, workdir, output = tmp_path / "out.txt", tmp_path / "tasks.txt_workdir", tmp_path / "job.out"
    # Four workers in all, so that the list takes several seconds and the signal lands mid-run.
    job = sbatch(cluster, ["--nodes=1", f"--ntasks-per-node={ranks}", f"--cpus-per-task={4 // ranks}", *sbatch_args,
                           f"--output={output}", str(SCRIPTS / script), tasks.name, *farmer_args], cwd=tmp_path)
    timings: dict[str, float] = {}
    try:
        wait_for(lambda: lines_in(out) >= 4, 60, f"4 tasks of job {job}", lambda: read(output))
        t0 = time.monotonic()
        # What --signal=B:USR1@N does at the time limit, now: USR1 to the batch shell only.
        cluster.run(["scancel", "--signal=USR1", "--batch", job], timeout=30)
        wait_for(lambda: "exit code 3" in read(output), 30, "the farmer to stop", lambda: read(output))
        timings["stopped"] = time.monotonic() - t0
        wait_for(lambda: job_info(cluster, job).get("JobState") == "PENDING", 30, f"job {job} to be requeued",
                 lambda: read(output))
        timings["pending"] = time.monotonic() - t0
        if kick:
            # Skip the requeue delay (cred_expire, about 11 s here). Not at once: a StartTime=now within the
            # second of the requeue was seen to start the job while its old credential was still revoked,
            # and slurmctld then ended it FAILED ("Killing non-startable batch job: Job credential revoked").
            time.sleep(2)
            cluster.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], timeout=30, check=False)
        wait_for(lambda: f"job {job} restart 1" in read(output), JOB_DONE, f"job {job} to run again",
                 lambda: read(output))
        timings["restarted"] = time.monotonic() - t0
        info = wait_job_end(cluster, job, output)
        timings["completed"] = time.monotonic() - t0
    finally:
        cancel(cluster, job)
    text = read(output)
    assert info["JobState"] == "COMPLETED", text
    # One requeue per warning: ours, and for a flex job any that Slurm itself sent a restarted run
    # (seen in CI: a backfill-started restart warned within its first second). A run that was not
    # warned must have finished the list; nothing else requeues.
    runs_of_job = re.split(rf"^job {job} restart \d+ on ", text, flags=re.M)[1:]
    warned = [run for run in runs_of_job if "SIGUSR1 received" in run or "received SIGUSR1" in run]
    assert warned and runs_of_job[:len(warned)] == warned, text
    assert len(warned) == 1 or slurm_may_warn, text
    assert info["Restarts"] == str(len(warned)), text
    assert "restart 0" in text and "restart 1" in text, text
    # The first run stopped with tasks left and drained its running tasks.
    farmers = hellos(workdir)
    assert sorted(h["restart"] for h in farmers.values()) == list(range(len(warned) + 1))
    first = next(f for f, h in farmers.items() if h["restart"] == 0)
    first_ends = [r for r in ends(workdir) if r["f"] == first]
    assert any(r["st"] == "interrupted" for r in first_ends), first_ends
    assert "no work left" in text, text
    # Nothing lost, nothing finished run twice.
    runs = runs_per_task(out)
    assert sorted(runs) == list(range(count)), runs
    assert finished_twice(workdir) == []
    assert sorted(view(workdir, "finished")) == list(range(count))
    done_first = {r["id"] for r in first_ends if r["st"] == "finished"}
    assert {task: runs[task] for task in done_first} == dict.fromkeys(done_first, 1)
    interrupted = {r["id"] for r in ends(workdir) if r["st"] == "interrupted"}
    assert {task for task, n in runs.items() if n > 1} <= interrupted
    print(f"requeue cycle ({script} {' '.join(farmer_args)}, {ranks} ranks, kick={kick}): "
          + ", ".join(f"{k} +{v:.1f} s" for k, v in timings.items()))
    return timings


def test_requeue_script_requeues_and_resumes(slurm_cluster: SlurmCluster, tmp_path: Path):
    """The script's trap forwards USR1, the MPI farmer drains, the script runs scontrol requeue.

    No shortcut: the restart waits for Slurm's own requeue delay.
    """
    _requeue_cycle(slurm_cluster, tmp_path, [], ranks=2, kick=False)
    text = read(tmp_path / "job.out")
    assert "tasks are left: requeueing job" in text, text
    assert "requeued Slurm job" not in text, text  # the farmer's own requeue was not asked for


def test_requeue_by_the_farmer(slurm_cluster: SlurmCluster, tmp_path: Path):
    """The same cycle with mpifarmer --requeue (one rank, so a local-mode farmer): it requeues, the script does not."""
    _requeue_cycle(slurm_cluster, tmp_path, ["--requeue"], ranks=1, kick=True)
    text = read(tmp_path / "job.out")
    assert "requeued Slurm job" in text, text
    assert "tasks are left: requeueing job" not in text, text


def test_requeue_by_the_mpi_farmer(slurm_cluster: SlurmCluster, tmp_path: Path):
    """mpifarmer --requeue with two MPI ranks: rank 0 requeues while the step still runs.

    The ranks must then finish MPI cleanly despite Slurm's SIGTERM: a rank killed inside MPICH leaves
    /dev/shm/mpich_shm_* behind under a name the requeued job's step (same job and step ID) reuses, and
    the restarted ranks then fail in MPI_Init ("UCX ERROR failed to unpack address").
    """
    _requeue_cycle(slurm_cluster, tmp_path, ["--requeue"], ranks=2, kick=True)
    text = read(tmp_path / "job.out")
    assert "requeued Slurm job" in text, text
    assert "tasks are left: requeueing job" not in text, text


def test_nersc_flex_example_requeues_and_resumes(slurm_cluster: SlurmCluster, tmp_path: Path):
    """The NERSC example runs here with its Perlmutter-only constraint and sizes overridden.

    Its warning (@300 s) would fire at once within the tests' 5-minute limit, so it is moved to 30 s.
    """
    _requeue_cycle(slurm_cluster, tmp_path, [], ranks=1, kick=True, script="nersc-flex.sh",
                   sbatch_args=("--constraint=", "--time-min=1", "--signal=B:USR1@30"), slurm_may_warn=True)
    assert "tasks are left: requeueing job" in read(tmp_path / "job.out")


# ---------------------------------------------------------------- several node daemons ---


def _up(env: dict[str, str]) -> None:
    proc = subprocess.run(["bash", str(UP_SH)], capture_output=True, text=True, timeout=300, env=env,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.fail(f"{UP_SH} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}", pytrace=False)


@pytest.fixture(scope="module")
def three_nodes(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The cluster reconfigured with three node daemons; the session's configuration is restored afterwards."""
    _up({**slurm_cluster.env, "SLURM_CI_NODES": "3"})
    try:
        yield slurm_cluster
    finally:
        _up(slurm_cluster.env)


def test_three_nodes_spread(three_nodes: SlurmCluster, tmp_path: Path):
    tasks = write_tasks(tmp_path / "tasks.txt", 18, 0.5, record="$MPIFARMER_TASK_ID $SLURMD_NODENAME")
    three_nodes.run(["srun", JOB_TIME, "-N", "3", "-n", "3", sys.executable, "-m", "mpifarmer", str(tasks), "-n", "2"],
                    cwd=tmp_path, env=farm_env(), timeout=JOB_DONE)
    workdir = tmp_path / "tasks.txt_workdir"
    pairs = [line.split() for line in (tmp_path / "out.txt").read_text().splitlines()]
    assert sorted(int(task) for task, _ in pairs) == list(range(18)), pairs
    assert {node for _, node in pairs} == {"node1", "node2", "node3"}, pairs
    assert {record["rank"] for record in ends(workdir)} == {0, 1, 2}
    assert finished_twice(workdir) == []

