"""The farmer's main loop in local mode: one process, one pool, one work directory.

The loop is glue: it turns signals, ended processes and clock deadlines into events for the
dispatcher (what to claim, what to start) and records for the store (what happened). All
decisions live in :mod:`mpifarmer.scheduling`; all writes in :mod:`mpifarmer.store`.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpifarmer.environment import hostname, pid_start
from mpifarmer.pool import Outcome, Pool, Run
from mpifarmer.runners import Runner
from mpifarmer.scheduling import records as rec
from mpifarmer.scheduling.dispatch import Dispatcher
from mpifarmer.scheduling.ledger import FAILED, FINISHED
from mpifarmer.scheduling.liveness import Liveness
from mpifarmer.signals import SignalFlags
from mpifarmer.store.store import Store
from mpifarmer.task import Task
from mpifarmer.tasklists import TaskList
from mpifarmer.tasklists.reader import TaskLines, read_task_lines

__all__ = ["EXIT_DONE", "EXIT_FAILED", "EXIT_STOPPED", "Farmer", "FarmerOptions"]

logger = logging.getLogger(__name__)

EXIT_DONE, EXIT_FAILED, EXIT_STOPPED = 0, 1, 3

#: A task killed by a signal just before its farmer is asked to stop was most likely signalled
#: by the same hand (Slurm signals a step's processes together): wait this long before calling
#: it failed.
SIGNAL_DEATH_HOLD = 1.0


@dataclass
class FarmerOptions:
    task_list: Path
    proc: int
    timeout: float | None = None
    verbose: bool = False
    retry_failed: bool = False
    kill_grace: float = 3.0
    watch_interval: float = 5.0
    start_flush: float = 1.0


class Farmer:
    """Runs a task list to the end, or until stopped (see the module docstring)."""

    def __init__(self, options: FarmerOptions, store: Store, tasks: TaskLines, handler: TaskList,
                 runner: Runner) -> None:
        self.options = options
        self.store = store
        self.tasks = tasks
        self.handler = handler
        self.flags = SignalFlags()
        self.dispatcher = Dispatcher()
        self.pool = Pool(options.proc, runner, log_path=store.workdir.log, extra_env={
            "MPIFARMER_WORKDIR": str(store.workdir.root), "MPIFARMER_FARMER": store.fid})
        self.host = hostname()
        self.outbox: list[dict[str, Any]] = []
        self._unrecorded: dict[int, Run] = {}  # runs whose start is not in the journal yet, by pid
        self._held: list[tuple[Outcome, float]] = []
        self._stop_reason: str | None = None
        self._kill_at: float | None = None
        self._stops_seen = 0
        self._counts = {rec.FINISHED: 0, rec.FAILED: 0, rec.INTERRUPTED: 0}
        self._holders: dict[str, Liveness] = {}
        self._store_error: OSError | None = None
        self._watch = _Watcher(options.task_list, tasks, options.watch_interval)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        self.flags.install()
        try:
            self.dispatcher.add_rank(0, self.options.proc)
            self._log_start()
            deadline = started + self.options.timeout if self.options.timeout else None
            while True:
                now = time.monotonic()
                self._check_stop(deadline, now)
                self._collect(time.time())
                self._exchange(time.time())
                self._housekeeping(now)
                if self._done():
                    break
                self.flags.wait(self._sleep_for(deadline))
        except BaseException:
            self.pool.signal_all(signal.SIGKILL)  # never leave tasks running behind a crash
            raise
        finally:
            self.flags.uninstall()
        code = self._close()
        self._log_stop(time.monotonic() - started, code)
        return code

    def _check_stop(self, deadline: float | None, now: float) -> None:
        if self.flags.stop_requests > self._stops_seen:
            first = self._stops_seen == 0 and self._stop_reason is None
            self._stops_seen = self.flags.stop_requests
            name = signal.Signals(self.flags.last).name if self.flags.last else "signal"
            if first:
                self._drain(f"received {name}")
            else:
                logger.warning("received %s again: killing running tasks now", name)
                self._kill_at = now
        if deadline is not None and now >= deadline and self._stop_reason is None:
            self._drain(f"--timeout of {self.options.timeout:g} s expired")
        if self._kill_at is not None and now >= self._kill_at and self.pool.running:
            self.pool.signal_all(signal.SIGKILL)
            self._kill_at = None

    def _drain(self, reason: str) -> None:
        self._stop_reason = reason
        logger.warning("stopping: %s; %d running tasks will be interrupted", reason, len(self.pool.running))
        released = self.dispatcher.drain()
        if released:
            self.outbox.append(rec.release(self.store.fid, released))
        self.pool.signal_all(signal.SIGTERM)
        self.pool.signal_all(signal.SIGCONT)
        self._kill_at = time.monotonic() + self.options.kill_grace

    def _collect(self, now: float) -> None:
        """Turn ended processes into end records."""
        for outcome in self.pool.reap():
            if outcome.returncode < 0 and self._stop_reason is None:
                self._held.append((outcome, time.monotonic() + SIGNAL_DEATH_HOLD))
            else:
                self._record_end(outcome)
        if self._held:
            keep = []
            for outcome, until in self._held:
                if self._stop_reason is not None or time.monotonic() >= until:
                    self._record_end(outcome)
                else:
                    keep.append((outcome, until))
            self._held = keep

    def _record_end(self, outcome: Outcome) -> None:
        run, code = outcome.run, outcome.returncode
        self._unrecorded.pop(run.pid, None)
        if code == 0:
            state = rec.FINISHED
        elif self._stop_reason is not None:
            state = rec.INTERRUPTED
        elif self._disk_full():
            # Most likely the task failed because its output could not be written: it is not the
            # task's fault, so it runs again once there is space.
            state = rec.INTERRUPTED
            self._drain("the work directory's filesystem is full; free space and run the same command again")
        else:
            state = rec.FAILED
        self._counts[state] += 1
        self.dispatcher.ended(0, run.task.id, outcome.t1 - run.t0)
        self.outbox.append(rec.end(
            self.store.fid, run.task.id, st=state, rc=code if code >= 0 else None,
            sig=-code if code < 0 else None, t0=run.t0, t1=outcome.t1, host=self.host, rank=0, slot=run.slot))
        if self.options.verbose or state != rec.FINISHED:
            how = f"exit code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
            log = logger.info if state != rec.FAILED else logger.warning
            log("task %d %s (%s, %.2f s): %s", run.task.id, state, how, outcome.t1 - run.t0,
                run.task.line)

    def _exchange(self, now: float) -> None:
        """Sync with the store when there is something to record or work to claim; start work."""
        want = self.dispatcher.want(now)
        new_lines = len(self.tasks) > len(self.store.ledger)
        starts_due = bool(self._unrecorded) and now - self._oldest_unrecorded() >= self.options.start_flush
        if self._store_error is None and (want > 0 or self.outbox or starts_due or new_lines):
            self._record_starts(now)
            try:
                result = self.store.sync(self.outbox, want, self.tasks if new_lines else None)
            except OSError as error:
                self._store_failed(error)
                return
            self.outbox = []
            if result is not None:
                self.dispatcher.claimed(result.claimed, want, now)
                self._holders = result.holders
        for _rank, task_id in self.dispatcher.assign():
            line = self.store.ledger.lines[task_id]
            task = Task(task_id, line, self.handler.command(line))
            run = self.pool.start(task)
            self._note_start(run)

    def _disk_full(self) -> bool:
        try:
            stat = os.statvfs(self.store.workdir.root)
        except OSError:
            return False
        return stat.f_bavail * stat.f_frsize < 64 * 1024

    def _store_failed(self, error: OSError) -> None:
        """The work directory cannot be written (disk full, quota, I/O error): stop cleanly."""
        self._store_error = error
        logger.error("cannot write to the work directory %s: %s", self.store.workdir.root,
                     error.strerror or error)
        if self._stop_reason is None:
            self._drain("the work directory cannot be written; free space and run the same command again")

    def _note_start(self, run: Run) -> None:
        if run.pid:
            self._unrecorded[run.pid] = run
        if self.options.verbose:
            logger.info("task %d started in slot %d: %s", run.task.id, run.slot, run.task.line)

    def _oldest_unrecorded(self) -> float:
        return min(run.t0 for run in self._unrecorded.values())

    def _record_starts(self, now: float) -> None:
        """Journal the starts of runs going for longer than ``start_flush``.

        Short runs get only an end record, which saves a write per task. The start record tells
        a later farmer which process group to kill should this farmer die; younger runs are
        found by their ``MPIFARMER_FARMER`` environment variable instead (see the store).
        """
        for pid, run in list(self._unrecorded.items()):
            if now - run.t0 < self.options.start_flush:
                continue
            run.pid_start = pid_start(run.pid)
            self.outbox.append(rec.start(self.store.fid, run.task.id, pid=run.pid, pst=run.pid_start,
                                         host=self.host, rank=0, slot=run.slot, t=run.t0))
            del self._unrecorded[pid]

    def _housekeeping(self, now: float) -> None:
        try:
            self.store.beat()
            if self.store.views_due():
                self.store.write_views()
        except OSError as error:
            if self._store_error is None:
                self._store_failed(error)
        self._watch.poll(now)

    def _done(self) -> bool:
        if self._stop_reason is not None:
            return not self.pool.running and not self._held
        if not self.dispatcher.idle() or self._held or self.pool.running:
            return False
        if not self.dispatcher.ran_dry() or self.store.ledger.pending > 0:
            return False
        if len(self.tasks) > len(self.store.ledger):
            return False
        return all(verdict is Liveness.LIVE for verdict in self._holders.values())

    def _sleep_for(self, deadline: float | None) -> float:
        now_wall, now = time.time(), time.monotonic()
        candidates = [self.store.beat_interval, self._watch.next_poll(now) - now]
        if deadline is not None and self._stop_reason is None:
            candidates.append(deadline - now)
        if self._kill_at is not None:
            candidates.append(self._kill_at - now)
        if self._held:
            candidates.append(min(until for _, until in self._held) - now)
        if self._unrecorded:
            candidates.append(self._oldest_unrecorded() + self.options.start_flush - now_wall)
        check = self.dispatcher.next_check(now_wall)
        if check is not None:
            candidates.append(check - now_wall)
        if self.pool.running or self.dispatcher.queue:
            candidates.append(1.0)
        return max(0.0, min(candidates))

    # -- the end ----------------------------------------------------------------------------

    def _close(self) -> int:
        try:
            closed = self.store.close(self.outbox, lock_timeout=5.0 if self._stop_reason else None)
        except OSError as error:
            logger.error("could not record the last %d records (%s); the next run will find this farmer dead "
                         "and return its tasks", len(self.outbox), error.strerror or error)
            return EXIT_STOPPED
        if not closed:
            logger.error("could not take the work-directory lock to record the last %d records; the next "
                         "run will find this farmer dead and return its tasks", len(self.outbox))
        ledger = self.store.ledger
        if self._store_error is not None:
            return EXIT_STOPPED
        if self._stop_reason is not None and ledger.pending > 0:
            return EXIT_STOPPED
        return EXIT_FAILED if ledger.count(FAILED) else EXIT_DONE

    def _log_start(self) -> None:
        ledger = self.store.ledger
        logger.info("mpifarmer: task list %s, work directory %s: %d tasks, %d to run (%d finished, %d failed), "
                    "%d workers, farmer %s", self.options.task_list, self.store.workdir.root, len(ledger),
                    ledger.pending, ledger.count(FINISHED), ledger.count(FAILED), self.options.proc,
                    self.store.fid)

    def _log_stop(self, wall: float, code: int) -> None:
        ledger = self.store.ledger
        logger.info("mpifarmer: %s; this run: %d finished, %d failed, %d interrupted; work directory: "
                    "%d finished, %d failed, %d left; wall time %.1f s; exit code %d",
                    self._stop_reason or "no work left", self._counts[rec.FINISHED], self._counts[rec.FAILED],
                    self._counts[rec.INTERRUPTED], ledger.count(FINISHED), ledger.count(FAILED),
                    len(ledger) - ledger.count(FINISHED) - ledger.count(FAILED), wall, code)


class _Watcher:
    """Notices lines appended to the task list while the farm runs."""

    def __init__(self, path: Path, tasks: TaskLines, interval: float) -> None:
        self.path = path
        self.tasks = tasks
        self.interval = interval
        self._next = time.monotonic() + interval
        self._offset = tasks.tail_start if tasks.tail_start is not None else tasks.end
        self._lineno = tasks.tail_lineno if tasks.tail_lineno is not None else tasks.next_lineno
        self._recheck_tail = tasks.tail_start is not None and bool(tasks.linenos) and \
            tasks.linenos[-1] == tasks.tail_lineno
        self._size = tasks.end
        self._stopped = False

    def next_poll(self, now: float) -> float:
        return self._next if not self._stopped else now + 3600.0

    def poll(self, now: float) -> None:
        if self._stopped or now < self._next:
            return
        self._next = now + self.interval
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return
        if size == self._size:
            return
        if size < self._size:
            self._give_up("the task list shrank while the farm ran")
            return
        try:
            more = read_task_lines(self.path, start=self._offset, first_lineno=self._lineno,
                                   include_unterminated=False)
        except Exception as error:  # noqa: BLE001 - a bad append must not stop a running farm
            self._give_up(str(error))
            return
        if more.end == self._offset:
            return  # only an unfinished line so far
        texts = more.texts
        if self._recheck_tail:
            self._recheck_tail = False
            if not texts or texts[0] != self.tasks.texts[-1]:
                self._give_up(f"line {self._lineno} changed while the farm ran")
                return
            texts, linenos = texts[1:], more.linenos[1:]
        else:
            linenos = more.linenos
        self._size = size
        self._offset, self._lineno = more.end, more.next_lineno
        if texts:
            self.tasks.texts.extend(texts)
            self.tasks.linenos.extend(linenos)
            logger.info("%d tasks appended to %s", len(texts), self.path)

    def _give_up(self, why: str) -> None:
        self._stopped = True
        logger.warning("no longer watching %s for appended tasks: %s; restart the farmer to check the list",
                       self.path, why)
