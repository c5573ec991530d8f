"""The local worker pool: starts, reaps and kills the processes that run tasks on one node.

Every task runs in its own process group (so a stop kills what it started, pipelines and
background children included), with stdin from /dev/null and stdout and stderr into its
log file. Processes are started with ``posix_spawn`` (vfork-based in glibc), which costs
less per task than ``fork``; the runner decides the argv, the pool only executes it.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mpifarmer.runners import Runner
from mpifarmer.task import Task

__all__ = ["Outcome", "Pool", "Run"]

logger = logging.getLogger(__name__)

_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
#: Linux refuses a single argument longer than 32 pages (MAX_ARG_STRLEN).
_MAX_ARG = 32 * 4096 - 1


@dataclass
class Run:
    """A task running in a slot."""

    task: Task
    slot: int
    pid: int
    pid_start: int | None  # read when first needed (see Farmer), not at every start
    t0: float


@dataclass
class Outcome:
    """How a run ended: ``returncode`` is negative for death by a signal; ``t1`` wall time."""

    run: Run
    returncode: int
    t1: float
    error: str | None = None  # the process could not be started at all


class Pool:
    """``slots`` concurrent task processes on this node."""

    def __init__(self, slots: int, runner: Runner, *, log_path: Callable[[int], Path],
                 environ: Mapping[str, str] | None = None,
                 extra_env: Mapping[str, str] | None = None) -> None:
        self.slots = slots
        self.runner = runner
        self._log_path = log_path
        self._environ = dict(os.environ if environ is None else environ)
        self._environ.update(extra_env or {})
        self._free = list(range(slots - 1, -1, -1))  # pop() hands out slot 0 first
        self.running: dict[int, Run] = {}
        self._immediate: list[Outcome] = []  # runs that ended as they started

    @property
    def free(self) -> int:
        return len(self._free)

    def start(self, task: Task) -> Run:
        """Start ``task`` in a free slot. A task that cannot be started ends as failed (rc 127);
        a runner that builds an empty argv means there is nothing to execute (rc 0)."""
        slot = self._free.pop()
        argv = self._fit(self.runner.build(task), task)
        if not argv:
            run = Run(task, slot, 0, None, time.time())
            self._immediate.append(Outcome(run, 0, run.t0))
            return run
        env = dict(self._environ)
        env["PROC_NUMBER"] = env["MPIFARMER_TASK_ID"] = str(task.id)
        t0 = time.time()
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.fspath(self._log_path(task.id)), _LOG_FLAGS, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        try:
            pid = os.posix_spawnp(argv[0], argv, env, file_actions=actions, setpgroup=0,
                                  setsigdef=(signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGCHLD,
                                             signal.SIGPIPE))
        except OSError as error:
            run = Run(task, slot, 0, None, t0)
            message = f"cannot start {argv[0]!r}: {error.strerror}"
            self._note_start_failure(task, message)
            self._immediate.append(Outcome(run, 127, time.time(), message))
            return run
        run = Run(task, slot, pid, None, t0)
        self.running[pid] = run
        return run

    def _fit(self, argv: list[str], task: Task) -> list[str]:
        """Spill a ``-c`` script too long for the kernel into a file the shell sources instead."""
        if len(argv) < 2 or argv[-2] != "-c" or len(argv[-1].encode()) <= _MAX_ARG:
            return argv
        script = Path(os.fspath(self._log_path(task.id)) + ".sh")
        script.write_text(argv[-1] + "\n")
        return [*argv[:-1], f". {shlex.quote(str(script))}"]

    def reap(self) -> list[Outcome]:
        """Collect every run that has ended, without blocking."""
        outcomes, self._immediate = self._immediate, []
        while self.running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            run = self.running.pop(pid, None)
            if run is None:
                continue
            outcomes.append(Outcome(run, os.waitstatus_to_exitcode(status), time.time()))
        for outcome in outcomes:
            self._free.append(outcome.run.slot)
        return outcomes

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to the process group of every running task."""
        for pid in list(self.running):
            try:
                os.killpg(pid, signum)
            except ProcessLookupError:
                pass

    def _note_start_failure(self, task: Task, message: str) -> None:
        logger.error("task %d: %s", task.id, message)
        try:
            with open(self._log_path(task.id), "w") as log:
                log.write(f"mpifarmer: {message}\n")
        except OSError:
            pass
