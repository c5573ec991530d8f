"""The messages between the coordinator (rank 0) and the worker ranks, defined once.

Workers send ``Hello`` first, then ``Started``/``Ended`` batches as their tasks run, ``Beat``
when they have had nothing else to say for a while, ``Stop`` when they receive a stop signal,
``Released`` for tasks they were sent but will not start, and ``Bye`` last. The coordinator
sends ``Work`` batches, ``Ping`` when idle, ``Drain`` to stop everything, and ``Finish``.
Every message is a small named tuple (they pickle fast: a few hundred thousand per second
cross rank 0 at full dispatch rate); the version in ``Hello`` lets mismatched installations fail
with a clear message rather than a garbled one. The per-task tuples (``TaskWork``, ``TaskStart``,
``TaskEnd``) pickle as ``tuple.__new__(cls, fields)``: a named tuple's default pickling calls two
Python functions per tuple, which cost rank 0 about a microsecond per task at full rate.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, NamedTuple

__all__ = ["VERSION", "Beat", "Bye", "Drain", "Ended", "Finish", "Hello", "Message", "Ping", "Released",
           "Started", "Stop", "TaskEnd", "TaskStart", "TaskWork", "Work"]

VERSION = 5


def _reduce(self: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """Pickle a named tuple as its class and fields, rebuilt in C (see the module docstring)."""
    return tuple.__new__, (type(self), tuple(self))


class TaskWork(NamedTuple):
    """``attempt``: (this attempt, attempts allowed) for a task that may be retried, else None."""

    id: int
    line: str
    command: str
    attrs: dict[str, Any] = {}  # as recorded with the task (never mutated: the default is shared)
    attempt: tuple[int, int] | None = None

    __reduce__ = _reduce


class TaskStart(NamedTuple):
    """``cpus`` and ``gpus``: what the run was bound to and given (empty: nothing), as
    :meth:`mpifarmer.resources.PoolResources.placed` writes them."""

    id: int
    pid: int
    pid_start: int | None
    slot: int
    t0: float
    cpus: str = ""
    gpus: str = ""

    __reduce__ = _reduce


class TaskEnd(NamedTuple):
    """``returncode`` is negative for death by a signal; ``reason`` (an EndReason) says why the
    run ended; ``attrs`` are the attributes it ran with; ``cpus`` and ``gpus`` as in TaskStart."""

    id: int
    returncode: int
    t0: float
    t1: float
    slot: int
    reason: str = "exited"
    attrs: dict[str, Any] = {}
    cpus: str = ""
    gpus: str = ""

    __reduce__ = _reduce


_as_task_work = functools.partial(tuple.__new__, TaskWork)


# -- worker to coordinator ------------------------------------------------------------------

class Hello(NamedTuple):
    """``found``: the CPUs and GPUs the rank found on its node, for the farmer's log."""

    host: str
    slots: int
    pid: int
    version: int = VERSION
    found: str = ""


class Started(NamedTuple):
    starts: list[TaskStart] = []


class Ended(NamedTuple):
    ends: list[TaskEnd] = []


class Released(NamedTuple):
    ids: list[int] = []


class Stop(NamedTuple):
    reason: str


class Beat(NamedTuple):
    """Still here (sent after a second with nothing else to say)."""


class Bye(NamedTuple):
    """Leaving."""


# -- coordinator to worker ------------------------------------------------------------------

class Work(NamedTuple):
    """Tasks for a rank to run, in order. ``tasks`` holds plain tuples of TaskWork's five fields,
    which rank 0 builds and pickles with no Python call per task (at full hand-out rate the named
    tuples' construction and pickling were a tenth of its CPU); :meth:`works` reads them."""

    tasks: list[tuple[Any, ...]] = []

    def works(self) -> Iterator[TaskWork]:
        return map(_as_task_work, self.tasks)


class Ping(NamedTuple):
    """Still here (sent to idle ranks every second)."""


class Drain(NamedTuple):
    reason: str


class Finish(NamedTuple):
    code: int = 0


Message = Hello | Started | Ended | Released | Stop | Beat | Bye | Work | Ping | Drain | Finish
