"""mpifarmer: run every line of a task list on a Slurm allocation, and resume after any stop."""

# No imports here: ``python -m mpifarmer`` runs this module first, and stop signals are caught
# only from mpifarmer/__main__.py on, so this must take no time.

__version__ = "0.1.0"

__all__ = ["FarmerError", "Task", "__version__"]


def __getattr__(name: str) -> object:
    if name == "FarmerError":
        from mpifarmer.errors import FarmerError

        return FarmerError
    if name == "Task":
        from mpifarmer.task import Task

        return Task
    raise AttributeError(f"module 'mpifarmer' has no attribute {name!r}")
