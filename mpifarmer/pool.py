"""The local worker pool: runs tasks on this node through the spawner process.

Every task runs in its own process group (so a stop kills what it started, pipelines and
background children included), with stdin from /dev/null and stdout and stderr into its log
file. The processes are started, reaped and signalled by a small helper process
(:mod:`mpifarmer._spawnd`), because spawning from a process as large as a farmer stalls it for
up to a millisecond per task; the pool talks to it over two pipes and never blocks on it. The
pool takes every task it is given at once: the spawner queues what exceeds its slots and starts
the next task the moment a slot frees. The runner decides the argv; the pool only has it run.

The spawner can die (the OOM killer, a user's ``kill``): the pool then kills the process groups
of the tasks it held (and any other process that carries the pool's token, ``MPIFARMER_POOL``),
reports the runs that had started as interrupted, and starts a new spawner for the rest, unless
spawners keep dying (:mod:`mpifarmer.scheduling.restarts`): then :attr:`Pool.broken` says why
and the caller drains. A sentinel process (:mod:`mpifarmer._sentinel`) kills the tasks should
the farmer and its spawner die together.

The HoldRunner's tasks (benchmarks and tests) start no process: the pool holds their slots for
the runner's time itself (:mod:`mpifarmer.holding`), and starts neither spawner nor sentinel.
"""

from __future__ import annotations

import json
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
from dataclasses import dataclass, replace
from pathlib import Path

from mpifarmer import _sentinel, _spawnd
from mpifarmer.holding import HeldSlots
from mpifarmer.resources import PoolResources
from mpifarmer.runners import HoldRunner, Runner
from mpifarmer.scheduling import capacity
from mpifarmer.scheduling.restarts import RestartBudget
from mpifarmer.signals import held_back
from mpifarmer.task import EndReason, Task
from mpifarmer.wording import counted

__all__ = ["Outcome", "PackedLogs", "Pool", "Run"]

logger = logging.getLogger(__name__)

#: Linux refuses a single argument longer than 32 pages (MAX_ARG_STRLEN).
_MAX_ARG = 32 * 4096 - 1
_HEADER = struct.Struct(">I")


@dataclass
class Run:
    """A task given to the pool. ``pid`` is 0 and ``slot`` -1 until the spawner starts it."""

    task: Task
    slot: int  # its first slot (see ``units``)
    pid: int
    pid_start: int | None  # read when first needed (see Worker), not at every start
    t0: float
    units: dict[str, list[int]] | None = None  # what the spawner gave it, by resource
    cpus: str = ""  # the CPUs it is bound to (a list such as 0-3), "" if none
    gpus: str = ""  # the GPUs it was given (IDs such as 0,1), "" if none


@dataclass(frozen=True)
class PackedLogs:
    """``--logs packed``: where a pool's spawners pack its tasks' output (see :mod:`mpifarmer.store.packs`)."""

    stem: str  # WORKDIR/logs/pack.FARMER.rRANK; each spawner the pool starts adds .gN
    identity: dict[str, object]  # farmer, rank, host: the first line of every index
    spool: str  # node-local directory for the output of running tasks
    fallback: str  # where to spool if the spool directory cannot hold a file (the logs directory)
    limit: int  # bytes after which a pack file rolls over


@dataclass
class Outcome:
    """How a run ended: ``returncode`` is negative for death by a signal; ``t1`` wall time."""

    run: Run
    returncode: int
    t1: float
    error: str | None = None  # the process could not be started at all
    reason: EndReason = EndReason.EXITED  # LOST: killed by the pool because its spawner died

    @classmethod
    def of_exit(cls, run: Run, returncode: int, t1: float, error: str | None = None) -> Outcome:
        """The end of a process that exited, or died of a signal (``returncode`` < 0)."""
        return cls(run, returncode, t1, error, EndReason.SIGNALLED if returncode < 0 else EndReason.EXITED)


class Pool:
    """``slots`` concurrent task processes on this node, and whatever else ``resources`` hands
    out (CPUs to bind to, GPUs; default: slots alone)."""

    def __init__(self, slots: int, runner: Runner, *, log_path: Callable[[int], Path],
                 extra_env: Mapping[str, str] | None = None, packed: PackedLogs | None = None,
                 resources: PoolResources | None = None) -> None:
        self.slots = slots
        self.packed = packed
        self._generation = -1  # of the spawners started, the last: each packs into files of its own
        self.resources = resources if resources is not None else PoolResources.slots_only(slots)
        self.capacity = {**self.resources.capacity, "slots": slots}  # what capacity.Units hands out
        self.runner = runner
        self._log_path = log_path
        self.running: dict[int, Run] = {}  # given and not ended (queued or started), by task ID
        self._immediate: list[Outcome] = []  # runs that ended as they started
        self._dropped: list[int] = []
        self.on_start: Callable[[Run], None] | None = None  # told of each run the spawner starts
        self._queued = 0  # given to the spawner and not started yet
        self._pending_loss = False  # the replies ended: handle the spawner's death after the last of them
        self._argv: dict[int, list[str]] = {}  # of the runs given and not started, to give a new spawner
        self._mean: float | None = None  # recent run time (moving average), seconds
        self._buffer = b""
        # The variables go with each task, not into the spawner's own environment: a later farmer
        # finds a dead farmer's leftover tasks by MPIFARMER_FARMER and kills their process
        # groups, and the spawner shares its farmer's group.
        self._extra_env = dict(extra_env or {})
        self._token = f"{os.getpid()}.{time.monotonic_ns()}"
        self._extra_env["MPIFARMER_POOL"] = self._token
        self.broken: str | None = None  # why no spawner runs any more (the caller should drain)
        self._restarts = RestartBudget()
        self._closed = False
        self._holds = HeldSlots(self.capacity, runner.seconds, self.resources.request,
                                self.resources.near) if isinstance(runner, HoldRunner) else None
        if self._holds is not None:  # nothing to spawn; the pipe only gives fileno() a descriptor
            self._replies, self._life = os.pipe()
            os.set_blocking(self._replies, False)
            return
        life_read, self._life = os.pipe()
        try:
            with held_back():
                self._sentinel = subprocess.Popen(
                    [sys.executable, "-I", "-S", _sentinel.__file__, self._token], stdin=life_read, close_fds=True,
                    start_new_session=True)
        finally:
            os.close(life_read)
        self._replies = -1
        self._spawner = self._start_spawner()

    def _start_spawner(self) -> subprocess.Popen[bytes]:
        """Start a spawner whose replies arrive on :meth:`fileno` (the same descriptor number
        for every spawner, so that a main loop's poll keeps watching it)."""
        replies_read, replies_write = os.pipe()
        self._generation += 1
        shape = self.resources.spawner_argument()
        shape = {**shape, "capacity": self.capacity} if "capacity" in shape else self.capacity
        argv = [sys.executable, "-I", "-S", _spawnd.__file__, json.dumps(shape), str(self._life)]
        if self.packed is not None:
            packed = self.packed
            fault = os.environ.get("MPIFARMER_PACK_FAULT") if self._generation == 0 else None  # tests only
            argv.append(json.dumps({"stem": f"{packed.stem}.g{self._generation}", "identity": packed.identity,
                                    "limit": packed.limit, "spool": packed.spool, "fallback": packed.fallback,
                                    "fault": fault}))
        try:
            with held_back():
                spawner = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE, stdout=replies_write, close_fds=True, pass_fds=(self._life,), bufsize=0)
        finally:
            os.close(replies_write)
        if self._replies < 0:
            self._replies = replies_read
        else:
            os.dup2(replies_read, self._replies, inheritable=False)
            os.close(replies_read)
        os.set_blocking(self._replies, False)
        assert spawner.stdin is not None
        self._requests = spawner.stdin.fileno()
        self._buffer = b""
        return spawner

    @property
    def processes(self) -> bool:
        """Whether runs are processes (not for the HoldRunner, whose runs have no pid)."""
        return self._holds is None

    def fileno(self) -> int:
        """Readable when the spawner has news: a main loop waits on it with its other sources."""
        return self._replies

    @property
    def queued(self) -> int:
        """Tasks given to the pool that have not started yet (waiting for a slot)."""
        return self._queued if self._holds is None else self._holds.waiting

    def lull(self) -> float:
        """How long the spawner can keep every slot busy from its queue alone, judged by recent
        run times: seconds in which the pool needs nothing from its caller (0 if unknown)."""
        queued = self.queued
        if self._mean is None or not queued:
            return 0.0
        return queued * self._mean / self.slots

    def due_in(self, now: float) -> float | None:
        """Seconds from ``now`` (wall time) until the pool has news that no descriptor will
        announce: the end of a held run (None: no such news is due)."""
        end = self._holds.next_end() if self._holds is not None else None
        return None if end is None else max(0.0, end - now)

    def start(self, task: Task) -> Run:
        """Have ``task`` run as soon as the resources it asks for are free. A task that cannot
        be started ends as failed (rc 127), at once if it asks for more than this pool has
        (reason ``unavailable``); a runner that builds an empty argv means there is nothing to
        execute (rc 0, at once)."""
        request = self.resources.request(task.attrs)
        if request.get("gpus"):  # the runner passes GPUs into a container
            task = replace(task, gpus=request["gpus"], gpu_vendor=self.resources.binding.get("vendor"))
        argv = self._fit(self.runner.build(task), task)
        run = Run(task, -1, 0, None, time.time())
        impossible = capacity.never_fits(request, self.capacity)
        if impossible is not None:
            self._note_start_failure(task, f"not started: it {impossible}")
            self._immediate.append(Outcome(run, 127, run.t0, impossible, EndReason.UNAVAILABLE))
            return run
        if self._holds is not None:
            self.running[task.id] = run
            self._announce(self._holds.add(run, run.t0))
            return run
        if not argv:
            run.slot = task.id % self.slots
            self._immediate.append(Outcome.of_exit(run, 0, run.t0))
            if self.on_start is not None:
                self.on_start(run)
            return run
        self.running[task.id] = run
        self._queued += 1
        self._argv[task.id] = argv
        if task.attempt is not None and self.packed is None:
            self._keep_earlier_log(task, task.attempt[0])
        if self.broken is None:
            self._send(self._run_request(task, argv))
        else:
            self._drop_unstarted()
        return run

    def _run_request(self, task: Task, argv: list[str]) -> tuple:
        """The spawner's request: the argv, the log, the task's own environment (the task's
        ``env`` attribute, then the farmer's variables, which a task cannot override), the
        resources it asks for, the directory it runs in (its ``cwd`` attribute; None: the
        farmer's), and, for a task that may be retried, the line its output begins with."""
        ident = str(task.id)
        log = None if self.packed is not None else os.fspath(self._log_path(task.id))
        header = None
        if task.attempt is not None:
            name = task.attrs.get("name")
            header = (f"mpifarmer: task {task.id}{f' ({name})' if name else ''}, attempt {task.attempt[0]} of "
                      f"{task.attempt[1]}\n")
        return ("run", task.id, argv, log,
                {**task.attrs.get("env", {}), **self._extra_env, "PROC_NUMBER": ident, "MPIFARMER_TASK_ID": ident},
                self.resources.request(task.attrs), task.attrs.get("cwd"), header)

    def _keep_earlier_log(self, task: Task, attempt: int) -> None:
        """Before attempt N > 1 of a task, keep its previous attempt's log as ``log_ID.N-1`` (one
        already kept is not replaced: then ``log_ID`` holds a run of attempt N that a drain cut
        short). Packed logs keep every run anyway."""
        if attempt < 2:
            return
        log = self._log_path(task.id)
        older = log.with_name(f"{log.name}.{attempt - 1}")
        try:
            if not older.exists():
                os.replace(log, older)
        except FileNotFoundError:
            pass
        except OSError as error:
            logger.warning("task %d: cannot keep the log of its attempt %d as %s: %s", task.id, attempt - 1, older,
                           error.strerror or error)

    def reap(self) -> list[Outcome]:
        """Collect the runs that have ended, without blocking."""
        replies = self._read_replies()
        outcomes, self._immediate = self._immediate, []
        if self._holds is not None:
            ended, started = self._holds.advance(time.time())
            for run, t1 in ended:
                del self.running[run.task.id]
                outcomes.append(Outcome.of_exit(run, 0, t1))
                self._note_time(t1 - run.t0)
            self._announce(started)
        for reply in replies:
            kind, task = reply[0], reply[1]
            if kind == "dropped":
                for dropped in reply[1]:
                    if self.running.pop(dropped, None) is not None:
                        self._dropped.append(dropped)
                        self._queued -= 1
                        self._argv.pop(dropped, None)
                continue
            run = self.running.get(task)
            if run is None:
                continue
            if kind == "started":
                run.pid, run.t0, run.units = reply[2], reply[3], reply[4]
                run.slot = min(run.units.get("slots") or [-1])
                run.cpus, run.gpus = self.resources.placed(run.units)
                self._queued -= 1
                self._argv.pop(task, None)
                if self.on_start is not None:
                    self.on_start(run)
            elif kind == "ended":
                del self.running[task]
                outcomes.append(Outcome.of_exit(run, reply[2], reply[3]))
                self._note_time(reply[3] - run.t0)
            elif kind == "error":
                del self.running[task]
                self._queued -= 1
                self._argv.pop(task, None)
                self._note_start_failure(run.task, reply[2])
                outcomes.append(Outcome.of_exit(run, 127, reply[3], reply[2]))
        if self._pending_loss:
            self._spawner_lost()
        if self._immediate:
            outcomes += self._immediate
            self._immediate = []
        return outcomes

    def drop(self) -> None:
        """Forget the given tasks that have not started; :meth:`take_dropped` returns them."""
        if self._holds is not None:
            for run in self._holds.drop():
                del self.running[run.task.id]
                self._dropped.append(run.task.id)
        elif self.broken is not None:
            self._drop_unstarted()
        elif self.running:
            self._send(("drop",))

    def take_dropped(self) -> list[int]:
        """Task IDs dropped since the last call (they never ran)."""
        dropped, self._dropped = self._dropped, []
        return dropped

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to the process group of every started task (a held run ends on any
        signal but SIGCONT, as a process without handlers would)."""
        if self._holds is not None:
            if signum != signal.SIGCONT:
                now = time.time()
                for run in self._holds.end_all():
                    del self.running[run.task.id]
                    self._immediate.append(Outcome.of_exit(run, -int(signum), now))
        elif self.running and self.broken is None:
            self._send(("signal", int(signum)))

    def signal_tasks(self, tasks: list[int], signum: int) -> None:
        """Send ``signum`` to the process groups of ``tasks`` (those started; the others are left).
        The HoldRunner's runs are no processes and take no signal but a drain's."""
        if self._holds is None and self.broken is None and any(task in self.running for task in tasks):
            self._send(("signal", int(signum), list(tasks)))

    def close(self) -> None:
        """End the spawner (it kills whatever still runs) and wait for it, then the sentinel."""
        if self._closed:
            return
        self._closed = True
        if self._holds is not None:
            os.close(self._replies)
            os.close(self._life)
            return
        self._spawner.stdin.close()  # type: ignore[union-attr]
        try:
            self._spawner.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._spawner.kill()
            self._spawner.wait()
        os.close(self._replies)
        if self._spawner.returncode == 0:  # it reaped every task: the sentinel has nothing to do
            os.write(self._life, _sentinel.GOODBYE)
        os.close(self._life)
        try:
            self._sentinel.wait(timeout=10)
        except subprocess.TimeoutExpired:
            logger.warning("the pool's sentinel process %d did not exit", self._sentinel.pid)

    # -- internals -------------------------------------------------------------------------

    def _announce(self, started: list[Run]) -> None:
        for run in started:
            run.cpus, run.gpus = self.resources.placed(run.units)
            if self.on_start is not None:
                self.on_start(run)

    def _note_time(self, elapsed: float) -> None:
        """Fold a run's time into the moving average that :meth:`lull` uses."""
        elapsed = max(0.0, elapsed)
        self._mean = elapsed if self._mean is None else self._mean + (elapsed - self._mean) / 16

    def _send(self, request: tuple) -> None:
        if self._pending_loss:
            return  # the spawner is gone: what it was sent is resent to the next one
        payload = marshal.dumps(request)
        data = memoryview(_HEADER.pack(len(payload)) + payload)
        try:
            while data:
                data = data[os.write(self._requests, data) :]
        except BrokenPipeError:
            self._pending_loss = True  # handled by reap, once the replies it wrote before dying are read

    def _read_replies(self) -> list[tuple]:
        ended = False
        try:
            while chunk := os.read(self._replies, 1 << 16):
                self._buffer += chunk
            ended = not self._closed
        except BlockingIOError:
            pass
        replies = []
        buffer = self._buffer
        while len(buffer) >= 4:
            (size,) = _HEADER.unpack_from(buffer)
            if len(buffer) < 4 + size:
                break
            replies.append(marshal.loads(buffer[4 : 4 + size]))
            buffer = buffer[4 + size :]
        self._buffer = buffer
        if ended:  # end of file: the spawner died, after the replies just read
            self._pending_loss = True
        return replies

    def _spawner_lost(self) -> None:
        """The spawner died (it ignores stop signals, so something meant it). Its tasks are
        orphans now: kill them, report the started runs as interrupted, and give the unstarted
        ones to a new spawner, unless spawners keep dying."""
        self._pending_loss = False
        if self.broken is not None or self._closed:
            return
        self._spawner.stdin.close()  # type: ignore[union-attr]
        try:
            self._spawner.wait(timeout=5)
        except subprocess.TimeoutExpired:  # stopped, say, with its output closed: end it
            self._spawner.kill()
            self._spawner.wait()
        how = _death(self._spawner.returncode)
        for run in self.running.values():
            if run.pid:
                _killpg(run.pid)
        found = _sentinel.kill_tagged(f"MPIFARMER_POOL={self._token}")  # started, the news not yet read
        now = time.time()
        started = [task for task, run in self.running.items() if run.pid]
        for task in started:
            self._immediate.append(Outcome(self.running.pop(task), -signal.SIGKILL, now, reason=EndReason.LOST))
        unstarted = len(self.running)
        if self._restarts.allow(time.monotonic()):
            logger.error("the spawner process died (%s): killed its %s (%s), which will run again; starting a "
                         "new spawner for the %d queued", how, counted(len(started), "running task"),
                         counted(found, "process", "processes"), unstarted)
            self._spawner = self._start_spawner()
            for task, run in self.running.items():  # all unstarted; a failed send only marks the new one lost
                self._send(self._run_request(run.task, self._argv[task]))
        else:
            self.broken = (f"the spawner process died {self._restarts.limit} times within "
                           f"{self._restarts.window:.0f} s, the last {how}")
            logger.error("%s: killed its %s (%s), which will run again; giving up", self.broken,
                         counted(len(started), "running task"), counted(found, "process", "processes"))
            self._drop_unstarted()

    def _drop_unstarted(self) -> None:
        for task in list(self.running):
            if not self.running[task].pid:
                del self.running[task]
                self._dropped.append(task)
        self._argv.clear()
        self._queued = 0

    def _fit(self, argv: list[str], task: Task) -> list[str]:
        """Spill a ``-c`` script too long for the kernel into a file the shell sources instead."""
        if len(argv) < 2 or argv[-2] != "-c" or len(argv[-1].encode()) <= _MAX_ARG:
            return argv
        script = Path(os.fspath(self._log_path(task.id)) + ".sh")
        script.write_text(argv[-1] + "\n")
        return [*argv[:-1], f". {shlex.quote(str(script))}"]

    def _note_start_failure(self, task: Task, message: str) -> None:
        logger.error("task %d: %s", task.id, message)
        if self.packed is not None:
            if self.broken is None:
                self._send(("note", task.id, f"mpifarmer: {message}\n", 127))
            return
        try:
            with open(self._log_path(task.id), "w") as log:
                log.write(f"mpifarmer: {message}\n")
        except OSError:
            pass


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _death(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode}"
