"""The runner interface and the plain shell runner.

A runner decides *how* one task is executed: which program is started and with which
arguments. It does not start anything itself. :meth:`Runner.build` is a pure function from a
:class:`~mpifarmer.task.Task` to an argv list; the worker pool owns the process (start, output
redirection, environment, timeouts, kill, reap). Keeping the two apart lets every runner be
tested by comparing lists, and keeps process handling in one place.
"""

from __future__ import annotations

import functools
import shutil
from abc import ABC, abstractmethod

from mpifarmer.task import Task

__all__ = ["BasicRunner", "NoopRunner", "Runner"]


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
def _host_bash() -> str:
    """Absolute path of bash on this host, looked up once per process."""
    return shutil.which("bash") or "/bin/bash"


class BasicRunner(Runner):
    """Run the task's command with bash, in the worker's own environment.

    The command is handed to ``bash -c`` unchanged, so pipes, quotes, redirections and
    variables behave as they would when typed at a prompt. This is the ``default`` runner.
    """

    def __init__(self) -> None:
        self.bash = _host_bash()

    def build(self, task: Task) -> list[str]:
        """Return ``[bash, "-c", task.command]``."""
        return [self.bash, "-c", task.command]


class NoopRunner(Runner):
    """Run nothing: every task succeeds at once, without a process.

    For measuring the farmer itself (dispatch rate, state writes) without the cost of starting
    programs. Define it like any runner (``Runner = mpifarmer.runners.NoopRunner``).
    """

    def build(self, task: Task) -> list[str]:
        """Return ``[]``: the pool takes an empty argv as a task that ran and exited 0."""
        return []
