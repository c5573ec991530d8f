"""The local worker pool: runs tasks on this node through the spawner process.

Every task runs in its own process group (so a stop kills what it started, pipelines and
background children included), with stdin from /dev/null and stdout and stderr into its log
file. The processes are started, reaped and signalled by a small helper process
(:mod:`mpifarmer._spawnd`), because spawning from a process as large as a farmer stalls it for
up to a millisecond per task; the pool talks to it over two pipes and never blocks on it. The
pool takes every task it is given at once: the spawner queues what exceeds its slots and starts
the next task the moment a slot frees. The runner decides the argv; the pool only has it run.
"""

from __future__ import annotations

import logging
import marshal
import os
import shlex
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mpifarmer import _spawnd
from mpifarmer.runners import Runner
from mpifarmer.task import Task

__all__ = ["Outcome", "Pool", "Run"]

logger = logging.getLogger(__name__)

#: Linux refuses a single argument longer than 32 pages (MAX_ARG_STRLEN).
_MAX_ARG = 32 * 4096 - 1
_HEADER = struct.Struct(">I")


@dataclass
class Run:
    """A task given to the pool. ``pid`` is 0 and ``slot`` -1 until the spawner starts it."""

    task: Task
    slot: int
    pid: int
    pid_start: int | None  # read when first needed (see Worker), not at every start
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
                 extra_env: Mapping[str, str] | None = None) -> None:
        self.slots = slots
        self.runner = runner
        self._log_path = log_path
        self.running: dict[int, Run] = {}  # given and not ended (queued or started), by task ID
        self._immediate: list[Outcome] = []  # runs that ended as they started
        self._dropped: list[int] = []
        self.on_start: Callable[[Run], None] | None = None  # told of each run the spawner starts
        self._queued = 0  # given to the spawner and not started yet
        self._mean: float | None = None  # recent run time (moving average), seconds
        self._buffer = b""
        # The variables go with each task, not into the spawner's own environment: a later farmer
        # finds a dead farmer's leftover tasks by MPIFARMER_FARMER and kills their process
        # groups, and the spawner shares its farmer's group.
        self._extra_env = dict(extra_env or {})
        self._spawner = subprocess.Popen(
            [sys.executable, "-I", "-S", _spawnd.__file__, str(slots)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            close_fds=True, bufsize=0)
        assert self._spawner.stdin is not None and self._spawner.stdout is not None
        self._requests = self._spawner.stdin.fileno()
        self._replies = self._spawner.stdout.fileno()
        os.set_blocking(self._replies, False)
        self._closed = False

    def fileno(self) -> int:
        """Readable when the spawner has news: a main loop waits on it with its other sources."""
        return self._replies

    def lull(self) -> float:
        """How long the spawner can keep every slot busy from its queue alone, judged by recent
        run times: seconds in which the pool needs nothing from its caller (0 if unknown)."""
        if self._mean is None or not self._queued:
            return 0.0
        return self._queued * self._mean / self.slots

    def start(self, task: Task) -> Run:
        """Have ``task`` run as soon as a slot is free. A task that cannot be started ends as
        failed (rc 127); a runner that builds an empty argv means there is nothing to execute
        (rc 0, at once)."""
        argv = self._fit(self.runner.build(task), task)
        run = Run(task, -1, 0, None, time.time())
        if not argv:
            run.slot = task.id % self.slots
            self._immediate.append(Outcome(run, 0, run.t0))
            if self.on_start is not None:
                self.on_start(run)
            return run
        ident = str(task.id)
        self.running[task.id] = run
        self._queued += 1
        self._send(("run", task.id, argv, os.fspath(self._log_path(task.id)),
                    {**self._extra_env, "PROC_NUMBER": ident, "MPIFARMER_TASK_ID": ident}))
        return run

    def reap(self) -> list[Outcome]:
        """Collect the runs that have ended, without blocking."""
        outcomes, self._immediate = self._immediate, []
        for reply in self._read_replies():
            kind, task = reply[0], reply[1]
            if kind == "dropped":
                for dropped in reply[1]:
                    if self.running.pop(dropped, None) is not None:
                        self._dropped.append(dropped)
                        self._queued -= 1
                continue
            run = self.running.get(task)
            if run is None:
                continue
            if kind == "started":
                run.pid, run.t0, run.slot = reply[2], reply[3], reply[4]
                self._queued -= 1
                if self.on_start is not None:
                    self.on_start(run)
            elif kind == "ended":
                del self.running[task]
                outcomes.append(Outcome(run, reply[2], reply[3]))
                elapsed = max(0.0, reply[3] - run.t0)
                self._mean = elapsed if self._mean is None else self._mean + (elapsed - self._mean) / 16
            elif kind == "error":
                del self.running[task]
                self._queued -= 1
                self._note_start_failure(run.task, reply[2])
                outcomes.append(Outcome(run, 127, reply[3], reply[2]))
        return outcomes

    def drop(self) -> None:
        """Forget the given tasks that have not started; :meth:`take_dropped` returns them."""
        if self.running:
            self._send(("drop",))

    def take_dropped(self) -> list[int]:
        """Task IDs dropped since the last call (they never ran)."""
        dropped, self._dropped = self._dropped, []
        return dropped

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to the process group of every started task."""
        if self.running:
            self._send(("signal", int(signum)))

    def close(self) -> None:
        """End the spawner (it kills whatever still runs) and wait for it."""
        if self._closed:
            return
        self._closed = True
        self._spawner.stdin.close()  # type: ignore[union-attr]
        try:
            self._spawner.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._spawner.kill()
            self._spawner.wait()
        self._spawner.stdout.close()  # type: ignore[union-attr]

    # -- internals -------------------------------------------------------------------------

    def _send(self, request: tuple) -> None:
        payload = marshal.dumps(request)
        data = memoryview(_HEADER.pack(len(payload)) + payload)
        try:
            while data:
                data = data[os.write(self._requests, data) :]
        except BrokenPipeError:
            self._spawner_lost()

    def _read_replies(self) -> list[tuple]:
        try:
            while chunk := os.read(self._replies, 1 << 16):
                self._buffer += chunk
        except BlockingIOError:
            pass
        else:
            if self.running:  # end of file: the spawner died
                self._spawner_lost()
        replies = []
        buffer = self._buffer
        while len(buffer) >= 4:
            (size,) = _HEADER.unpack_from(buffer)
            if len(buffer) < 4 + size:
                break
            replies.append(marshal.loads(buffer[4 : 4 + size]))
            buffer = buffer[4 + size :]
        self._buffer = buffer
        return replies

    def _spawner_lost(self) -> None:
        """The spawner was killed (it ignores stop signals, so something meant it): its tasks
        were killed with it. Report them as killed."""
        now = time.time()
        for task in list(self.running):
            self._immediate.append(Outcome(self.running.pop(task), -signal.SIGKILL, now))
        self._queued = 0
        logger.error("the spawner process died; its running tasks were killed")

    def _fit(self, argv: list[str], task: Task) -> list[str]:
        """Spill a ``-c`` script too long for the kernel into a file the shell sources instead."""
        if len(argv) < 2 or argv[-2] != "-c" or len(argv[-1].encode()) <= _MAX_ARG:
            return argv
        script = Path(os.fspath(self._log_path(task.id)) + ".sh")
        script.write_text(argv[-1] + "\n")
        return [*argv[:-1], f". {shlex.quote(str(script))}"]

    def _note_start_failure(self, task: Task, message: str) -> None:
        logger.error("task %d: %s", task.id, message)
        try:
            with open(self._log_path(task.id), "w") as log:
                log.write(f"mpifarmer: {message}\n")
        except OSError:
            pass
