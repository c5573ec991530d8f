"""How one farmer runs: the options that the main loops hand on, in parts, to the coordinator,
the worker and the pool. Every default is written here once; the command line reads them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOG_LAYOUTS", "FarmerOptions"]

#: --logs: one file per task (PyTaskFarmer's logs/log_ID), or a few pack files per pool.
LOG_LAYOUTS = ("files", "packed")


@dataclass(frozen=True)
class FarmerOptions:
    task_list: Path
    proc: int  # slots of each rank's pool
    cores_per_task: int | None = None  # --cores-per-task: bind each task to this many CPUs (None: bind none)
    gpus_per_task: int = 0  # --gpus-per-task: GPUs each task is given
    gpus: str | None = None  # --gpus: the GPUs a farmer may hand out (None: what Slurm or the node says)
    timeout: float | None = None  # --timeout: drain after this many seconds
    verbose: bool = False
    retry_failed: bool = False
    kill_grace: float = 3.0  # SIGTERM to SIGKILL, when draining
    watch_interval: float = 5.0  # how often the task list is looked at for appended lines
    start_flush: float = 1.0  # start records wait at most this long to be written
    rank_timeout: float = 30.0  # --rank-timeout: a rank silent this long is lost
    task_timeout: float | None = None  # --task-timeout: a run lasting longer is stopped and fails (timed-out)
    retries: int = 0  # --retries: a failed task runs again up to this many more times
    retry_delay: float = 0.0  # --retry-delay: seconds before a retrying task is handed out again
    max_failures: int | None = None  # --max-failures: stop (exit 4) once the work directory has this many
    logs: str = "files"  # --logs: one of LOG_LAYOUTS
    pack_limit: int = 1 << 30  # packed logs: a pack file rolls over at this size
    progress: float = 60.0  # --progress: seconds between progress lines in a batch log (0: none, no bar)
