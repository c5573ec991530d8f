"""mpifarmer: run every line of a task list on a Slurm allocation, and resume after any stop."""

from mpifarmer.errors import FarmerError
from mpifarmer.task import Task

__version__ = "0.1.0"

__all__ = ["FarmerError", "Task", "__version__"]
