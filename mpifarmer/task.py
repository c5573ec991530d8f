"""The task record shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

__all__ = ["RUN_VARIABLES", "EndReason", "Task", "TaskSpec"]

#: The variables mpifarmer sets for a run (see the pool and :mod:`mpifarmer.scheduling.binding`):
#: what a container runner whose tool does not pass the environment in passes by name.
RUN_VARIABLES = ("PROC_NUMBER", "MPIFARMER_TASK_ID", "MPIFARMER_WORKDIR", "MPIFARMER_FARMER", "MPIFARMER_POOL",
                 "MPIFARMER_CPUS", "OMP_NUM_THREADS", "MPIFARMER_GPUS", "CUDA_VISIBLE_DEVICES",
                 "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK", "CUDA_DEVICE_ORDER")


class TaskSpec(NamedTuple):
    """What a task-list handler makes of a line: the command and the task's attributes."""

    command: str
    attrs: dict[str, Any] = {}


class EndReason(StrEnum):
    """Why a run ended, as its end travels from the pool to the journal."""

    EXITED = "exited"  # the process exited by itself (its exit code says how)
    SIGNALLED = "signalled"  # killed by a signal the farmer did not send
    STOPPED = "stopped"  # stopped by the farmer: a drain (signal, --timeout, a lost rank)
    LOST = "lost"  # its spawner died and the pool killed it
    TIMED_OUT = "timed-out"  # ran longer than its time limit (for per-task timeouts)
    UNAVAILABLE = "unavailable"  # the resources it asked for could not be given (for resources)


@dataclass(frozen=True, slots=True)
class Task:
    """One line of the task list.

    ``id`` is the 0-based index among the task lines (blank and comment lines do not count),
    ``line`` the text as it stands in the list, ``command`` the shell command the task-list
    handler made of it. ``attrs`` carries the per-task attributes the handler gave (recorded in
    the journal with the task; ``env`` is a mapping of extra environment variables for the run).
    """

    id: int
    line: str
    command: str
    attrs: dict[str, Any] = field(default_factory=dict)
    #: (this attempt, attempts allowed) for a task that may be retried, else None: its log then
    #: begins with a line naming the attempt, and earlier attempts' logs are kept beside it.
    attempt: tuple[int, int] | None = None
    #: How many GPUs the run is given, and whose they are ("nvidia", "amd"; None: not known),
    #: as the pool decided from the task's request: a container runner passes them in.
    gpus: int = 0
    gpu_vendor: str | None = None
