"""mpifarmer: run every line of a task list on a Slurm allocation, and resume after any stop."""

from typing import Any

__version__ = "0.1.0"

__all__ = ["FarmerError", "Task", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so that ``python -m mpifarmer`` imports as little as possible before it catches
    # stop signals.
    if name == "FarmerError":
        from mpifarmer.errors import FarmerError

        return FarmerError
    if name == "Task":
        from mpifarmer.task import Task

        return Task
    raise AttributeError(f"module 'mpifarmer' has no attribute {name!r}")
