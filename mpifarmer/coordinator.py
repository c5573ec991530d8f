"""The coordinator: one per farmer (rank 0 in MPI mode). It alone talks to the work directory.

Each step it turns what arrived (workers' starts and ends, stop requests, signals, the
clock) into dispatcher events and journal records, syncs with the store when there is
something to record or work to claim, and sends work to the ranks. Its ranks are workers
reached over a transport: in local mode one worker in this process, in MPI mode one per rank.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mpifarmer.resources import PoolResources, line_check
from mpifarmer.scheduling import policy
from mpifarmer.scheduling import records as rec
from mpifarmer.scheduling.dispatch import Dispatcher
from mpifarmer.scheduling.ledger import Status
from mpifarmer.scheduling.liveness import Liveness
from mpifarmer.signals import SignalFlags
from mpifarmer.store.store import CLOSE_GRACE, Store
from mpifarmer.task import EndReason
from mpifarmer.tasklists import TaskList
from mpifarmer.tasklists.reader import TaskLines
from mpifarmer.transport import Transport
from mpifarmer.transport import protocol as msg
from mpifarmer.watch import TaskListWatcher
from mpifarmer.wording import counted

__all__ = ["Coordinator"]

if TYPE_CHECKING:
    from mpifarmer.options import FarmerOptions

logger = logging.getLogger(__name__)

@dataclass
class RankInfo:
    host: str
    heard: float
    ended: int = 0  # ends since the last prefetch retune


@dataclass
class _Held:
    """An end that waits, in case the stop signal that probably caused it is about to arrive."""

    rank: int
    end: msg.TaskEnd
    until: float


@dataclass
class Tally:
    counts: dict[str, int] = field(default_factory=lambda: {rec.FINISHED: 0, rec.FAILED: 0, rec.INTERRUPTED: 0,
                                                            rec.RETRYING: 0})


class Coordinator:
    """Decides nothing itself: it feeds what it observes to the dispatcher and to
    :mod:`mpifarmer.scheduling.policy`, and carries their decisions to the store and the ranks."""

    def __init__(self, options: FarmerOptions, store: Store, tasks: TaskLines, handler: TaskList,
                 transport: Transport, flags: SignalFlags, resources: PoolResources | None = None) -> None:
        self.options = options
        self.store = store
        self.tasks = tasks
        self.handler = handler
        self.transport = transport
        self.flags = flags
        self.dispatcher = Dispatcher()
        self.ranks: dict[int, RankInfo] = {}
        self.lost: set[int] = set()
        self.outbox: list[dict[str, Any]] = []
        self.tally = Tally()
        self.stop_reason: str | None = None
        self.store_error: OSError | None = None
        self._held: list[_Held] = []
        self._stops_seen = 0
        self._holders: dict[str, Liveness] = {}
        # Appended lines are checked as the list was at start: a line asking for more than the
        # node has is a bad line (reported; it and those after it wait for a restart).
        self.resources = resources
        check = line_check(handler, resources) if resources is not None else (
            handler.check if handler.checks_lines() else None)
        self._watch = TaskListWatcher(options.task_list, tasks, options.watch_interval, check)
        self._started = time.monotonic()
        self._deadline = self._started + options.timeout if options.timeout else None
        self._retune = policy.RetuneSchedule(self._started)
        self._pinged = self._started
        self._looked = time.time()  # the last sync with the store (wall time)

    # -- one step ---------------------------------------------------------------------------

    def step(self) -> bool:
        """Do everything that can be done now; return whether anything happened."""
        now, wall = time.monotonic(), time.time()
        busy = self._check_stop(now)
        busy |= self._receive(now, wall)
        self._release_held(now)
        busy |= self._exchange(wall)
        self._housekeeping(now)
        return busy

    def _check_stop(self, now: float) -> bool:
        acted = False
        if self.flags.stop_requests > self._stops_seen:
            self._stops_seen = self.flags.stop_requests
            name = signal.Signals(self.flags.last).name if self.flags.last else "a stop signal"
            if self.stop_reason is None:
                self.drain(f"received {name}")
            else:
                logger.warning("received %s again: killing running tasks now", name)
            acted = True
        if self._deadline is not None and now >= self._deadline and self.stop_reason is None:
            self.drain(f"--timeout of {self.options.timeout:g} s expired")
            acted = True
        if self.stop_reason is None:
            failures = policy.failures_stop(self.store.ledger.count(Status.FAILED), self.options.max_failures)
            if failures is not None:
                self.drain(failures)
                acted = True
        return acted

    def drain(self, reason: str) -> None:
        """Stop handing out work and have every rank interrupt what it runs."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        logger.warning("stopping: %s; the %s given to workers will be interrupted or returned", reason,
                       counted(self.dispatcher.in_flight, "task"))
        released = self.dispatcher.drain()
        if released:
            self.outbox.append(rec.release(self.store.fid, released))
        for rank in self._live_ranks():
            self.transport.send(rank, msg.Drain(reason))

    def _receive(self, now: float, wall: float) -> bool:
        messages = self.transport.poll()
        for rank, message in messages:
            info = self.ranks.get(rank)
            if info is not None:
                info.heard = now
            if isinstance(message, msg.Ended):
                for end in message.ends:
                    self._on_end(rank, end, now)
            elif isinstance(message, msg.Started):
                host = info.host if info else "?"
                for start in message.starts:
                    self.outbox.append(rec.start(self.store.fid, start.id, pid=start.pid, pst=start.pid_start,
                                                 host=host, rank=rank, slot=start.slot, t=start.t0, cpus=start.cpus,
                                                 gpus=start.gpus))
            elif isinstance(message, msg.Released):
                self.dispatcher.returned(rank, message.ids)
                self.outbox.append(rec.release(self.store.fid, message.ids))
            elif isinstance(message, msg.Hello):
                self._on_hello(rank, message, now)
            elif isinstance(message, msg.Stop):
                self.drain(f"rank {rank} {message.reason}" if self.transport.size > 1 else message.reason)
        return bool(messages)

    def _on_hello(self, rank: int, hello: msg.Hello, now: float) -> None:
        if hello.version != msg.VERSION:
            logger.error("rank %d runs protocol version %d, rank 0 runs %d: install the same mpifarmer "
                         "everywhere", rank, hello.version, msg.VERSION)
            self.drain("mixed mpifarmer versions")
            return
        self.ranks[rank] = RankInfo(hello.host, now)
        self.dispatcher.add_rank(rank, hello.slots, prefetch=1 if rank else 0)
        if rank and hello.found and (self.options.verbose or hello.found != self._found()):
            logger.info("rank %d on %s: %s, %s", rank, hello.host, counted(hello.slots, "worker"), hello.found)

    def _on_end(self, rank: int, end: msg.TaskEnd, now: float) -> None:
        until = policy.hold_until(end.returncode, reason=end.reason, stopping=self.stop_reason is not None, now=now)
        if until is not None:
            self._held.append(_Held(rank, end, until))
        else:
            self._record_end(rank, end)

    def _release_held(self, now: float) -> None:
        if not self._held:
            return
        keep = []
        for held in self._held:
            if self.stop_reason is not None or now >= held.until:
                self._record_end(held.rank, held.end)
            else:
                keep.append(held)
        self._held = keep

    def _record_end(self, rank: int, end: msg.TaskEnd) -> None:
        code = end.returncode
        retries = policy.retries_of(end.attrs, self.options.retries)
        state, drain, attempt = policy.classify_end(
            code, reason=end.reason, stopping=self.stop_reason is not None, disk_full=self._disk_full,
            attempts=self.store.ledger.attempts.get(end.id, 0), retries=retries)
        if drain is not None:
            self.drain(drain)
        self.tally.counts[state] += 1
        info = self.ranks.get(rank)
        if info is not None:
            info.ended += 1
        self.dispatcher.ended(rank, end.id, end.t1 - end.t0)
        again = policy.retry_at(end.t1, self.options.retry_delay) if state == rec.RETRYING else None
        if state == rec.RETRYING:
            self.dispatcher.pending_again(again)
        self.outbox.append(rec.end(
            self.store.fid, end.id, st=state, rc=code if code >= 0 else None, sig=-code if code < 0 else None,
            t0=end.t0, t1=end.t1, host=info.host if info else "?", rank=rank, slot=end.slot, why=end.reason,
            attrs=end.attrs, att=attempt, at=again, cpus=end.cpus, gpus=end.gpus))
        if self.options.verbose or state not in (rec.FINISHED, rec.RETRYING):
            self._log_end(rank, end, state, attempt, retries, again)

    def _log_end(self, rank: int, end: msg.TaskEnd, state: str, attempt: int | None, retries: int,
                 again: float | None) -> None:
        code = end.returncode
        if end.reason == EndReason.TIMED_OUT:
            how = "ran longer than its time limit"
        else:
            how = f"exit code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
        name = end.attrs.get("name")
        where = f" on rank {rank}" if self.transport.size > 1 else ""
        verdict = state
        if state == rec.RETRYING:
            verdict = (f"failed, attempt {attempt} of {retries + 1}: it runs again"
                       f"{f' in {again - end.t1:g} s' if again is not None else ''}")
        elif state == rec.FAILED and attempt is not None and attempt > 1:
            verdict = f"failed after {attempt} attempts"
        log = logger.warning if state == rec.FAILED else logger.info
        log("task %d%s %s%s (%s, %.2f s): %s", end.id, f" ({name})" if name else "", verdict, where, how,
            end.t1 - end.t0, self.store.ledger.lines[end.id])

    def _disk_full(self) -> bool:
        try:
            stat = os.statvfs(self.store.workdir.root)
        except OSError:
            return False
        return stat.f_bavail * stat.f_frsize < 64 * 1024

    def _exchange(self, wall: float) -> bool:
        """Sync with the store when there is something to record or work to claim; send work."""
        want = self.dispatcher.want(wall)
        new_lines = len(self.tasks) > len(self.store.ledger)
        look = self.stop_reason is None and policy.failure_look_due(limit=self.options.max_failures,
                                                                    last_look=self._looked, now=wall)
        if self.store_error is None and (want > 0 or self.outbox or new_lines or look):
            try:
                result = self.store.sync(self.outbox, want, self.tasks if new_lines else None)
            except OSError as error:
                self._store_failed(error)
                return True
            if result is not None:  # else the lock was not had (a stop came): the records wait
                self._looked = wall
                self.outbox = []
                self.dispatcher.claimed(result.claimed, want, wall, result.delay_end)
                self._holders = result.holders
        batches: dict[int, list[tuple[Any, ...]]] = {}
        ledger = self.store.ledger
        lines, default_retries = ledger.lines, self.options.retries
        for rank, task in self.dispatcher.assign():
            line = lines[task]
            attrs = ledger.attrs.get(task, {})
            attempt = policy.attempt_of(ledger.attempts.get(task, 0), policy.retries_of(attrs, default_retries))
            # msg.TaskWork's fields, as a plain tuple (see msg.Work)
            batches.setdefault(rank, []).append((task, line, self.handler.command_of(line), attrs, attempt))
        for rank, works in batches.items():
            self.transport.send(rank, msg.Work(works))
        return bool(batches)

    def _store_failed(self, error: OSError) -> None:
        """The work directory cannot be written (disk full, quota, I/O error): stop cleanly."""
        self.store_error = error
        logger.error("cannot write to the work directory %s: %s", self.store.workdir.root, error.strerror or error)
        self.drain("the work directory cannot be written; free space and run the same command again")

    def _housekeeping(self, now: float) -> None:
        try:
            self.store.beat()
            if self.store.views_due():
                self.store.write_views(background=True)
        except OSError as error:
            if self.store_error is None:
                self._store_failed(error)
        self._watch.poll(now)
        if self._retune.due(now, sum(info.ended for info in self.ranks.values())):
            self._retune_prefetch(now)
        if now - self._pinged >= 1.0:
            self._pinged = now
            for rank in self._live_ranks():
                if rank:
                    self.transport.send(rank, msg.Ping())
        self._check_ranks(now)

    def _retune_prefetch(self, now: float) -> None:
        """Size each rank's prefetch to its recent throughput (see policy.prefetch_for): a rank
        then starts its next task the moment a slot frees, before any bookkeeping."""
        ended = sum(info.ended for info in self.ranks.values())
        elapsed = max(self._retune.retuned(now, ended), 1e-3)
        for rank, info in self.ranks.items():
            self.dispatcher.set_prefetch(rank, policy.prefetch_for(info.ended / elapsed, remote=rank != 0))
            info.ended = 0

    def _check_ranks(self, now: float) -> None:
        heard = {rank: info.heard for rank, info in self.ranks.items()}
        for rank, quiet in policy.silent_ranks(heard, size=self.transport.size, lost=self.lost, started=self._started,
                                               now=now, timeout=self.options.rank_timeout):
            self.lost.add(rank)
            held = self.dispatcher.lose_rank(rank)
            info = self.ranks.get(rank)
            logger.error("rank %d (%s) has been silent for %.0f s: taken for lost with %s; stopping the "
                         "farm (run it again to recover them)", rank, info.host if info else "?", quiet,
                         counted(len(held), "task"))
            self.drain(f"rank {rank} was lost")

    def _live_ranks(self) -> list[int]:
        """Every rank of the job but the lost, whether or not it has said hello yet: a stop during
        start-up must reach a rank whose hello is still on its way."""
        return [rank for rank in range(self.transport.size) if rank not in self.lost]

    # -- the end ----------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Whether the farm is over for this farmer; the last thing it does is look at the task
        list once more, so that lines appended as the last tasks ended are not left behind."""
        dispatcher = self.dispatcher
        over = policy.farm_done(
            held=len(self._held), stopping=self.stop_reason is not None, in_flight=dispatcher.in_flight,
            idle=dispatcher.idle(), ran_dry=dispatcher.ran_dry(), pending=self.store.ledger.pending,
            unrecorded_lines=self._unrecorded_lines(), ranks_known=len(self.ranks) + len(self.lost),
            size=self.transport.size, holders_live=all(v is Liveness.LIVE for v in self._holders.values()))
        if not over or self.stop_reason is not None:
            return over
        return self._watch.poll(time.monotonic(), force=True) == 0

    def next_deadline(self) -> float:
        now, wall = time.monotonic(), time.time()
        candidates = [now + self.store.beat_interval, self._watch.next_poll(now), self._retune.next_at]
        if self.transport.size > 1:
            candidates.append(self._pinged + 1.0)
        if self._deadline is not None and self.stop_reason is None:
            candidates.append(self._deadline)
        if self._held:
            candidates.append(min(held.until for held in self._held))
        check = self.dispatcher.next_check(wall)
        if check is not None:
            candidates.append(now + check - wall)
        return min(candidates)

    def finish(self) -> int:
        """Record the last results, leave the work directory, tell the ranks; the exit code.

        Rank 0 must not leave before any rank, hello or not, or the launcher kills it and reports
        that instead of the exit code."""
        self._watch.poll(time.monotonic(), force=True)  # so that the stop line counts what the list holds
        code = self._close()
        for rank in self._live_ranks():
            self.transport.send(rank, msg.Finish(code))
        return code

    def await_goodbyes(self, timeout: float) -> None:
        """Wait until every remote rank has said goodbye, so that rank 0 exits last."""
        waiting = {rank for rank in self._live_ranks() if rank}
        deadline = time.monotonic() + timeout
        pause = 0.0001
        while waiting and time.monotonic() < deadline:
            for rank, message in self.transport.poll():
                if isinstance(message, msg.Bye):
                    waiting.discard(rank)
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        if waiting:
            logger.warning("ranks %s did not say goodbye within %.0f s", sorted(waiting), timeout)

    def _close(self) -> int:
        try:
            closed = self.store.close(self.outbox, lock_timeout=CLOSE_GRACE if self.stop_reason else None)
        except OSError as error:
            logger.error("could not record the last %s (%s); the next run will find this farmer dead "
                         "and return its tasks", counted(len(self.outbox), "record"), error.strerror or error)
            return policy.EXIT_STOPPED
        if not closed:
            logger.error("could not take the work-directory lock to record the last %s; the next run "
                         "will find this farmer dead and return its tasks", counted(len(self.outbox), "record"))
        ledger = self.store.ledger
        failed = ledger.count(Status.FAILED)
        return policy.exit_code(store_failed=self.store_error is not None, rank_lost=bool(self.lost), closed=closed,
                                stopping=self.stop_reason is not None,
                                work_left=ledger.pending > 0 or self._unrecorded_lines() > 0, failed=failed,
                                failures_stopped=policy.failures_stop(failed, self.options.max_failures) is not None)

    def progress_counts(self) -> tuple[int, int, int, int]:
        """(done, total, failed, running) of the work directory as this farmer knows it: finished
        or failed, every task line (recorded or not yet), failed, claimed by some farmer."""
        ledger = self.store.ledger
        failed = ledger.count(Status.FAILED)
        return (ledger.count(Status.FINISHED) + failed, len(ledger) + self._unrecorded_lines(), failed,
                ledger.count(Status.CLAIMED))

    def _unrecorded_lines(self) -> int:
        """Task-list lines this farmer has read that the work directory does not hold yet."""
        return max(0, len(self.tasks) - len(self.store.ledger))

    def _found(self) -> str:
        """What this farmer's own pool found on its node (see Inventory.describe)."""
        inventory = self.resources.inventory if self.resources is not None else None
        return inventory.describe() if inventory is not None else ""

    def log_start(self) -> None:
        ledger = self.store.ledger
        ranks = f" on {self.transport.size} ranks" if self.transport.size > 1 else ""
        found = self._found()
        each = "" if self.resources is None or not self.resources.binding else self._per_task()
        logger.info("mpifarmer: task list %s, work directory %s: %s, %d to run (%d finished, %d failed), "
                    "%s%s%s, farmer %s%s", self.options.task_list, self.store.workdir.root,
                    counted(len(ledger), "task"), ledger.pending, ledger.count(Status.FINISHED),
                    ledger.count(Status.FAILED), counted(self.options.proc, "worker"), each, ranks, self.store.fid,
                    f"; found {found}" if found else "")

    def _per_task(self) -> str:
        """`` of 4 cores and 1 GPU each``: what a task takes by default, when the pool binds."""
        assert self.resources is not None
        default = self.resources.default
        parts = [counted(default[name], noun) for name, noun in (("cores", "core"), ("gpus", "GPU"))
                 if default.get(name)]
        return f" of {' and '.join(parts)} each" if parts else ""

    def log_stop(self, code: int) -> None:
        ledger = self.store.ledger
        counts = self.tally.counts
        finished, failed = ledger.count(Status.FINISHED), ledger.count(Status.FAILED)
        left = len(ledger) + self._unrecorded_lines() - finished - failed
        retried = f", {counts[rec.RETRYING]} failed and retried" if counts[rec.RETRYING] else ""
        logger.info("mpifarmer: %s; this run: %d finished, %d failed, %d interrupted%s; work directory: "
                    "%d finished, %d failed, %d left; wall time %.1f s; exit code %d",
                    self.stop_reason or "no work left", counts[rec.FINISHED], counts[rec.FAILED],
                    counts[rec.INTERRUPTED], retried, finished, failed, left, time.monotonic() - self._started, code)
