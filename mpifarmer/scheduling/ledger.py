"""The state of a work directory, rebuilt by replaying its journal.

The journal is an append-only list of records (plain dicts, see :mod:`mpifarmer.scheduling.records`).
Every farmer sharing a work directory replays the same records in the same order, so they all
agree on which task is pending, claimed by whom, finished or failed. The decision which task is
claimed next is made here, in :meth:`Ledger.claim`: the lowest pending ID, so that users who put
their longest tasks first get them started first.

Memory per task is a few bytes, so that ten million tasks fit: the task lines in one buffer
(:class:`~mpifarmer.scheduling.texts.Texts`), the states in one ``bytearray``; dicts hold only
what is claimed or running, and the attempts of tasks that failed and will be retried; runs are
not kept (the timeline is drawn from the journal).

Nothing here touches files, clocks or processes: the store feeds records in and appends the
records this class makes.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from mpifarmer.scheduling import records as rec
from mpifarmer.scheduling.texts import Texts

__all__ = ["FarmerInfo", "Ledger", "Status"]

logger = logging.getLogger(__name__)

class Status(IntEnum):
    """A task's state in the ledger, one byte per task. (Not a run's verdict: that is the ``st`` of
    an end record, :data:`mpifarmer.scheduling.records.FINISHED` and its siblings.)"""

    PENDING = 0
    CLAIMED = 1
    FINISHED = 2
    FAILED = 3


_PENDING = bytes([Status.PENDING])

STATUS_NAMES = tuple(status.name.lower() for status in Status)


@dataclass
class FarmerInfo:
    """What a farmer said of itself when it registered, and what it holds now."""

    fid: str
    host: str = ""
    boot: str = ""
    pid: int = 0
    pid_start: int | None = None
    job: str | None = None
    restart: int = 0
    lock: str | None = None  # its --lock-mode (None in journals older than the field)
    registered: float = 0.0
    gone: bool = False
    held: set[int] = field(default_factory=set)
    ranks: int = 1
    slots: int | None = None  # each rank's pool slots (-n); None in journals older than the field
    #: Runs it recorded as finished or failed; None if unknown (read from a snapshot older than the field).
    done: int | None = 0
    #: How it left: ``bye`` (it left) or ``dead`` (found dead), and when (wall time, if recorded).
    gone_by: str | None = None
    gone_at: float | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> FarmerInfo:
        return cls(
            fid=record["f"],
            host=record.get("host", ""),
            boot=record.get("boot", ""),
            pid=int(record.get("pid", 0)),
            pid_start=record.get("pst"),
            job=record.get("job"),
            restart=int(record.get("restart", 0)),
            lock=record.get("lock"),
            registered=float(record.get("t", 0.0)),
            ranks=int(record.get("ranks", 1)),
            slots=record.get("slots"),
        )


class Ledger:
    """Task states and farmer registrations, as the journal records them."""

    def __init__(self) -> None:
        self.lines = Texts()
        #: Attributes of the tasks that have some, by task ID, as their add records hold them.
        self.attrs: dict[int, dict[str, Any]] = {}
        self.status = bytearray()
        self.owner: dict[int, str] = {}
        self.farmers: dict[str, FarmerInfo] = {}
        self.registrations = 0
        #: Start records of task runs not yet ended, by task ID (pid, host, slot, time).
        self.started: dict[int, dict[str, Any]] = {}
        #: Failed attempts of the tasks that have some and are not finished or failed for good.
        self.attempts: dict[int, int] = {}
        #: Pending tasks that wait for a retry delay: the wall time from which they may be claimed.
        self.delayed: dict[int, float] = {}
        self._delays: list[tuple[float, int]] = []  # (time, task), a heap over ``delayed``
        self.counts = [0, 0, 0, 0]
        #: Task state changes applied so far: equal in every farmer that replayed the same records,
        #: so views written at one count need no rewrite at the same count.
        self.changes = 0
        #: Every pending task below ``_cursor`` is in ``_heap``; above it, the status says.
        self._cursor = 0
        self._heap: list[int] = []

    # -- queries ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.lines)

    def count(self, status: int) -> int:
        return self.counts[status]

    @property
    def pending(self) -> int:
        return self.counts[Status.PENDING]

    def ids_with(self, status: int) -> Iterator[int]:
        """IDs with ``status`` in ascending order (a scan: for views, not for hot paths)."""
        return (i for i, s in enumerate(self.status) if s == status)

    def others_holding(self, fid: str) -> list[FarmerInfo]:
        """Farmers other than ``fid`` that hold claimed tasks."""
        return [f for f in self.farmers.values() if f.fid != fid and f.held]

    # -- replay ----------------------------------------------------------------------------

    def apply_all(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.apply(record)

    def apply(self, record: dict[str, Any]) -> None:
        """Apply one journal record. Unknown kinds are skipped so old farmers read new journals."""
        handler = self._handlers.get(record.get("e", ""))
        if handler is None:
            logger.debug("skipping journal record of unknown kind %r", record.get("e"))
            return
        handler(self, record)

    def _on_add(self, record: dict[str, Any]) -> None:
        first, lines = int(record["first"]), record["lines"]
        given = record.get("attrs")
        if first != len(self.lines):
            # A duplicate add (two farmers saw the same appended lines) adds nothing.
            if first + len(lines) <= len(self.lines):
                return
            lines = lines[len(self.lines) - first :]
            first = len(self.lines)
        if given:
            base = int(record["first"])
            for offset, attrs in given.items():
                if base + int(offset) >= first:
                    self.attrs[base + int(offset)] = attrs
        self.lines.extend(lines)
        self.status.extend(bytes(len(lines)))
        self.counts[Status.PENDING] += len(lines)
        self.changes += 1

    def _on_hello(self, record: dict[str, Any]) -> None:
        self.registrations += 1
        self.farmers[record["f"]] = FarmerInfo.from_record(record)

    def _on_claim(self, record: dict[str, Any]) -> None:
        farmer = self._farmer(record["f"])
        for task in record["ids"]:
            if self.status[task] != Status.PENDING:
                logger.warning("journal: task %d claimed by %s while %s", task, farmer.fid,
                               STATUS_NAMES[self.status[task]])
                continue
            self._set(task, Status.CLAIMED)
            self.delayed.pop(task, None)  # another farmer's clock said its delay was over
            self.owner[task] = farmer.fid
            farmer.held.add(task)

    def _on_start(self, record: dict[str, Any]) -> None:
        self.started[int(record["id"])] = record

    def _on_end(self, record: dict[str, Any]) -> None:
        task, fid = int(record["id"]), record.get("f")
        if self.started.get(task, {}).get("f") == fid:
            self.started.pop(task)
        state = record["st"]
        if state in (rec.FINISHED, rec.FAILED) and (farmer := self.farmers.get(fid)) is not None \
                and farmer.done is not None:
            farmer.done += 1
        if state == rec.FINISHED:
            self._disown(task)
            self.attempts.pop(task, None)
            self._set(task, Status.FINISHED)
        elif state == rec.FAILED:
            self._disown(task)
            self.attempts.pop(task, None)  # its end record says how many it used
            if self.status[task] != Status.FINISHED:
                self._set(task, Status.FAILED)
        elif state == rec.RETRYING:
            # A failed attempt, counted whoever ran it; pending again (after its delay) only if
            # this farmer still held it, as for an interruption.
            if self.status[task] not in (Status.FINISHED, Status.FAILED):
                self.attempts[task] = self.attempts.get(task, 0) + 1
            if self.owner.get(task) == fid:
                self._disown(task)
                if self.status[task] == Status.CLAIMED:
                    self._release(task, record.get("at"))
        elif self.owner.get(task) == fid:
            # Interrupted: pending again, unless another farmer has claimed it since (this
            # farmer was taken for dead meanwhile) or it is already done.
            self._disown(task)
            if self.status[task] == Status.CLAIMED:
                self._release(task)

    def _on_release(self, record: dict[str, Any]) -> None:
        for task in record["ids"]:
            if self.owner.get(task) == record["f"]:
                self._disown(task)
                self._release(task)

    def _on_retry(self, record: dict[str, Any]) -> None:
        for task in record["ids"]:
            self.attempts.pop(task, None)  # a fresh set of attempts
            if self.status[task] == Status.FAILED:
                self._release(task)

    def _on_gone(self, record: dict[str, Any]) -> None:
        """A farmer left (``bye``) or was found dead (``dead``): what it held is pending again."""
        farmer = self.farmers.get(record["f"])
        if farmer is None:
            return
        farmer.gone = True
        farmer.gone_by, farmer.gone_at = record["e"], record.get("t")
        for task in sorted(farmer.held):
            self.owner.pop(task, None)
            self.started.pop(task, None)
            if self.status[task] == Status.CLAIMED:
                self._release(task)
        farmer.held.clear()

    _handlers = {
        rec.ADD: _on_add,
        rec.HELLO: _on_hello,
        rec.CLAIM: _on_claim,
        rec.START: _on_start,
        rec.END: _on_end,
        rec.RELEASE: _on_release,
        rec.RETRY: _on_retry,
        rec.BYE: _on_gone,
        rec.DEAD: _on_gone,
    }

    # -- state, for snapshots ------------------------------------------------------------------

    def state(self) -> tuple[dict[str, Any], list[bytes | memoryview]]:
        """Everything replay built, as JSON-able facts and a few byte buffers (see
        :mod:`mpifarmer.store.snapshot`; the buffers are views: release them before the ledger
        changes); :meth:`from_state` rebuilds an equal ledger."""
        facts = {
            "tasks": len(self.lines), "changes": self.changes, "registrations": self.registrations,
            "attrs": {str(task): attrs for task, attrs in self.attrs.items()},
            "started": {str(task): record for task, record in self.started.items()},
            "attempts": {str(task): count for task, count in self.attempts.items()},
            "delayed": {str(task): at for task, at in self.delayed.items()},
            "farmers": [{"fid": f.fid, "host": f.host, "boot": f.boot, "pid": f.pid, "pst": f.pid_start,
                         "job": f.job, "restart": f.restart, "lock": f.lock, "t": f.registered, "gone": f.gone,
                         "held": sorted(f.held), "ranks": f.ranks, "slots": f.slots, "done": f.done,
                         "gone_by": f.gone_by, "gone_at": f.gone_at} for f in self.farmers.values()],
        }
        data, ends = self.lines.buffers()
        return facts, [data, ends, memoryview(self.status)]

    @classmethod
    def from_state(cls, facts: dict[str, Any], buffers: list[bytes | memoryview]) -> Ledger:
        data, ends, status = buffers
        ledger = cls()
        ledger.lines = Texts.from_buffers(data, ends)
        ledger.status = bytearray(status)
        if not len(ledger.lines) == len(ledger.status) == facts["tasks"]:
            raise ValueError("snapshot: task counts disagree")
        ledger.counts = [ledger.status.count(bytes([state])) for state in Status]
        ledger.changes, ledger.registrations = int(facts["changes"]), int(facts["registrations"])
        ledger.attrs = {int(task): attrs for task, attrs in facts["attrs"].items()}
        ledger.started = {int(task): record for task, record in facts["started"].items()}
        ledger.attempts = {int(task): int(count) for task, count in facts.get("attempts", {}).items()}
        for task, at in facts.get("delayed", {}).items():
            ledger._delay(int(task), float(at))
        for item in facts["farmers"]:
            farmer = FarmerInfo(item["fid"], item["host"], item["boot"], item["pid"], item["pst"], item["job"],
                                item["restart"], item["lock"], item["t"], item["gone"], set(item["held"]),
                                int(item.get("ranks", 1)), item.get("slots"), item.get("done"),
                                item.get("gone_by"), item.get("gone_at"))
            ledger.farmers[farmer.fid] = farmer
            for task in farmer.held:
                ledger.owner[task] = farmer.fid
        return ledger

    # -- decisions -------------------------------------------------------------------------

    def claim(self, fid: str, count: int, now: float | None = None) -> dict[str, Any] | None:
        """Claim up to ``count`` pending tasks, lowest IDs first, leaving those whose retry delay
        lasts beyond ``now`` (wall time; None: every delay is over); return the applied record."""
        ids: list[int] = []
        chosen: set[int] = set()
        if self._delays:
            self._wake(now)
        status, heap, delayed = self.status, self._heap, self.delayed
        while len(ids) < count:
            found = status.find(_PENDING, self._cursor)
            self._cursor = len(status) if found < 0 else found
            if heap and heap[0] < self._cursor:
                task = heapq.heappop(heap)
                if status[task] != Status.PENDING or task in chosen or task in delayed:
                    continue  # claimed since it was released, or released twice, or waits
            elif found >= 0:
                task = found
                self._cursor = found + 1
                if task in delayed:
                    continue  # below the cursor now: on the heap when its delay is over
            else:
                break
            ids.append(task)
            chosen.add(task)
        if not ids:
            return None
        record = rec.claim(fid, ids)
        self.apply(record)
        return record

    def next_delay_end(self) -> float | None:
        """When the first task that waits for its retry delay may be claimed (None: none waits)."""
        while self._delays and self.delayed.get(self._delays[0][1]) != self._delays[0][0]:
            heapq.heappop(self._delays)  # claimed since, or woken
        return self._delays[0][0] if self._delays else None

    def retry_failed(self, fid: str) -> dict[str, Any] | None:
        """Make every failed task pending again; return the applied record."""
        ids = list(self.ids_with(Status.FAILED))
        if not ids:
            return None
        record = rec.retry(fid, ids)
        self.apply(record)
        return record

    # -- internals -------------------------------------------------------------------------

    def _farmer(self, fid: str) -> FarmerInfo:
        farmer = self.farmers.get(fid)
        if farmer is None:  # a journal cut before its hello still replays
            farmer = self.farmers[fid] = FarmerInfo(fid)
        return farmer

    def _disown(self, task: int) -> None:
        fid = self.owner.pop(task, None)
        if fid is not None:
            self.farmers[fid].held.discard(task)

    def _release(self, task: int, at: float | None = None) -> None:
        self._set(task, Status.PENDING)
        if at is not None:
            self._delay(task, float(at))
        elif task < self._cursor:
            heapq.heappush(self._heap, task)

    def _delay(self, task: int, at: float) -> None:
        self.delayed[task] = at
        heapq.heappush(self._delays, (at, task))

    def _wake(self, now: float | None) -> None:
        """End the retry delays that are over by ``now``: those tasks may be claimed again."""
        delays = self._delays
        while delays and (now is None or delays[0][0] <= now):
            at, task = heapq.heappop(delays)
            if self.delayed.get(task) != at:
                continue  # claimed since (by a farmer whose clock is ahead)
            del self.delayed[task]
            if self.status[task] == Status.PENDING and task < self._cursor:
                heapq.heappush(self._heap, task)

    def _set(self, task: int, status: int) -> None:
        self.changes += 1
        self.counts[self.status[task]] -= 1
        self.counts[status] += 1
        self.status[task] = status
