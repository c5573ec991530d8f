"""The runner interface and the plain shell runner.

A runner decides *how* one task is executed: which program is started and with which
arguments. It does not start anything itself. :meth:`Runner.build` is a pure function from a
:class:`~mpifarmer.task.Task` to an argv list; the worker pool owns the process (start, output
redirection, environment, timeouts, kill, reap). Keeping the two apart lets every runner be
tested by comparing lists, and keeps process handling in one place.
"""

from __future__ import annotations

import functools
import os
import shutil
from abc import ABC, abstractmethod

from mpifarmer.task import Task

__all__ = ["BasicRunner", "HoldRunner", "NoopRunner", "Runner"]


class Runner(ABC):
    """How a task's shell command becomes a program to execute.

    Subclasses implement :meth:`build`. Their constructor's keyword arguments are the options a
    runner definition may set (see :mod:`mpifarmer.config`); values from INI files arrive as
    strings, so a constructor must accept strings and reject bad values with ``ValueError`` or
    ``TypeError`` and a message that names the option.
    """

    @abstractmethod
    def build(self, task: Task) -> list[str]:
        """Return the argv that runs ``task.command``, the program first.

        Must be pure: no processes, files, or environment changes, and the same task gives
        the same list every time. The pool runs the list without a shell, so the list must
        already contain any shell that the command needs.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@functools.cache
def _find_shell(name: str) -> str | None:
    """Absolute path of the shell ``name`` (a name looked up on PATH, or a path), once per process."""
    found = shutil.which(name)
    return os.path.abspath(found) if found else None


class BasicRunner(Runner):
    """Run the task's command with bash, in the worker's own environment.

    The command is handed to ``bash -c`` unchanged, so pipes, quotes, redirections and
    variables behave as they would when typed at a prompt. This is the ``default`` runner.

    Option ``shell``: another shell to hand the command to with ``-c`` (a name looked up on
    PATH, or a path), e.g. ``sh``: on Debian and Ubuntu that is dash, which starts in about
    half the time of bash, a saving that matters only for tasks of a few milliseconds.
    """

    def __init__(self, shell: str = "bash") -> None:
        if not isinstance(shell, str) or not shell.strip():
            raise ValueError(f"shell must name a shell program such as bash or /bin/sh, not {shell!r}")
        found = _find_shell(shell.strip())
        if found is None:
            raise ValueError(f"shell {shell.strip()!r} is not an executable program on PATH; give its full path")
        self.shell = found
        self._named = shell.strip()

    def __repr__(self) -> str:
        return "BasicRunner()" if self._named == "bash" else f"BasicRunner(shell={self._named!r})"

    def build(self, task: Task) -> list[str]:
        """Return ``[shell, "-c", task.command]`` (the shell is bash unless set)."""
        return [self.shell, "-c", task.command]


class NoopRunner(Runner):
    """Run nothing: every task succeeds at once, without a process.

    For measuring the farmer itself (dispatch rate, state writes) without the cost of starting
    programs. Define it like any runner (``Runner = mpifarmer.runners.NoopRunner``).
    """

    def build(self, task: Task) -> list[str]:
        """Return ``[]``: the pool takes an empty argv as a task that ran and exited 0."""
        return []


class HoldRunner(NoopRunner):
    """For benchmarks and tests only: every task holds one slot for ``seconds``, then succeeds,
    and no process is started.

    The pool keeps the slot busy from the task's start until ``seconds`` later and then records
    exit code 0, all within its own loop: no spawner, no fork, no log output. A farm of such
    tasks costs the farmer what real tasks of that length would (claims, hand-outs, journal
    records, MPI messages), without the start-up cost of programs hiding it, and rank 0's own
    worker cannot absorb the whole list the way it does zero-length tasks. Define it like any
    runner::

        [hold]
        Runner = mpifarmer.runners.HoldRunner
        seconds = 0.05
    """

    def __init__(self, seconds: float | str = 0.0) -> None:
        try:
            value = float(seconds)
        except (TypeError, ValueError):
            raise ValueError(f"seconds must be a number of seconds such as 0.05, not {seconds!r}") from None
        if not 0.0 <= value < float("inf"):
            raise ValueError(f"seconds must be 0 or more (and finite), not {seconds!r}")
        self.seconds = value

    def __repr__(self) -> str:
        return f"HoldRunner(seconds={self.seconds:g})"
