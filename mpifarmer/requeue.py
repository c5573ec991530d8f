"""Requeueing the Slurm job when a farmer was stopped with work left (``--requeue``)."""

from __future__ import annotations

import logging
import shutil
import subprocess

from mpifarmer.environment import SlurmInfo

__all__ = ["requeue"]

logger = logging.getLogger(__name__)


def requeue(info: SlurmInfo, max_requeues: int) -> bool:
    """Ask Slurm to requeue this job, unless it has been requeued ``max_requeues`` times.

    Called after a stop that left tasks (exit code 3), once the work directory is closed, so
    the requeued job finds nothing held by this farmer. Returns whether the request was taken.
    """
    if not info.job_id:
        logger.warning("--requeue: not running inside a Slurm job; nothing to requeue")
        return False
    if info.restart_count >= max_requeues:
        logger.warning("--requeue: job %s has been requeued %d times already (--max-requeues %d); not again",
                       info.job_id, info.restart_count, max_requeues)
        return False
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        logger.error("--requeue: scontrol is not on PATH; requeue job %s by hand", info.job_id)
        return False
    done = subprocess.run([scontrol, "requeue", info.job_id], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        logger.error("--requeue: scontrol requeue %s failed: %s (the job needs --requeue or JobRequeue=1)",
                     info.job_id, (done.stderr or done.stdout).strip())
        return False
    logger.info("requeued Slurm job %s (restart %d of at most %d): it will continue where this run stopped",
                info.job_id, info.restart_count + 1, max_requeues)
    return True
