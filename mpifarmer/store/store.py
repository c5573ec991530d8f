"""The durable work directory as one farmer sees it: open, sync, heartbeat, close.

Every state change goes through :meth:`Store.sync`, one short critical section under the
work-directory lock: read what other farmers appended, find dead farmers, append this
farmer's records and claims in one write, release. The tasks that ended are added to
``finished`` and ``failed`` in the same critical section, so those two are never behind the
journal; ``toprocess``, ``running`` and the timeline are rewritten outside the lock at a pace
that bounds their cost. Under the lock, when a farmer starts and when it leaves, every view is
rewritten unless the stamp of the last complete rewrite says the ledger has not changed since,
so they are exact whenever no farmer runs, and a restart with nothing to do writes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mpifarmer import environment
from mpifarmer.errors import LockError, TaskListChanged, WorkDirError
from mpifarmer.scheduling import records as rec
from mpifarmer.scheduling.ledger import FarmerInfo, Ledger, Status
from mpifarmer.scheduling.liveness import Facts, Liveness, judge
from mpifarmer.store.journal import GenerationChanged, Journal, NewerJournal, compaction_step
from mpifarmer.store.locking import WorkLock
from mpifarmer.store.snapshot import SnapshotError, read_snapshot, write_snapshot
from mpifarmer.store.timeline_child import TimelineChild
from mpifarmer.store.views import Snapshot, append_lines, view_path, write_timeline, write_views
from mpifarmer.store.workdir import WorkDir, atomic_write
from mpifarmer.tasklists.reader import TaskLines
from mpifarmer.wording import counted

__all__ = ["Identity", "Store", "SyncResult"]

logger = logging.getLogger(__name__)

#: How long a farmer asked to stop while it waits to record its last results keeps waiting.
CLOSE_GRACE = 5.0

#: A journal generation this long, and as long as the last snapshot, is compacted into a snapshot
#: (so that compaction costs O(1) per record at any size: a snapshot's worth of bytes written per
#: snapshot's worth appended); a farmer that leaves compacts one 32 times shorter, so that the next
#: start replays little. What every reader replays (a restart, ``status``) is at most this much
#: beyond the snapshot: at twice the snapshot, ``status`` on a running 1M-task farm took up to 2.3 s
#: of CPU. ``MPIFARMER_COMPACT_BYTES`` sets it.
COMPACT_BYTES = int(os.environ.get("MPIFARMER_COMPACT_BYTES", 16 << 20))

#: While the farm runs, the timeline is rewritten at most this often (seconds), and no more often
#: than 20 times what its last rewrite took. ``MPIFARMER_TIMELINE_EVERY`` sets it (the crash
#: harness makes it short, so that timeline children get killed too).
TIMELINE_EVERY = float(os.environ.get("MPIFARMER_TIMELINE_EVERY", 10.0))

#: Task lines per add record, and add records per journal append when a farmer adds a long list.
ADD_LINES, ADDS_PER_APPEND = 10000, 10

#: How much of the journal one read takes, so that replaying a long one needs little memory at once.
READ_CHUNK = 16 << 20


@dataclass(frozen=True)
class Identity:
    """Who a farmer is, as recorded in its ``hello`` record and heartbeat file."""

    host: str
    boot: str
    pid: int
    pid_start: int | None
    job: str | None = None
    restart: int = 0
    ranks: int = 1
    lock: str = "flock"  # the lock mode it uses
    #: The slots of each rank's pool (-n, or the default rank 0 computed); None where not known.
    #: Recorded so that utilization can be computed later (older journals lack it).
    slots: int | None = None

    @classmethod
    def of_this_process(cls, ranks: int = 1, lock: str = "flock", slots: int | None = None) -> Identity:
        slurm = environment.slurm()
        return cls(environment.hostname(), environment.boot_id(), os.getpid(),
                   environment.pid_start(os.getpid()), slurm.job_key, slurm.restart_count, ranks, lock, slots)

    def as_record(self) -> dict[str, Any]:
        record = {"host": self.host, "boot": self.boot, "pid": self.pid, "pst": self.pid_start,
                  "job": self.job, "restart": self.restart, "ranks": self.ranks, "lock": self.lock}
        if self.slots is not None:
            record["slots"] = self.slots
        return record


@dataclass
class SyncResult:
    claimed: list[int]
    holders: dict[str, Liveness]  # verdicts on other farmers that hold claims
    delay_end: float | None = None  # when the first task waiting for its retry delay may be claimed


class Store:
    """One farmer's access to a work directory (see the module docstring)."""

    def __init__(self, workdir: WorkDir, lock: WorkLock, *, lease: float = 300.0, fsync: bool = False,
                 clock: Callable[[], float] = time.time, compact_bytes: int = COMPACT_BYTES) -> None:
        self.workdir = workdir
        self.compact_bytes = compact_bytes
        self._snapshot_size = 0
        self.lock = lock
        self.lease = lease
        self.beat_interval = min(30.0, lease / 10)
        self.journal = Journal(workdir.journal, fsync=fsync)
        self.ledger = Ledger()
        self.clock = clock
        self.fid = ""
        #: The attributes of a task line (the task-list handler's), recorded with each task added.
        self.attributes: Callable[[str], dict[str, Any]] | None = None
        self.me: FarmerInfo | None = None
        self._identity: Identity | None = None
        self._last_beat = 0.0
        self._views_at = 0.0
        self._views_cost = 0.0
        self._timeline_at = 0.0
        self._timeline_cost = 0.0
        self._timeline_child = TimelineChild(workdir)
        self._view_append_failed = False
        self._task_views_at = -1  # the ledger's change count at the last rewrite of every task view
        self._views_thread: threading.Thread | None = None
        self._views_error: OSError | None = None

    # -- life cycle ------------------------------------------------------------------------

    def open(self, tasks: TaskLines, identity: Identity, *, task_list: str, retry_failed: bool = False) -> None:
        """Register this farmer; add new tasks; refuse a task list that no longer matches."""
        with self.lock:
            self.workdir.remove_temporaries()
            self._catch_up()
            self._remove_old_snapshots()
            self._check_unchanged(tasks, task_list)
            self._check_lock_mode(identity.lock)
            exact, before = self._views_exact(), self.ledger.changes
            out: list[dict[str, Any]] = []
            for first in range(len(self.ledger), len(tasks), ADD_LINES):
                out.append(self._add_record(first, tasks.texts[first : first + ADD_LINES]))
                self.ledger.apply(out[-1])
                if len(out) == ADDS_PER_APPEND:
                    # A long list goes in several appends, so that its records are never all in memory at
                    # once; a kill between them leaves some adds, and the next farmer adds the rest.
                    self.journal.append(out)
                    out = []
            if self.ledger.registrations == 0:  # not "no tasks yet": a farmer killed adding them had none
                out.extend(self._import_pytaskfarmer(tasks, task_list))
            self._register(identity, out)
            self._sweep(out)
            self.journal.append(out)
            retried = self.ledger.retry_failed(self.fid) if retry_failed else None
            if retried:
                self.journal.append([retried])
            self._start_views(exact and not retried, changed=self.ledger.changes != before)

    def _start_views(self, exact: bool, changed: bool) -> None:
        """At start, under the lock: ``finished`` and ``failed`` must be exact before the first
        append to them, so they are rewritten unless the stamp says they are (adding tasks or
        taking back a dead farmer's claims does not change them; a retry does); ``toprocess`` and
        ``running`` follow in the background at once if anything changed, the timeline at its pace."""
        if not exact:
            self._write_snapshot(Snapshot.of(self.ledger), (Status.FINISHED, Status.FAILED), timeline=False)
            self._raise_views_error()
        now = self.clock()
        self._views_at = 0.0 if changed or not exact else now
        self._timeline_at = now
        if exact and not changed:
            self._task_views_at = self.ledger.changes  # all four are exact: a close with nothing done skips them

    def _add_record(self, first: int, lines: list[str]) -> dict[str, Any]:
        """The add record of ``lines``, with the attributes the task-list handler gives them."""
        if self.attributes is None:
            return rec.add(first, lines)
        found = {offset: attrs for offset, line in enumerate(lines) if (attrs := self.attributes(line))}
        return rec.add(first, lines, found)

    def _import_pytaskfarmer(self, tasks: TaskLines, task_list: str) -> list[dict[str, Any]]:
        """Take over a work directory PyTaskFarmer made: its ``finished`` and ``failed`` files
        say which tasks are done (anything else is to be processed)."""
        out: list[dict[str, Any]] = []
        for path, state in ((self.workdir.finished, rec.FINISHED), (self.workdir.failed, rec.FAILED)):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                continue
            for number, row in enumerate(text.splitlines(), 1):
                task_id, _, line = row.partition(" ")
                if not task_id.isdigit() or int(task_id) >= len(tasks) or tasks.texts[int(task_id)] != line.strip():
                    raise TaskListChanged(
                        task_list, f"does not match {path}:{number} ({_clip(row)!r}), left by PyTaskFarmer; "
                        "use the task list that work directory was made for, or a new work directory (-w)")
                record = {"e": rec.END, "f": "pytaskfarmer", "id": int(task_id), "st": state, "rc": None}
                self.ledger.apply(record)
                out.append(record)
        if out:
            logger.info("took over PyTaskFarmer's work directory: %s already done", counted(len(out), "task"))
        return out

    def _register(self, identity: Identity, out: list[dict[str, Any]]) -> None:
        self._identity = identity
        self.fid = f"f{self.ledger.registrations}-{identity.host}-{identity.pid}"
        hello = rec.hello(self.fid, identity.as_record(), self.clock())
        self.ledger.apply(hello)
        self.me = self.ledger.farmers[self.fid]
        out.append(hello)
        with atomic_write(self.workdir.heartbeat(self.fid)) as stream:
            json.dump(identity.as_record() | {"fid": self.fid}, stream)
        self._last_beat = self.clock()

    def _check_lock_mode(self, mode: str) -> None:
        """Refuse to join a live farmer that uses another lock mode: the two locks are different
        files, so neither would exclude the other. (Two farmers of different modes that start
        within the same millisecond can still both pass; this guards the usual mistake.)"""
        for other in self.ledger.farmers.values():
            if other.gone or other.lock in (None, mode):
                continue
            if other.host == environment.hostname() and other.boot == environment.boot_id():
                if not environment.pid_alive(other.pid, other.pid_start):
                    continue
            else:
                age = _age(self.workdir.heartbeat(other.fid))
                if age is None or age > self.lease:
                    continue
            raise LockError(self.lock.path, f"farmer {other.fid} (pid {other.pid} on {other.host}) works on "
                            f"{self.workdir.root} with --lock-mode {other.lock}, and farmers of different lock modes "
                            f"do not exclude each other: use --lock-mode {other.lock}, or wait until it ends")

    def _check_unchanged(self, tasks: TaskLines, task_list: str) -> None:
        recorded = self.ledger.lines
        task = recorded.first_difference(tasks.texts)
        if task is not None:
            raise TaskListChanged(
                task_list, f"task {task} differs from the one recorded in {self.workdir.root} "
                f"({_clip(recorded[task])!r}); task IDs would change meaning: restore the line, or start a new "
                "work directory (-w)", tasks.linenos[task])
        if len(tasks) < len(recorded):
            missing = len(tasks)
            raise TaskListChanged(
                task_list, f"task {missing} ({_clip(recorded[missing])!r}) and {len(recorded) - missing - 1} "
                f"after it were removed since {self.workdir.root} was made; restore them, or start a new "
                "work directory (-w)", tasks.next_lineno)

    def sync(self, out: list[dict[str, Any]], want: int = 0, tasks: TaskLines | None = None,
             lock_timeout: float | None = None) -> SyncResult | None:
        """Append ``out``, add the lines of ``tasks`` the ledger lacks, claim up to ``want``.

        Returns None if the lock could not be had within ``lock_timeout``."""
        if not self.lock.acquire(lock_timeout):
            return None
        out = list(out)
        try:
            self._catch_up()
            if self.me is not None and self.me.gone:
                self._reregister(out)
            if tasks is not None:
                for first in range(len(self.ledger), len(tasks), ADD_LINES):
                    out.append(self._add_record(first, tasks.texts[first : first + ADD_LINES]))
            ended = self._apply_own(out)
            holders = self._sweep(out) if self.ledger.others_holding(self.fid) else {}
            claim = self.ledger.claim(self.fid, want, self.clock()) if want > 0 else None
            if claim is not None:
                out.append(claim)
            self.journal.append(out)
            self._append_ended(ended)
            if self.journal.size >= max(self.compact_bytes, self._snapshot_size):
                self.compact()
        finally:
            self.lock.release()
        return SyncResult(claim["ids"] if claim else [], holders, self.ledger.next_delay_end())

    def close(self, out: list[dict[str, Any]], lock_timeout: float | None = None) -> bool:
        """Append ``out`` and a ``bye``, rewrite the views; False if the lock was not had within
        ``lock_timeout``, or, with none, within CLOSE_GRACE of a stop request."""
        if lock_timeout is not None:
            had = self.lock.acquire(lock_timeout, stoppable=False)
        else:
            had = self.lock.acquire() or self.lock.acquire(CLOSE_GRACE, stoppable=False)
        if not had:
            return False
        try:
            self._catch_up()
            ended = self._apply_own(out)
            bye = rec.bye(self.fid, self.clock())
            self.ledger.apply(bye)
            self.journal.append([*out, bye])
            if self.journal.size >= self.compact_bytes // 32:
                self.compact()
            self._join_views()
            if not self._write_all_views():
                self._append_ended(ended)
        finally:
            self.lock.release()
        try:
            self.workdir.heartbeat(self.fid).unlink()
        except OSError:
            pass
        return True

    # -- the journal: catching up, generations ---------------------------------------------

    def _catch_up(self) -> None:
        """Apply what others appended (under the lock); a new journal generation means a new ledger."""
        while True:
            try:
                records = self.journal.read_new(READ_CHUNK)
            except GenerationChanged as change:
                self._rebase(change.generation, change.start)
                continue
            except NewerJournal as error:
                raise WorkDirError(self.workdir.root, f"{error}: run it with a newer mpifarmer (pip install -U "
                                   "mpifarmer), or start a new work directory (-w)") from None
            self.ledger.apply_all(records)
            if not self.journal.more:
                return

    def _rebase(self, generation: int, start: int) -> None:
        """Take the ledger from the snapshot of ``generation``; rebuild it from the history if
        that is damaged."""
        try:
            ledger = read_snapshot(self.workdir.snapshot(generation), generation)
            self._snapshot_size = self.workdir.snapshot(generation).stat().st_size
        except SnapshotError as error:
            logger.warning("%s; rebuilding the state from the journal history in %s", error, self.workdir.history)
            ledger = self._replay_history(generation)
        self.ledger = ledger
        self.me = ledger.farmers.get(self.fid) if self.fid else None
        self.journal.rebase(generation, start)

    def _replay_history(self, generation: int) -> Ledger:
        ledger = Ledger()
        for old in range(generation):
            path = self.workdir.old_journal(old)
            if not path.exists():
                raise WorkDirError(self.workdir.root, f"the snapshot of journal generation {generation} is damaged "
                                   f"and {path} is missing, so the state cannot be rebuilt; start a new work "
                                   "directory (-w)")
            history = Journal(path)
            history.generation = old
            while True:
                ledger.apply_all(history.read_new(READ_CHUNK))
                if not history.more:
                    break
        return ledger

    def compact(self) -> None:
        """Under the lock, caught up: start a new journal generation. Each step leaves a work
        directory that reads correctly if the farmer is killed right after it:

        1. the snapshot of the ledger as it is now, ``snapshot.G+1`` (unused until step 3);
        2. the journal linked into ``history/journal.G.jsonl`` (it is still the journal too);
        3. the journal replaced by one that holds only the header of generation G+1;
        4. ``snapshot.G`` removed (a farmer that starts removes any left over).
        """
        if self.journal.raced:
            return  # a lock that does not exclude: keep the journal as it is
        try:
            self._compact()
        except OSError as error:
            # Every step is safe to stop after: the journal is still whole, only longer than wanted.
            self._snapshot_size = max(self._snapshot_size, 2 * self.journal.size)  # try again at twice the size
            logger.warning("could not compact the journal of %s (%s); it is kept as it is",
                           self.workdir.root, error.strerror or error)

    def _compact(self) -> None:
        old = self.journal.generation
        start = time.perf_counter()
        write_snapshot(self.workdir.snapshot(old + 1), self.ledger, old + 1)
        self._snapshot_size = self.workdir.snapshot(old + 1).stat().st_size
        compaction_step(1)
        self.workdir.history.mkdir(exist_ok=True)
        archive = self.workdir.old_journal(old)
        archive.unlink(missing_ok=True)  # left by a compaction killed before its step 3
        try:
            os.link(self.workdir.journal, archive)
        except OSError:  # a filesystem without hard links: a copy, renamed into place whole
            with atomic_write(archive, fsync=True, binary=True) as stream, self.workdir.journal.open("rb") as source:
                shutil.copyfileobj(source, stream)
        compaction_step(2)
        self.journal.new_generation(old + 1)
        compaction_step(3)
        self.workdir.snapshot(old).unlink(missing_ok=True)
        logger.info("compacted the journal into %s (%s) in %.2f s", self.workdir.snapshot(old + 1).name,
                    counted(len(self.ledger), "task"), time.perf_counter() - start)

    def _remove_old_snapshots(self) -> None:
        for path in self.workdir.root.glob("snapshot.*"):
            suffix = path.name.removeprefix("snapshot.")
            if suffix.isdigit() and int(suffix) != self.journal.generation:
                path.unlink(missing_ok=True)

    # -- heartbeat, liveness, views ---------------------------------------------------------

    def beat(self, force: bool = False) -> None:
        """Refresh this farmer's heartbeat if it is due."""
        now = self.clock()
        if force or now - self._last_beat >= self.beat_interval:
            try:
                os.utime(self.workdir.heartbeat(self.fid))
            except FileNotFoundError:
                assert self._identity is not None
                with atomic_write(self.workdir.heartbeat(self.fid)) as stream:
                    json.dump(self._identity.as_record() | {"fid": self.fid}, stream)
            self._last_beat = now

    def _sweep(self, out: list[dict[str, Any]]) -> dict[str, Liveness]:
        """Judge every other farmer that holds claims; record the dead ones."""
        assert self.me is not None
        holders: dict[str, Liveness] = {}
        others = self.ledger.others_holding(self.fid)
        if not others:
            return holders
        self.beat(force=True)
        own = _mtime(self.workdir.heartbeat(self.fid))
        now = self.clock()
        for other in others:
            facts = self._facts(other, own, now)
            verdict, why = judge(other, self.me, facts, lease=self.lease, beat_interval=self.beat_interval)
            holders[other.fid] = verdict
            if verdict is Liveness.DEAD:
                self.journal.trace("dead", other.fid, sorted(other.held))
                logger.warning("farmer %s is dead (%s): its %s pending again", other.fid, why,
                               counted(len(other.held), "claimed task is", "claimed tasks are"))
                self._kill_orphans(other)
                record = rec.dead(other.fid, self.fid, why, now)
                self.ledger.apply(record)
                out.append(record)
        return holders

    def _facts(self, other: FarmerInfo, own_beat: float | None, now: float) -> Facts:
        theirs = _mtime(self.workdir.heartbeat(other.fid))
        beat_age = own_beat - theirs if own_beat is not None and theirs is not None else None
        same_host = other.host == environment.hostname() and other.boot == environment.boot_id()
        alive = environment.pid_alive(other.pid, other.pid_start) if same_host else None
        return Facts(beat_age, alive, now - other.registered if other.registered else 0.0)

    def _kill_orphans(self, other: FarmerInfo) -> None:
        """Kill task processes a dead farmer on this host left running, so no task runs twice.

        Its tasks carry ``MPIFARMER_FARMER=<fid>`` in their environment; their process groups
        are found by scanning /proc (only when a farmer is found dead, which is rare)."""
        if other.host != environment.hostname() or other.boot != environment.boot_id():
            return
        for pgid in environment.process_groups_with(f"MPIFARMER_FARMER={other.fid}"):
            try:
                os.killpg(pgid, 9)
                logger.warning("killed process group %d left running by dead farmer %s", pgid, other.fid)
            except (ProcessLookupError, PermissionError):
                pass

    def _reregister(self, out: list[dict[str, Any]]) -> None:
        logger.warning("farmer %s was declared dead by another farmer; registering again", self.fid)
        assert self._identity is not None
        self._register(self._identity, out)

    def views_due(self) -> bool:
        """Whether a background rewrite is due: of ``toprocess`` and ``running`` at least 2 s and
        20 times their last cost apart (and the previous one done), of the timeline TIMELINE_EVERY
        and 20 times its cost (and the previous timeline child done)."""
        return self._task_views_due() or self._timeline_due()

    def _task_views_due(self) -> bool:
        if self._views_thread is not None and self._views_thread.is_alive():
            return False
        return self.clock() - self._views_at >= max(2.0, 20 * self._views_cost)

    def _timeline_due(self) -> bool:
        if self._timeline_child.running:
            return False
        return self.clock() - self._timeline_at >= max(TIMELINE_EVERY, 20 * max(self._timeline_cost,
                                                                        self._timeline_child.cost))

    def write_views(self, background: bool = False) -> None:
        """Rewrite the views that are due (all of them unless ``background``) from the ledger as it
        is now; ``background`` writes ``toprocess`` and ``running`` from a thread, so that a large
        list (seconds of writing) does not hold up dispatch, and the timeline from a child process
        (:mod:`mpifarmer.store.timeline_child`), which needs only the journal files. A background
        write leaves out ``finished`` and ``failed``: they are appended to under the lock, and a
        rewrite outside it could drop rows that another farmer appended meanwhile."""
        now = self.clock()
        if not background:
            self._join_views()
            self._timeline_child.stop()
            self._views_at = self._timeline_at = now
            self._write_snapshot(Snapshot.of(self.ledger), tuple(Status), timeline=True)
        else:
            if self._task_views_due():  # so the last thread is done
                self._views_at = now
                self._views_thread = threading.Thread(
                    target=self._write_snapshot, args=(Snapshot.of(self.ledger), (Status.PENDING, Status.CLAIMED),
                                                       False), name="mpifarmer-views", daemon=True)
                self._views_thread.start()
            if self._timeline_due():
                self._timeline_at = now
                self._timeline_child.start()
        self._raise_views_error()

    def _write_snapshot(self, snapshot: Snapshot, statuses: tuple[int, ...], timeline: bool) -> None:
        try:
            start = time.perf_counter()
            if statuses:
                write_views(snapshot, self.workdir, statuses, timeline=False)
                self._views_cost = time.perf_counter() - start
            if timeline:
                start = time.perf_counter()
                write_timeline(self.workdir)
                self._timeline_cost = time.perf_counter() - start
        except OSError as error:
            self._views_error = error  # raised in the main thread, by the next write_views

    def _raise_views_error(self) -> None:
        """Raise, in the main thread, what the last view write (perhaps a background one) failed with."""
        if self._views_error is not None:
            error, self._views_error = self._views_error, None
            raise error

    def _join_views(self) -> None:
        self._timeline_child.stop()
        if self._views_thread is not None:
            self._views_thread.join()
            self._views_thread = None

    def _write_all_views(self, timeline: bool = True) -> bool:
        """Under the lock: rewrite every view, unless the stamp of the last complete rewrite shows
        the ledger as it is now. False if nothing was written."""
        stamp = {"changes": self.ledger.changes, "tasks": len(self.ledger)}
        if self._views_exact():
            return False
        self._join_views()
        self.workdir.views_stamp.unlink(missing_ok=True)  # not exact until the rewrite is complete
        # The task views written at start are still exact if nothing changed since (a restart
        # with nothing to do): then only the timeline is left to write.
        statuses = () if self._task_views_at == stamp["changes"] else tuple(Status)
        self._write_snapshot(Snapshot.of(self.ledger), statuses, timeline)
        self._task_views_at = stamp["changes"]
        self._views_at = self.clock()
        self._raise_views_error()
        if timeline:
            with atomic_write(self.workdir.views_stamp) as stream:
                json.dump({**stamp, "files": self._rewritten_files()}, stream)
        return True

    def _views_exact(self) -> bool:
        """Whether the stamp of the last complete rewrite shows the ledger as it is now, and the
        views it was written with are still there. A farmer's background rewrite of ``toprocess``
        and ``running`` (or its timeline child), begun from an older state before another farmer's
        complete rewrite and ended after it, replaces them outside the lock: their files are then
        new ones, and the stamp no longer holds (bug 20)."""
        try:
            stamp = json.loads(self.workdir.views_stamp.read_text())
        except (OSError, ValueError):
            return False
        return stamp == {"changes": self.ledger.changes, "tasks": len(self.ledger), "files": self._rewritten_files()}

    def _rewritten_files(self) -> dict[str, list[int]] | None:
        """(inode, mtime, size) of the views rewritten outside the lock: each rewrite is a new
        file (a rename), so a rewrite since shows here. None if one is missing."""
        files = {}
        for path in (self.workdir.toprocess, self.workdir.running, self.workdir.timeline):
            try:
                stat = os.stat(path)
            except OSError:
                return None
            files[path.name] = [stat.st_ino, stat.st_mtime_ns, stat.st_size]
        return files

    def _apply_own(self, out: list[dict[str, Any]]) -> dict[int, list[int]]:
        """Apply this farmer's records to the ledger; return the tasks they made finished or
        failed (not those already so: a failed task that fails again is listed once)."""
        ended: dict[int, list[int]] = {Status.FINISHED: [], Status.FAILED: []}
        status = self.ledger.status
        for record in out:
            task = record.get("id") if record.get("e") == rec.END else None
            before = status[task] if task is not None else None
            self.ledger.apply(record)
            if task is not None and status[task] != before and status[task] in ended:
                ended[status[task]].append(task)
        return ended

    def _append_ended(self, ended: dict[int, list[int]]) -> None:
        """Add the tasks that just ended to ``finished`` or ``failed`` (under the lock). Called after
        the journal append, so a failure here (a full disk) must not look like a failed record: the
        views lack those rows until their next rewrite, which the stamp makes sure of."""
        lines = self.ledger.lines
        try:
            for state, tasks in ended.items():
                append_lines(view_path(self.workdir, state), [f"{task} {lines[task]}\n" for task in tasks])
        except OSError as error:
            if not self._view_append_failed:
                logger.warning("cannot add to the views finished and failed in %s (%s); they are rewritten when "
                               "a farmer next starts or leaves", self.workdir.root, error.strerror or error)
            self._view_append_failed = True

    def is_dead_lock_owner(self, host: str, pid: int) -> bool:
        """For the strict lock: is the process that holds a lock claim certainly gone?"""
        if host == environment.lock_host_name():
            return not environment.pid_alive(pid, None)
        for farmer in self.ledger.farmers.values():
            if farmer.host == host and farmer.pid == pid:
                age = _age(self.workdir.heartbeat(farmer.fid))
                return farmer.gone or age is None or age > self.lease
        return False


def _mtime(path: os.PathLike[str] | str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _age(path: os.PathLike[str] | str) -> float | None:
    mtime = _mtime(path)
    return None if mtime is None else time.time() - mtime


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
