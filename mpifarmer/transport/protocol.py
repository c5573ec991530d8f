"""The messages between the coordinator (rank 0) and the worker ranks, defined once.

Workers send ``Hello`` first, then ``Started``/``Ended`` batches as their tasks run, ``Beat``
when they have had nothing else to say for a while, ``Stop`` when they receive a stop signal,
``Released`` for tasks they were sent but will not start, and ``Bye`` last. The coordinator
sends ``Run`` batches, ``Ping`` when idle, ``Drain`` to stop everything, and ``Finish``.
Every message is a small dataclass; the version in ``Hello`` lets mismatched installations fail
with a clear message rather than a garbled one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["VERSION", "Beat", "Bye", "Drain", "Ended", "Finish", "Hello", "Message", "Ping", "Released", "Run",
           "Started", "Stop", "TaskEnd", "TaskStart", "TaskWork"]

VERSION = 1


@dataclass(frozen=True, slots=True)
class TaskWork:
    id: int
    line: str
    command: str


@dataclass(frozen=True, slots=True)
class TaskStart:
    id: int
    pid: int
    pid_start: int | None
    slot: int
    t0: float


@dataclass(frozen=True, slots=True)
class TaskEnd:
    """``returncode`` is negative for death by a signal; ``killed`` says the worker sent it."""

    id: int
    returncode: int
    t0: float
    t1: float
    slot: int
    killed: bool = False


# -- worker to coordinator ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Hello:
    host: str
    slots: int
    pid: int
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class Started:
    starts: list[TaskStart] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Ended:
    ends: list[TaskEnd] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Released:
    ids: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Stop:
    reason: str


@dataclass(frozen=True, slots=True)
class Beat:
    pass


@dataclass(frozen=True, slots=True)
class Bye:
    pass


# -- coordinator to worker ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Run:
    tasks: list[TaskWork] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Drain:
    reason: str


@dataclass(frozen=True, slots=True)
class Finish:
    code: int = 0


Message = Hello | Started | Ended | Released | Stop | Beat | Bye | Run | Ping | Drain | Finish
