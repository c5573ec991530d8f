"""Errors that mpifarmer reports to its user.

Every error a user can cause derives from :class:`FarmerError`. The command line prints
``str(error)`` as a single line and exits with ``error.exit_code``; no traceback is shown.
Subclasses carry the facts as attributes so that callers and tests need not parse messages.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ConfigError",
    "FarmerError",
    "LockError",
    "Stopped",
    "TaskListChanged",
    "TaskListError",
    "UsageError",
    "WorkDirError",
]

#: Exit code for usage and input errors (the same as argparse uses).
EXIT_USAGE = 2
#: Exit code of a farmer stopped early with work left (a signal, --timeout).
EXIT_STOPPED = 3
#: Exit code of a farmer stopped with work left because --max-failures tasks had failed: not 3,
#: so that a script that requeues on 3 does not requeue a failing farm.
EXIT_FAILURES = 4


class FarmerError(Exception):
    """Base class of every error mpifarmer reports to its user."""

    exit_code: int = EXIT_USAGE


class Stopped(FarmerError):
    """A stop signal arrived before the farm started (while waiting for the lock, say)."""

    exit_code = EXIT_STOPPED


class UsageError(FarmerError):
    """A bad option value or combination of options."""


class TaskListError(FarmerError):
    """The task list cannot be read: ``path`` and, where known, the 1-based ``line``."""

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class TaskListChanged(TaskListError):
    """The task list no longer matches the tasks recorded in the work directory."""


class ConfigError(FarmerError):
    """A runner or task-list handler definition is wrong: ``path`` and ``section`` name it."""

    def __init__(self, path: str | Path | None, section: str | None, problem: str) -> None:
        self.path = str(path) if path is not None else None
        self.section = section
        self.problem = problem
        where = " ".join(part for part in (self.path, f"[{section}]" if section else None) if part)
        super().__init__(f"{where}: {problem}" if where else problem)


class WorkDirError(FarmerError):
    """The work directory cannot be used: ``path`` names it."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"work directory {self.path}: {problem}")


class LockError(FarmerError):
    """The selected lock mode cannot work where the lock would live."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"lock {self.path}: {problem}")
