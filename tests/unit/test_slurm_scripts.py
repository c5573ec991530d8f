"""The job scripts in slurm/ without Slurm: syntax, #SBATCH lines, the flags slurm/README.md documents,
and the requeue scripts' signal handling with stand-ins for srun and scontrol."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SLURM = REPO / "slurm"
README = SLURM / "README.md"
BASH = shutil.which("bash") or "/bin/bash"

SCRIPTS = ["array.sh", "multinode.sh", "requeue.sh", "nersc-flex.sh", "gpu-node.sh"]
REQUEUERS = ["requeue.sh", "nersc-flex.sh"]

#: The #SBATCH options each script must set, as slurm/README.md describes them.
SBATCH = {
    "array.sh": ["--array=0-3", "--ntasks=1", "--cpus-per-task=2", "--time=01:00:00",
                 "--output=mpifarmer-array-%A_%a.out"],
    "multinode.sh": ["--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=2", "--time=01:00:00"],
    "requeue.sh": ["--requeue", "--signal=B:USR1@120", "--open-mode=append", "--ntasks-per-node=1"],
    "nersc-flex.sh": ["--qos=flex", "--constraint=cpu", "--time=48:00:00", "--time-min=02:00:00", "--requeue",
                      "--signal=B:USR1@300", "--open-mode=append"],
    "gpu-node.sh": ["--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=64", "--gpus-per-node=4"],
}

#: Flags and commands slurm/README.md documents for each script: each fragment appears in both.
DOCUMENTED = {
    "array.sh": ["--array=0-3", "--cpus-per-task", "--mode local"],
    "multinode.sh": ["--ntasks-per-node=1", "--kill-on-bad-exit=1", "--mpi=pmi2",
                     "--cpus-per-task=$SLURM_CPUS_PER_TASK"],
    "requeue.sh": ["--requeue", "--signal=B:USR1@120", "--open-mode=append", "--kill-on-bad-exit=1", "--mpi=pmi2",
                   "scontrol requeue $SLURM_JOB_ID", "MPIFARMER_MAX_REQUEUES"],
    "nersc-flex.sh": ["--qos=flex", "--time-min", "--signal=B:USR1@300", "--requeue"],
    "gpu-node.sh": ["--gpus-per-node", "--gpus-per-task", "--cores-per-task", "MPIFARMER_GPUS_PER_TASK",
                    "MPIFARMER_CORES_PER_TASK", "--kill-on-bad-exit=1", "--mpi=pmi2"],
}

def text(name: str) -> str:
    return (SLURM / name).read_text()


def sbatch_options(name: str) -> list[str]:
    return [line.split(None, 1)[1].split("#")[0].strip() for line in text(name).splitlines()
            if line.startswith("#SBATCH")]


def unquoted(script: str) -> str:
    """The script with shell quotes dropped, so that "$X" in it matches $X in the README."""
    return script.replace('"', "")


@pytest.mark.parametrize("name", SCRIPTS)
def test_bash_syntax(name: str):
    done = subprocess.run([BASH, "-n", str(SLURM / name)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", SCRIPTS)
def test_sbatch_options_as_documented(name: str):
    options = sbatch_options(name)
    assert set(SBATCH[name]) <= set(options), options
    assert len(options) == len(set(o.split("=")[0] for o in options)), f"an option is set twice: {options}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_sbatch_lines_come_before_the_first_command(name: str):
    """sbatch stops reading #SBATCH lines at the first line that is not a comment or blank."""
    lines = text(name).splitlines()
    assert lines[0] == "#!/bin/bash"
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    late = [line for line in lines[first_command:] if line.startswith("#SBATCH")]
    assert not late, late


@pytest.mark.parametrize("name", SCRIPTS)
def test_task_list_is_the_first_argument_and_the_rest_goes_to_mpifarmer(name: str):
    script = text(name)
    assert "tasklist=${1:?usage:" in script
    assert re.search(r'-m mpifarmer "\$tasklist"( --mode local)? "\$@"', script), name


@pytest.mark.parametrize("name", SCRIPTS)
def test_python_comes_from_mpifarmer_python(name: str):
    assert "python=${MPIFARMER_PYTHON:-python3}" in text(name)
    assert "MPIFARMER_PYTHON" in README.read_text()


@pytest.mark.parametrize("name", SCRIPTS)
def test_readme_documents_the_scripts_flags(name: str):
    readme = README.read_text()
    assert f"`{name}`" in readme
    for fragment in DOCUMENTED[name]:
        assert fragment in readme, fragment
        assert fragment in unquoted(text(name)), fragment

def test_readme_covers_launch_and_signals():
    readme = README.read_text()
    for fragment in ["--mpi=pmi2", "--mpi=pmix", "srun -K", "--kill-on-bad-exit=1", "MPICC=cc pip install",
                     "--no-binary mpi4py mpi4py", "pip uninstall mpich", "MPI4PY_LIBMPI", "--signal=B:USR1@N",
                     "--signal=USR1@N", "scancel --signal=USR1 --batch JOB", "kill -TERM <srun pid>"]:
        assert fragment in readme, fragment


def test_srun_scripts_use_kill_on_bad_exit_and_pmi2():
    for name in ["multinode.sh", "requeue.sh"]:
        assert "srun_options=(--kill-on-bad-exit=1 --mpi=pmi2)" in text(name)
    assert "--kill-on-bad-exit=1" in text("nersc-flex.sh")


# ---------------------------------------------------------------- requeue logic with stand-ins ---

FAKE_SRUN = """#!/bin/bash
# Stand-in for srun: note the call, then act as a farmer that stops with code 3 on SIGUSR1
# (taking $FAKE_DRAIN_SECONDS) and otherwise exits with $FAKE_FARMER_RC after $FAKE_FARMER_SECONDS.
echo "srun $*" >> "$FAKE_LOG"
trap 'echo "farmer got USR1" >> "$FAKE_LOG"; kill $sleeper; sleep "${FAKE_DRAIN_SECONDS:-0}"; exit 3' USR1
sleep "${FAKE_FARMER_SECONDS:-30}" >/dev/null 2>&1 &
sleeper=$!
touch "$FAKE_LOG.started"
wait $sleeper
exit "${FAKE_FARMER_RC:-0}"
"""
FAKE_SCONTROL = """#!/bin/bash
echo "scontrol $*" >> "$FAKE_LOG"
"""


def run_requeuer(tmp_path: Path, name: str, *args: str, signal_it: bool, restarts: int = 0,
                 env: dict[str, str] | None = None, signals: int = 1) -> tuple[int, str, str]:
    """Run a requeue script with fake srun/scontrol; optionally send it SIGUSR1 mid-run. Returns (rc, log, stdout)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool, body in [("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)]:
        (bin_dir / tool).write_text(body)
        (bin_dir / tool).chmod(0o755)
    log = tmp_path / "calls.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    full_env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=str(log), SLURM_JOB_ID="4242",
                    SLURM_CPUS_PER_TASK="3", SLURM_RESTART_COUNT=str(restarts), **(env or {}))
    proc = subprocess.Popen([BASH, str(SLURM / name), "tasks.txt", *args], cwd=tmp_path, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"{log}.started").exists():
            assert time.monotonic() < deadline, "the fake srun did not start"
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.02)
        if signal_it:
            for _ in range(signals):
                time.sleep(0.1)  # let the script reach its wait
                proc.send_signal(signal.SIGUSR1)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, log.read_text(), out


@pytest.mark.parametrize("name", REQUEUERS)
def test_warning_stops_the_farmer_and_requeues(tmp_path: Path, name: str):
    rc, log, out = run_requeuer(tmp_path, name, "-v", signal_it=True)
    assert rc == 3, out
    calls = log.splitlines()
    assert calls[0].startswith("srun --kill-on-bad-exit=1") and "--cpus-per-task=3" in calls[0], calls
    assert calls[0].endswith("-m mpifarmer tasks.txt -v"), calls
    assert calls[1:] == ["farmer got USR1", "scontrol requeue 4242"], (calls, out)
    assert "farmer exited with code 3" in out


@pytest.mark.parametrize("name", REQUEUERS)
@pytest.mark.parametrize("farmer_rc", ["0", "1", "2"])
def test_a_farmer_that_is_done_is_not_requeued(tmp_path: Path, name: str, farmer_rc: str):
    rc, log, out = run_requeuer(tmp_path, name, signal_it=False,
                                env={"FAKE_FARMER_RC": farmer_rc, "FAKE_FARMER_SECONDS": "0.2"})
    assert rc == int(farmer_rc), out
    assert "scontrol" not in log, log


@pytest.mark.parametrize("name", REQUEUERS)
def test_a_farmer_stopped_by_its_own_timeout_is_requeued(tmp_path: Path, name: str):
    """Exit code 3 decides, whatever stopped the farmer."""
    rc, log, out = run_requeuer(tmp_path, name, signal_it=False, env={"FAKE_FARMER_RC": "3",
                                                                       "FAKE_FARMER_SECONDS": "0.2"})
    assert rc == 3, out
    assert log.splitlines()[-1] == "scontrol requeue 4242", log


def test_farmer_requeue_option_leaves_the_requeue_to_the_farmer(tmp_path: Path):
    rc, log, out = run_requeuer(tmp_path, "requeue.sh", "--requeue", signal_it=True)
    assert rc == 3, out
    assert "farmer got USR1" in log
    assert "scontrol" not in log, log


@pytest.mark.parametrize("name", REQUEUERS)
def test_requeues_stop_at_the_limit(tmp_path: Path, name: str):
    rc, log, out = run_requeuer(tmp_path, name, signal_it=True, restarts=2, env={"MPIFARMER_MAX_REQUEUES": "2"})
    assert rc == 3, out
    assert "scontrol" not in log, log
    assert "requeued 2 times already" in out


@pytest.mark.parametrize("name", REQUEUERS)
def test_a_second_warning_while_the_farmer_stops_is_waited_out(tmp_path: Path, name: str):
    """Each trapped signal ends a wait early; the script must still get the farmer's own exit code."""
    rc, log, out = run_requeuer(tmp_path, name, signal_it=True, signals=2, env={"FAKE_DRAIN_SECONDS": "0.5"})
    assert rc == 3, out
    assert out.count("SIGUSR1 received") == 2, out
    assert log.splitlines()[-1] == "scontrol requeue 4242", log


# ---------------------------------------------------------------- the GPU node script ---------

#: Stand-in for srun: note its options, then run the command after them (as one rank would).
FAKE_GPU_SRUN = """#!/bin/bash
echo "srun $*" >> "$FAKE_LOG"
while [[ $1 == --* ]]; do shift; done
exec "$@"
"""


def test_the_gpu_node_script_gives_each_task_a_gpu_and_its_share_of_the_cores(tmp_path: Path):
    """With a stand-in srun that runs the real farmer as the step's only rank, which finds the
    GPUs Slurm gave the step in SLURM_STEP_GPUS (no GPU is touched)."""
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_GPU_SRUN)
    (bin_dir / "srun").chmod(0o755)
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("".join(f'echo "$MPIFARMER_GPUS|$MPIFARMER_CPUS" > out.{i}\n' for i in range(4)))
    cpus = len(os.sched_getaffinity(0))
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_LOG=str(tmp_path / "log"),
               MPIFARMER_PYTHON=sys.executable, SLURM_JOB_ID="77", SLURM_CPUS_PER_TASK=str(cpus),
               SLURM_GPUS_PER_NODE="a100:4", SLURM_STEP_GPUS="0,1,2,3", HOME=str(tmp_path))
    done = subprocess.run([BASH, str(SLURM / "gpu-node.sh"), str(tasks), "-v"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    log = (tmp_path / "log").read_text()
    assert f"--cpus-per-task={cpus} --gpus-per-node=a100:4" in log, log
    assert f"--gpus-per-task 1 --cores-per-task {max(1, cpus // 4)} -v" in log, log
    assert "4 GPUs 0,1,2,3 (SLURM_STEP_GPUS)" in done.stderr, done.stderr
    seen = [(tmp_path / f"out.{i}").read_text().strip().split("|") for i in range(4)]
    assert all(len(gpus.split(",")) == 1 and cpu for gpus, cpu in seen), seen
    # A later option wins over the script's defaults.
    override = subprocess.run([BASH, str(SLURM / "gpu-node.sh"), str(tasks), "--gpus-per-task", "2"], cwd=tmp_path,
                              env=dict(env, MPIFARMER_CORES_PER_TASK="1"), capture_output=True, text=True, timeout=120)
    assert override.returncode == 0 and "--cores-per-task 1 --gpus-per-task 2" in (tmp_path / "log").read_text()
