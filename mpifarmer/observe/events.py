"""``mpifarmer events``: the work directory's history as a stream of events, schema version 1.

The journal's records are mpifarmer's own, free to change; events are the interface for
monitoring, documented in the README and versioned by ``"v"``. Every event is one JSON object
with ``v``, ``event`` and ``time`` (Unix seconds, or null where the journal records no time:
task-added, task-claimed, task-released, task-reset, and PyTaskFarmer's results taken over):

==================  ==========================================================================
``task-added``      ``task``, ``command`` (and ``attrs``, the task's attributes, if any)
``task-claimed``    ``task``, ``farmer``
``task-started``    ``task``, ``farmer``, ``host``, ``rank``, ``slot``, ``pid``
``task-ended``      ``task``, ``farmer``, ``outcome`` (finished, failed, interrupted, retrying),
                    ``exit_code``, ``signal``, ``reason``, ``attempt``, ``started``,
                    ``duration``, ``host``, ``rank``, ``slot``, ``retry_at``
``task-released``   ``task``, ``farmer``: handed back unstarted (pending again)
``task-reset``      ``task``: a failed task made pending again by ``--retry-failed``
``farmer-joined``   ``farmer``, ``host``, ``pid``, ``job``, ``restart``, ``ranks``, ``slots``
``farmer-left``     ``farmer``
``farmer-dead``     ``farmer``, ``by`` (the farmer that found it dead), ``reason``
==================  ==========================================================================

:class:`EventFollower` reads the records of every journal generation in order, and follows the
live journal across compactions: a compaction links the journal into ``history/`` and renames a
new generation over it, so the follower, which keeps the old file open, reads that to its end
once it sees the name point elsewhere, and goes on with the next generation (from the history
if several compactions happened meanwhile).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from mpifarmer.errors import WorkDirError
from mpifarmer.scheduling import records as rec
from mpifarmer.store.journal import read_header
from mpifarmer.store.workdir import WorkDir

__all__ = ["VERSION", "EventFollower", "events_of"]

VERSION = 1
_CHUNK = 4 << 20


def events_of(record: dict[str, Any], known_tasks: int = 0) -> Iterator[dict[str, Any]]:
    """The events of one journal record. ``known_tasks``: tasks added so far, so that a second
    farmer's add of the same appended lines (which adds nothing) adds no event."""
    kind = record.get("e")
    fid = record.get("f")
    if kind == rec.ADD:
        first, attrs = int(record["first"]), record.get("attrs") or {}
        for offset, line in enumerate(record["lines"]):
            if first + offset >= known_tasks:
                event = _event("task-added", None, task=first + offset, command=line)
                if str(offset) in attrs:
                    event["attrs"] = attrs[str(offset)]
                yield event
    elif kind in (rec.CLAIM, rec.RELEASE, rec.RETRY):
        name = {rec.CLAIM: "task-claimed", rec.RELEASE: "task-released", rec.RETRY: "task-reset"}[kind]
        for task in record["ids"]:
            yield _event(name, None, task=task, **({"farmer": fid} if kind != rec.RETRY else {}))
    elif kind == rec.START:
        yield _event("task-started", record.get("t"), task=record["id"], farmer=fid, host=record.get("host"),
                     rank=record.get("rank"), slot=record.get("slot"), pid=record.get("pid"))
    elif kind == rec.END:
        t0, t1 = record.get("t0"), record.get("t1")
        duration = round(t1 - t0, 6) if isinstance(t0, (int, float)) and isinstance(t1, (int, float)) else None
        yield _event("task-ended", t1, task=record["id"], farmer=fid, outcome=record.get("st"),
                     exit_code=record.get("rc"), signal=record.get("sig"), reason=record.get("why"),
                     attempt=record.get("att"), started=t0, duration=duration, host=record.get("host"),
                     rank=record.get("rank"), slot=record.get("slot"), retry_at=record.get("at"))
    elif kind == rec.HELLO:
        yield _event("farmer-joined", record.get("t"), farmer=fid, host=record.get("host"), pid=record.get("pid"),
                     job=record.get("job"), restart=record.get("restart", 0), ranks=record.get("ranks", 1),
                     slots=record.get("slots"))
    elif kind == rec.BYE:
        yield _event("farmer-left", record.get("t"), farmer=fid)
    elif kind == rec.DEAD:
        yield _event("farmer-dead", record.get("t"), farmer=fid, by=record.get("by"), reason=record.get("why"))


def _event(name: str, time: Any, **fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "event": name, "time": time, **fields}


class EventFollower:
    """Reads events from where it stands: every generation from the first (``from_start``), or
    from the end of the live journal as it is now."""

    def __init__(self, workdir: WorkDir, from_start: bool = True) -> None:
        self.workdir = workdir
        self.known_tasks = 0
        try:
            live: BinaryIO = workdir.journal.open("rb")
        except FileNotFoundError:
            raise WorkDirError(workdir.root, "is not a work directory (it has no journal.jsonl); give the task "
                               "list of a farm that has run, or its -w/--workdir") from None
        self.live_generation, start = read_header(live.read(512))
        self._rest = b""
        if from_start:
            self.generation = -1
            self._stream: BinaryIO | None = None
            self._live: BinaryIO | None = live
            self._offset = 0
            self._next_generation()
        else:
            from mpifarmer.tasklog import task_count

            self.known_tasks = task_count(workdir)
            self.generation, self._stream, self._live = self.live_generation, live, None
            live.seek(start)
            data = live.read()  # up to the last whole line: a line being written is read whole later
            self._offset = start + data.rfind(b"\n") + 1

    def close(self) -> None:
        for stream in (self._stream, self._live):
            if stream is not None:
                stream.close()
        self._stream = self._live = None

    def read(self) -> list[dict[str, Any]]:
        """Every event recorded since the last call (whole records only)."""
        events: list[dict[str, Any]] = []
        while self._stream is not None:
            replaced = self.generation < self.live_generation or self._replaced()
            self._drain(events)
            if not replaced:
                break
            self._next_generation()
        return events

    def _replaced(self) -> bool:
        """Whether the journal's name now points to another file than the open live one."""
        assert self._stream is not None
        try:
            now = os.stat(self.workdir.journal)
        except FileNotFoundError:
            return False  # renamed over right now: looked at again next time
        then = os.fstat(self._stream.fileno())
        return (now.st_ino, now.st_dev) != (then.st_ino, then.st_dev)

    def _drain(self, events: list[dict[str, Any]]) -> None:
        assert self._stream is not None
        self._stream.seek(self._offset)
        while data := self._stream.read(_CHUNK):
            self._offset += len(data)
            data = self._rest + data
            cut = data.rfind(b"\n") + 1
            self._rest = data[cut:]
            for line in data[:cut].split(b"\n"):
                if not line.endswith(b"}"):
                    continue  # torn or empty
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(record, dict):
                    continue
                try:
                    found = list(events_of(record, self.known_tasks))
                except (KeyError, TypeError, ValueError):
                    continue
                if record.get("e") == rec.ADD:
                    self.known_tasks = max(self.known_tasks, int(record["first"]) + len(record["lines"]))
                events.extend(found)

    def _next_generation(self) -> None:
        """Go on with the generation after the current one: from the history, or the live journal."""
        if self._stream is not None and self._stream is not self._live:
            self._stream.close()
        self._stream, self._rest = None, b""
        while self._stream is None:
            self.generation += 1
            if self._live is None or self.generation > self.live_generation:
                self._reopen_live()
            if self.generation == self.live_generation:
                assert self._live is not None
                self._stream, self._live = self._live, None
                self._live_stream_only()
                return
            try:
                stream: BinaryIO = self.workdir.old_journal(self.generation).open("rb")
            except FileNotFoundError:
                continue  # pruned by hand: its events are gone
            _, self._offset = read_header(stream.read(512))
            self._stream = stream

    def _reopen_live(self) -> None:
        if self._live is not None:
            self._live.close()
        self._live = self.workdir.journal.open("rb")
        self.live_generation, _ = read_header(self._live.read(512))

    def _live_stream_only(self) -> None:
        assert self._stream is not None
        self._stream.seek(0)
        _, self._offset = read_header(self._stream.read(512))
