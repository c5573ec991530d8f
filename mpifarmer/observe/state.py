"""The state of a work directory as an onlooker sees it: read-only, lock-free, quick.

:class:`FarmReader` builds the same :class:`~mpifarmer.scheduling.ledger.Ledger` every farmer
builds, from the snapshot of the live journal generation and the records appended since, and
keeps up with new records at each :meth:`FarmReader.refresh` (``status --watch``). It opens the
live journal first and takes the generation from its header, as
:func:`mpifarmer.store.history.journals` does; if a compaction removes that generation's
snapshot before it is read, it starts again.

Replaying is fast because most lines are starts and ends, and those are not parsed as JSON: a
regular expression takes the few fields the ledger needs from the fixed order in which
:func:`mpifarmer.scheduling.records.end` and ``start`` write them. A line the expressions do not
fit (another writer's order, a retrying end with its ``at``) is parsed as JSON, so the result is
the same either way. A line that does not end with ``}`` is torn (see the journal) and skipped,
as every farmer skips it.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, BinaryIO

from mpifarmer.errors import WorkDirError
from mpifarmer.observe.tail import failed_runs
from mpifarmer.scheduling import records as rec
from mpifarmer.scheduling.ledger import Ledger
from mpifarmer.store.journal import read_header
from mpifarmer.store.snapshot import SnapshotError, read_snapshot
from mpifarmer.store.workdir import WorkDir

__all__ = ["DONE_STATES", "FarmReader", "replay_lines", "start_of"]

#: End states that make a task done (its run counts for the rate).
DONE_STATES = (rec.FINISHED, rec.FAILED)

_END = re.compile(rb'\{"e":"end","f":"([^"\\]*)","id":(\d+),"st":"(finished|failed|interrupted)",'
                  rb'"rc":[^,]*,"t0":[^,]*,"t1":(-?[0-9][0-9.eE+-]*)[,}]')
_START = re.compile(rb'\{"e":"start","f":"([^"\\]*)","id":(\d+),')
_END_PREFIX, _START_PREFIX = b'{"e":"end"', b'{"e":"start"'
_CHUNK = 16 << 20
#: How many times a load starts again because compactions kept replacing the journal meanwhile.
_TRIES = 5


def replay_lines(ledger: Ledger, lines: list[bytes], done_ends: list[float],
                 failures: dict[int, bytes]) -> None:
    """Apply whole journal lines to ``ledger``; add the end time of every run that made its task
    done to ``done_ends`` and each failed run's line to ``failures`` (by task, the latest wins).

    Start records are kept in the ledger with their line under ``raw`` instead of their fields:
    only the few still running are ever looked at (:func:`start_of`)."""
    apply, match_end, match_start = ledger.apply, _END.match, _START.match
    names: dict[bytes, str] = {}  # farmer IDs, decoded once
    add_end = done_ends.append
    finished, failed = rec.FINISHED, rec.FAILED
    for line in lines:
        if not line.endswith(b"}"):
            continue  # torn, or empty
        found = match_end(line) if line.startswith(_END_PREFIX) else None
        if found is not None:  # the common case, kept short
            fid, task, state, t1 = found.groups()
            name = names.get(fid) or names.setdefault(fid, fid.decode())
            st = _STATES[state]
            try:
                apply({"e": rec.END, "f": name, "id": int(task), "st": st})
            except _DAMAGED:
                continue
            if st is finished or st is failed:
                add_end(float(t1))
                if st is failed:
                    failures[int(task)] = line
            continue
        record: dict[str, Any] | None = None
        if line.startswith(_START_PREFIX) and (found := match_start(line)) is not None:
            fid = found.group(1)
            name = names.get(fid) or names.setdefault(fid, fid.decode())
            record = {"e": rec.START, "f": name, "id": int(found.group(2)), "raw": line}
        else:
            record = _parse(line)
            if record is None:
                continue
        try:
            apply(record)
        except _DAMAGED:
            continue  # a record no farmer could have applied either
        if record.get("e") != rec.END:
            continue
        st, end_time = record.get("st"), record.get("t1")
        if st in DONE_STATES and isinstance(end_time, (int, float)):
            add_end(float(end_time))
        if st == failed:
            failures[record["id"]] = line


#: What applying a damaged record raises (a farmer replaying it would fail the same way).
_DAMAGED = (KeyError, TypeError, ValueError, IndexError, AttributeError)
_STATES = {state.encode(): state for state in (rec.FINISHED, rec.FAILED, rec.INTERRUPTED)}


def start_of(record: dict[str, Any]) -> dict[str, Any]:
    """A start record's fields, whether replayed here (its line kept) or by a farmer."""
    raw = record.get("raw")
    if raw is None:
        return record
    parsed = _parse(raw)
    return parsed if parsed is not None else record


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


class FarmReader:
    """A work directory's ledger, kept up to date by :meth:`refresh`; writes nothing, locks nothing.

    After a refresh: ``ledger``; ``generation`` of the live journal; ``done_ends``, the end times
    of the runs in the live generation that made their task done (in journal order); ``failures``,
    the line of the latest failed run of each task in the live generation."""

    def __init__(self, workdir: WorkDir) -> None:
        self.workdir = workdir
        self.ledger = Ledger()
        self.generation = 0
        self.done_ends: list[float] = []
        self.failures: dict[int, bytes] = {}
        self._stream: BinaryIO | None = None
        self._offset = 0
        self._rest = b""
        self._old_failures: dict[int, dict[int, dict[str, Any]]] = {}  # compacted generations never change

    def forget_ends_before(self, moment: float) -> None:
        """Drop the end times before ``moment`` (no window reaches back that far any more), so that
        a long ``--watch`` keeps only the recent ones."""
        self.done_ends = [t for t in self.done_ends if t >= moment]

    def history_failures(self, generation: int, wanted: set[int]) -> dict[int, dict[str, Any]]:
        """The last failed run, in compacted generation ``generation``, of each task in ``wanted``."""
        if generation not in self._old_failures:
            self._old_failures[generation] = failed_runs(self.workdir.old_journal(generation))
        return {task: record for task, record in self._old_failures[generation].items() if task in wanted}

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def refresh(self) -> None:
        """Read what was appended since the last refresh; start over on a new generation."""
        if self._stream is not None and self._same_journal():
            self._read_on()
            return
        self.close()
        self._load()

    def _same_journal(self) -> bool:
        assert self._stream is not None
        try:
            now = os.stat(self.workdir.journal)
        except FileNotFoundError:
            return True  # being replaced right now (never absent for long): read on in the old one
        then = os.fstat(self._stream.fileno())
        return (now.st_ino, now.st_dev) == (then.st_ino, then.st_dev)

    def _load(self) -> None:
        for _ in range(_TRIES):
            try:
                stream: BinaryIO = self.workdir.journal.open("rb")
            except FileNotFoundError:
                raise WorkDirError(self.workdir.root, "is not a work directory (it has no journal.jsonl); give the "
                                   "task list of a farm that has run, or its -w/--workdir") from None
            try:
                generation, start = read_header(stream.read(512))
            except ValueError:  # a header being written: a compaction right now
                stream.close()
                continue
            ledger = self._base(generation)
            if ledger is None:
                stream.close()
                continue  # compacted again meanwhile: its snapshot is gone
            self.ledger, self.generation, self._stream = ledger, generation, stream
            self._offset, self._rest = start, b""
            self.done_ends, self.failures = [], {}
            self._read_on()
            return
        raise WorkDirError(self.workdir.root, "its journal was compacted again and again while it was read; "
                           "try again")

    def _base(self, generation: int) -> Ledger | None:
        """The ledger as of the start of ``generation``: its snapshot, or a replay of the history
        if the snapshot is damaged; None if the snapshot is gone (a compaction since)."""
        if generation == 0:
            return Ledger()
        path = self.workdir.snapshot(generation)
        try:
            return read_snapshot(path, generation)
        except SnapshotError:
            if not path.exists():
                return None
        ledger = Ledger()
        for old in range(generation):
            try:
                with self.workdir.old_journal(old).open("rb") as stream:
                    _, first = read_header(stream.read(512))
                    stream.seek(first)
                    rest = b""
                    while data := stream.read(_CHUNK):
                        data = rest + data
                        cut = data.rfind(b"\n") + 1
                        rest = data[cut:]
                        replay_lines(ledger, data[:cut].split(b"\n"), [], {})
            except FileNotFoundError:
                raise WorkDirError(self.workdir.root, f"the snapshot of journal generation {generation} is damaged and "
                                   f"{self.workdir.old_journal(old)} is missing, so its state cannot be read") from None
        return ledger

    def _read_on(self) -> None:
        assert self._stream is not None
        stream = self._stream
        stream.seek(self._offset)
        while data := stream.read(_CHUNK):
            self._offset += len(data)
            data = self._rest + data
            cut = data.rfind(b"\n") + 1
            self._rest = data[cut:]  # a line still being written: read again with the rest of it
            replay_lines(self.ledger, data[:cut].split(b"\n"), self.done_ends, self.failures)
