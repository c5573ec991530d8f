"""The timeline's counter track: how many tasks run on each host/rank, as absolute values.

A trace counter event (``"ph": "C"``) sets a value; it cannot add to the one before. So the
number of tasks running on a host/rank at a moment must be known when its event is written,
and the journal does not list runs in time order: an end record carries its run's start and end,
but it is written when the run ends, after the ends of shorter runs that started later; and a run
that started in one journal generation may end in a much later one.

:class:`RunningCounter` sees the records in journal order and turns each run into a +1 at its
start and a -1 at its end, per host/rank. A long run is counted from its ``start`` record (a
worker reports every run that lasts longer than about a second), so its +1 is known while it
runs, in whichever generation it ends; a short run is known from its end record alone. The
changes wait in a small buffer and are written, in time order, once they are older than
:data:`LATENESS` behind the newest time seen on that host/rank: by then every record of an
earlier moment has arrived (the records of one host/rank come from one farmer, on one clock,
in the order it saw them, at most a few seconds apart), and at most :data:`MAX_WAITING` of them
wait. A change that still comes later than that (a worker that held its records for long) is
written at the first moment not yet written, so the track stays consistent (never below 0,
never above the truth) and is late by that much.

What is left over at the end of a generation (the buffer, the long runs still open, the value
reached) is the counter's :meth:`state`, which the next generation's part starts from: each
compacted generation's counter events are made once, like its complete events. A farmer that
left or was found dead ends its open runs at the time of its ``bye`` or ``dead`` record (the
latter may be after the runs really ended). The live generation is flushed whole at the end.
"""

from __future__ import annotations

import zlib
from typing import Any

from mpifarmer.scheduling import records as rec

__all__ = ["COUNTER_NAME", "LATENESS", "MAX_WAITING", "RunningCounter", "process_id", "run_span_us"]

#: How far behind the newest time of a host/rank a change is written, in seconds.
LATENESS = 5.0
#: At most this many changes of one host/rank wait: beyond it the oldest are written even if less
#: than LATENESS old (at thousands of tasks a second, a few seconds are plenty of changes, and the
#: records of one host/rank are then much less than a second apart).
MAX_WAITING = 20_000
#: The counter track's name in the trace (its series is ``tasks``).
COUNTER_NAME = "running"
_LATENESS_US = round(LATENESS * 1e6)


def process_id(host: str, rank: int) -> int:
    """The trace process of a host/rank: a hash of its name, so that events written at different
    times (one part per compacted generation) agree on it without a shared table."""
    return zlib.crc32(f"{host}\0{rank}".encode()) & 0x7FFFFFFF


def run_span_us(run: dict[str, Any]) -> tuple[int, int]:
    """(start, end) of an end record's run in whole microseconds, as its complete event has them."""
    t0 = run["t0"]
    start = round(t0 * 1e6)
    return start, start + max(0, round((run["t1"] - t0) * 1e6))


class _Track:
    """One host/rank: the value written last, when, the newest time seen, the changes not yet written."""

    __slots__ = ("value", "written", "newest", "changes")

    def __init__(self, value: int = 0, written: int | None = None, newest: int = 0,
                 changes: list[tuple[int, int]] | None = None) -> None:
        self.value, self.written, self.newest = value, written, newest
        self.changes: list[tuple[int, int]] = changes if changes is not None else []

    def add(self, ts: int, delta: int) -> None:
        self.changes.append((ts, delta))
        self.newest = max(self.newest, ts)

    def take(self, pid: int, until: int | None) -> list[dict[str, Any]]:
        """Counter events for the changes at or before ``until`` (None: all), in time order."""
        if not self.changes:
            return []
        self.changes.sort()
        cut = len(self.changes) if until is None else _count_until(self.changes, until)
        due, self.changes = self.changes[:cut], self.changes[cut:]
        events: list[dict[str, Any]] = []
        i = 0
        while i < len(due):
            ts = due[i][0] if self.written is None else max(due[i][0], self.written + 1)
            value = self.value
            # Every change at this moment (and every late one pulled forward to it) at once.
            while i < len(due) and (due[i][0] <= ts):
                value += due[i][1]
                i += 1
            if value != self.value or self.written is None:
                events.append({"name": COUNTER_NAME, "ph": "C", "pid": pid, "ts": ts, "args": {"tasks": value}})
                self.value, self.written = value, ts
        return events


def _count_until(changes: list[tuple[int, int]], until: int) -> int:
    """How many of the sorted ``changes`` are at or before ``until`` (a bisection)."""
    low, high = 0, len(changes)
    while low < high:
        middle = (low + high) // 2
        if changes[middle][0] <= until:
            low = middle + 1
        else:
            high = middle
    return low


class RunningCounter:
    """Counts the tasks running per host/rank from journal records (see the module docstring).

    Feed it records in journal order with :meth:`feed`; take the counter events that are due
    with :meth:`due` as often as convenient, and the rest with :meth:`flush` at the very end."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self._tracks: dict[int, _Track] = {}
        #: Runs counted from their start record and not yet ended: (farmer, task) -> (pid, start).
        self._open: dict[tuple[str, int], tuple[int, int]] = {}
        if state:
            self._load(state)

    def feed(self, record: dict[str, Any]) -> None:
        kind = record.get("e")
        if kind == rec.END:
            if record.get("t0") is None:  # PyTaskFarmer's ends, taken over: no times
                return
            pid = process_id(record.get("host", "?"), int(record.get("rank", 0)))
            start, end = run_span_us(record)
            track = self._track(pid)
            if self._open.pop((record.get("f", ""), int(record["id"])), None) is None:
                track.add(start, 1)
            track.add(end, -1)
        elif kind == rec.START:
            key = (record.get("f", ""), int(record["id"]))
            if key not in self._open:
                pid = process_id(record.get("host", "?"), int(record.get("rank", 0)))
                start = round(float(record["t"]) * 1e6)
                self._open[key] = (pid, start)
                self._track(pid).add(start, 1)
        elif kind in (rec.BYE, rec.DEAD) and record.get("t") is not None:
            gone = [key for key in self._open if key[0] == record.get("f")]
            for key in gone:
                pid, start = self._open.pop(key)
                # Another farmer's clock may say dead before the start: never end a run before it began.
                self._track(pid).add(max(start, round(float(record["t"]) * 1e6)), -1)

    def due(self) -> list[dict[str, Any]]:
        """The counter events that no record still to come can change."""
        events: list[dict[str, Any]] = []
        for pid, track in self._tracks.items():
            until = track.newest - _LATENESS_US
            if len(track.changes) > MAX_WAITING:
                track.changes.sort()
                until = max(until, track.changes[-MAX_WAITING - 1][0])
            events.extend(track.take(pid, until))
        return events

    def flush(self) -> list[dict[str, Any]]:
        """Every change not yet written (runs still open stay counted: they are running)."""
        events: list[dict[str, Any]] = []
        for pid, track in self._tracks.items():
            events.extend(track.take(pid, None))
        return events

    def state(self) -> dict[str, Any]:
        """What a later generation's counter starts from, as JSON-able data."""
        return {
            "tracks": {str(pid): [t.value, t.written, t.newest, [list(c) for c in t.changes]]
                       for pid, t in self._tracks.items()},
            "open": [[fid, task, pid, start] for (fid, task), (pid, start) in self._open.items()],
        }

    def _load(self, state: dict[str, Any]) -> None:
        for pid, (value, written, newest, changes) in state.get("tracks", {}).items():
            self._tracks[int(pid)] = _Track(int(value), None if written is None else int(written), int(newest),
                                            [(int(ts), int(delta)) for ts, delta in changes])
        for fid, task, pid, start in state.get("open", []):
            self._open[(str(fid), int(task))] = (int(pid), int(start))

    def _track(self, pid: int) -> _Track:
        track = self._tracks.get(pid)
        if track is None:
            track = self._tracks[pid] = _Track()
        return track
