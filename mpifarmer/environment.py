"""What mpifarmer learns from its surroundings: host, process identity, Slurm, CPUs and GPUs.

Slurm's environment is read here and nowhere else: :func:`hardware` hands the real environment,
``/sys`` and ``/proc`` to :mod:`mpifarmer.hardware`, which reads only what it is given.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpifarmer.hardware import Inventory

__all__ = ["SlurmInfo", "available_cpus", "boot_id", "hardware", "hostname", "launched_processes",
           "lock_host_name", "pid_alive", "pid_start", "process_groups_with", "slurm"]


@cache
def hostname() -> str:
    return socket.gethostname()


@cache
def lock_host_name() -> str:
    """The host name filelock writes into its lock claims (it marks a container's PID namespace)."""
    try:
        from filelock._identity import host_name  # not public; the fallback is the plain host name
    except ImportError:
        return hostname()
    return host_name()


@cache
def boot_id() -> str:
    """An ID that changes when the host reboots: a pid on another boot is certainly gone."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as stream:
            return stream.read().strip()
    except OSError:
        return ""


def pid_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot, or None if it is gone.

    Together with the pid it names one process: a reused pid has another start time. A zombie
    (dead, not yet reaped by its parent) counts as gone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            stat = stream.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def pid_alive(pid: int, start: int | None) -> bool:
    """Whether the process ``pid`` that started at ``start`` still runs on this host."""
    if os.path.isdir("/proc/self"):
        now = pid_start(pid)
        return now is not None and (start is None or now == start)
    try:  # no /proc: the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_groups_with(variable: str) -> set[int]:
    """Process groups of this user's processes whose environment holds ``variable`` (NAME=VALUE)."""
    from mpifarmer._sentinel import processes_with

    groups: set[int] = set()
    for pid in processes_with(variable):
        try:
            groups.add(os.getpgid(pid))
        except OSError:
            continue
    groups.discard(os.getpgrp())
    return groups


@dataclass(frozen=True)
class SlurmInfo:
    """The parts of Slurm's environment mpifarmer uses."""

    job_id: str | None = None
    array_job_id: str | None = None
    array_task_id: str | None = None
    restart_count: int = 0
    procid: int | None = None
    ntasks: int | None = None
    cpus_per_task: int | None = None
    step_id: str | None = None

    @property
    def job_key(self) -> str | None:
        """What names this job across requeues: the array element, else the job ID."""
        if self.array_job_id and self.array_task_id:
            return f"{self.array_job_id}_{self.array_task_id}"
        return self.job_id



def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def slurm(environ: dict[str, str] | None = None) -> SlurmInfo:
    env = os.environ if environ is None else environ
    return SlurmInfo(
        job_id=env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID"),
        array_job_id=env.get("SLURM_ARRAY_JOB_ID"),
        array_task_id=env.get("SLURM_ARRAY_TASK_ID"),
        restart_count=_int(env.get("SLURM_RESTART_COUNT")) or 0,
        procid=_int(env.get("SLURM_PROCID")),
        ntasks=_int(env.get("SLURM_NTASKS")),
        cpus_per_task=_int(env.get("SLURM_CPUS_PER_TASK")),
        step_id=env.get("SLURM_STEP_ID"),
    )


#: Variables through which MPI launchers tell a process how many processes they started.
_LAUNCHER_SIZES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_STEP_NUM_TASKS")


def launched_processes(environ: dict[str, str] | None = None) -> int:
    """How many processes an MPI launcher or srun started together with this one (1 if none)."""
    env = os.environ if environ is None else environ
    sizes = [_int(env.get(name)) for name in _LAUNCHER_SIZES]
    return max([size for size in sizes if size] or [1])


def available_cpus(environ: dict[str, str] | None = None) -> int:
    """CPUs this process may use: what Slurm gave the task (``-c``), else the affinity mask.

    Slurm without CPU binding (task/none) leaves the affinity mask at the whole node, so its
    ``SLURM_CPUS_PER_TASK`` comes first.
    """
    given = slurm(environ).cpus_per_task
    if given:
        return given
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def hardware(gpus_option: str | None = None) -> Inventory:
    """The CPUs and GPUs this process may use on its node (see :mod:`mpifarmer.hardware`);
    ``gpus_option`` is the ``--gpus`` list. ValueError for a bad list."""
    from mpifarmer.hardware import discover

    affinity = getattr(os, "sched_getaffinity", None)
    return discover(gpus_option, os.environ, "/sys", "/proc", (lambda: affinity(0)) if affinity else None)
