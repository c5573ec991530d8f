"""A rank's worker: runs the tasks the coordinator sends on the local pool and reports back.

Every rank has one, rank 0 included (its coordinator talks to it in process). The worker
decides nothing about which task runs: it starts what it was sent, in order, as slots free
up, and reports starts (of runs older than a second), ends (on a remote rank held a few
milliseconds while it has work queued, see policy.END_REPORT_WAIT) and releases. It stops
the runs that outlast their time limit, when :mod:`mpifarmer.scheduling.timeouts` says so. It stops on
``Drain`` from the coordinator or on a stop signal of its own, which it also reports, and
gives up on a coordinator that has been silent too long (rank 0 lost), killing its tasks.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import deque

from mpifarmer.environment import hostname, pid_start
from mpifarmer.pool import Outcome, Pool, Run
from mpifarmer.scheduling import policy
from mpifarmer.scheduling.timeouts import TimeLimits, limit_of
from mpifarmer.signals import SignalFlags
from mpifarmer.task import EndReason, Task
from mpifarmer.transport import Transport
from mpifarmer.transport import protocol as msg

__all__ = ["Worker"]

logger = logging.getLogger(__name__)


class Worker:
    """One rank's pool, driven by messages (see the module docstring).

    The worker hands every task it receives to the pool at once (the pool's spawner queues
    them); how much a rank holds is bounded by the coordinator's dispatcher."""

    def __init__(self, transport: Transport, pool: Pool, flags: SignalFlags, *, verbose: bool,
                 silence_limit: float | None, kill_grace: float, start_flush: float, beat: float = 1.0,
                 task_timeout: float | None = None, end_wait: float = 0.0) -> None:
        self.transport = transport
        self.pool = pool
        self.flags = flags
        self.beat = beat
        self.silence_limit = silence_limit
        self.kill_grace = kill_grace
        self.start_flush = start_flush
        self.queue: deque[msg.TaskWork] = deque()
        self.code: int | None = None  # set by Finish
        self.draining = False
        self._killed: set[int] = set()  # task IDs of runs this worker signalled
        self._kill_at: float | None = None
        self._unreported: dict[int, Run] = {}  # runs whose start was not reported, by task ID
        self._stops_seen = 0
        self._heard = self._sent = time.monotonic()
        self.task_timeout = task_timeout
        self.limits = TimeLimits(kill_grace)
        self.verbose = verbose
        self.end_wait = end_wait  # see policy.END_REPORT_WAIT
        self._ends: list[msg.TaskEnd] = []  # ends not reported yet
        self._ends_since: float | None = None  # when the oldest of them ended (monotonic)
        pool.on_start = self._on_start

    @property
    def done(self) -> bool:
        return self.code is not None and not self.pool.running and not self._ends

    def hello(self) -> None:
        inventory = self.pool.resources.inventory
        self._send(msg.Hello(hostname(), self.pool.slots, os.getpid(),
                             found=inventory.describe() if inventory is not None else ""))

    def step(self) -> bool:
        """Do everything that can be done now; return whether anything happened."""
        now = time.monotonic()
        busy = self._receive(now)
        busy |= self._check_signals(now)
        busy |= self._reap()  # first: a freed slot takes the next queued task at once
        busy |= self._start()
        busy |= self._enforce_limits()
        self._report_ends(now)
        self._report_starts(now)
        if self._kill_at is not None and now >= self._kill_at:
            self.pool.signal_all(signal.SIGKILL)
            self._kill_at = None
        if now - self._sent >= self.beat:
            self._send(msg.Beat())
        if self.silence_limit is not None and now - self._heard > self.silence_limit and self.code is None:
            logger.error("no word from rank 0 for %.0f s: it is lost; killing this rank's tasks and ending the "
                         "job (a restart recovers every task)", now - self._heard)
            self.pool.signal_all(signal.SIGKILL)
            self.transport.abort(3)
            self.code = 3
        return busy

    def next_deadline(self) -> float:
        deadline = self._sent + self.beat
        if self._ends_since is not None:
            deadline = min(deadline, self._ends_since + self.end_wait)
        if self._kill_at is not None:
            deadline = min(deadline, self._kill_at)
        if self._unreported:
            deadline = min(deadline, min(run.t0 for run in self._unreported.values()) + self.start_flush
                           - time.time() + time.monotonic())
        limit = self.limits.next_at()
        if limit is not None:
            deadline = min(deadline, limit - time.time() + time.monotonic())
        return deadline

    # -- internals -------------------------------------------------------------------------

    def _send(self, message: msg.Message) -> None:
        self.transport.send(0, message)
        self._sent = time.monotonic()

    def _receive(self, now: float) -> bool:
        messages = self.transport.poll()
        for _source, message in messages:
            self._heard = now
            if isinstance(message, msg.Work):
                if self.draining:
                    self._send(msg.Released([work.id for work in message.works()]))
                else:
                    self.queue.extend(message.works())
            elif isinstance(message, msg.Drain):
                self._drain(message.reason)
            elif isinstance(message, msg.Finish):
                self.code = message.code
        return bool(messages)

    def _check_signals(self, now: float) -> bool:
        if self.flags.stop_requests == self._stops_seen:
            return False
        first = self._stops_seen == 0
        self._stops_seen = self.flags.stop_requests
        name = signal.Signals(self.flags.last).name if self.flags.last else "a stop signal"
        if first:
            self._send(msg.Stop(f"received {name}"))
            self._drain(f"received {name}")
        else:
            self._kill_at = now
        return True

    def _drain(self, reason: str) -> None:
        if self.draining:
            return
        self.draining = True
        if self.queue:
            self._send(msg.Released([work.id for work in self.queue]))
            self.queue.clear()
        self._killed.update(self.pool.running)
        self.pool.drop()  # the unstarted come back through take_dropped
        self.pool.signal_all(signal.SIGTERM)
        self.pool.signal_all(signal.SIGCONT)
        self._kill_at = time.monotonic() + self.kill_grace

    def _start(self) -> bool:
        started = False
        while self.queue and not self.draining:
            work = self.queue.popleft()
            run = self.pool.start(Task(work.id, work.line, work.command, work.attrs, work.attempt))
            started = True
            if work.id in self.pool.running and self.pool.processes:  # a held run has no pid to report
                self._unreported[work.id] = run
        return started

    def _on_start(self, run: Run) -> None:
        self.limits.started(run.task.id, run.t0, limit_of(run.task.attrs, self.task_timeout))
        if self.verbose:
            name = run.task.attrs.get("name")
            attempt = f", attempt {run.task.attempt[0]} of {run.task.attempt[1]}" if run.task.attempt else ""
            placed = "".join(f", {what} {ids}" for what, ids in (("CPUs", run.cpus), ("GPUs", run.gpus)) if ids)
            logger.info("task %d%s started in slot %d%s%s: %s", run.task.id, f" ({name})" if name else "", run.slot,
                        placed, attempt, run.task.line)

    def _enforce_limits(self) -> bool:
        """Stop the runs that outlast their time limit; kill those still there after the grace."""
        stop, kill = self.limits.due(time.time())
        if stop:
            self.pool.signal_tasks(stop, signal.SIGTERM)
            self.pool.signal_tasks(stop, signal.SIGCONT)
        if kill:
            self.pool.signal_tasks(kill, signal.SIGKILL)
        return bool(stop or kill)

    def _reap(self) -> bool:
        outcomes = self.pool.reap()
        if self.pool.broken is not None and not self.draining:
            self._send(msg.Stop(self.pool.broken))
            self._drain(self.pool.broken)
        dropped = self.pool.take_dropped()
        if dropped:
            self._killed.difference_update(dropped)
            for task in dropped:
                self._unreported.pop(task, None)
            self._send(msg.Released(dropped))
        if not outcomes:
            return bool(dropped)
        ends = self._ends
        if self._ends_since is None:
            self._ends_since = time.monotonic()
        for outcome in outcomes:
            run = outcome.run
            self._unreported.pop(run.task.id, None)
            timed_out = self.limits.ended(run.task.id)
            ends.append(msg.TaskEnd(run.task.id, outcome.returncode, run.t0, outcome.t1, run.slot,
                                    self._reason(outcome, timed_out), run.task.attrs, run.cpus, run.gpus))
            self._killed.discard(run.task.id)
        return True

    def _report_ends(self, now: float) -> None:
        if policy.ends_report_due(held_since=self._ends_since, now=now, queued=len(self.queue) + self.pool.queued,
                                  stopping=self.draining or self.code is not None, wait=self.end_wait):
            self._send(msg.Ended(self._ends))
            self._ends, self._ends_since = [], None

    def _reason(self, outcome: Outcome, timed_out: bool) -> EndReason:
        """The pool's reason, unless this worker stopped the run itself (a drain, its time limit)."""
        if outcome.reason is not EndReason.LOST and outcome.run.task.id in self._killed:
            return EndReason.STOPPED
        if timed_out and outcome.reason in (EndReason.EXITED, EndReason.SIGNALLED):
            return EndReason.TIMED_OUT
        return outcome.reason

    def _report_starts(self, now: float) -> None:
        """Report runs going for longer than ``start_flush``: their pids let a later farmer kill
        them should this one die. Shorter runs are reported only by their end."""
        if not self._unreported:
            return
        wall = time.time()
        due = [run for run in self._unreported.values() if run.pid and wall - run.t0 >= self.start_flush]
        if due:
            for run in due:
                run.pid_start = pid_start(run.pid)
                del self._unreported[run.task.id]
            self._send(msg.Started([msg.TaskStart(r.task.id, r.pid, r.pid_start, r.slot, r.t0, r.cpus, r.gpus)
                                    for r in due]))
