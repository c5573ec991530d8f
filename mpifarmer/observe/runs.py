"""What a work directory recorded of its runs and pools, read once and kept compact, for the report.

From the journal (every generation, through :mod:`mpifarmer.store.history`, read-only and
without the lock): each run's start, end and slots, per host/rank, in arrays (about 20 bytes a
run, no Python object per run or task); the outcome of every task in a bytearray; the sessions
(one per rank of each farmer, from its ``hello`` to its ``bye`` or ``dead``, with the slots of
its pool). A work directory PyTaskFarmer made has no journal: its ``timeline.json`` (a list of
complete events, one per run: the farmer's pid as process, the worker's pid as thread, the
command as name) and its ``finished``, ``failed`` and ``toprocess`` files say the same, less
exit codes.
"""

from __future__ import annotations

import json
import math
import signal
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mpifarmer.errors import WorkDirError
from mpifarmer.observe.usage import Session
from mpifarmer.scheduling import records as rec
from mpifarmer.scheduling.capacity import request_of
from mpifarmer.store.history import all_records
from mpifarmer.store.journal import read_header
from mpifarmer.store.workdir import WorkDir

__all__ = ["Farm", "Place", "read_farm"]

_FINISHED, _FAILED = 1, 2  # a task's outcome in Farm.outcome (0: neither yet)
_RETRIED, _RETRIED_FINISHED = 1, 2  # flags in Farm.retried
_WANTED = tuple(f'"e":"{kind}"'.encode() for kind in (rec.ADD, rec.HELLO, rec.END, rec.RETRY, rec.BYE, rec.DEAD))


@dataclass
class Place:
    """One host/rank (a PyTaskFarmer farmer: its pid): its runs and the pools that were there."""

    label: str
    t0: array = field(default_factory=lambda: array("d"))
    t1: array = field(default_factory=lambda: array("d"))
    units: array = field(default_factory=lambda: array("I"))
    sessions: list[Session] = field(default_factory=list)

    def add(self, t0: float, t1: float, units: int) -> None:
        self.t0.append(t0)
        self.t1.append(max(t0, t1))
        self.units.append(units)


@dataclass
class Farm:
    """Everything the report's figures are computed from."""

    source: str  # where it was read from, for the report's first line
    tasks: int = 0
    outcome: bytearray = field(default_factory=bytearray)
    runs: Counter = field(default_factory=Counter)  # by end state
    finished_durations: array = field(default_factory=lambda: array("d"))
    failed_durations: array = field(default_factory=lambda: array("d"))  # failed and retrying runs
    #: (exit code or signal, reason) -> [runs that failed for good, runs that were retried]
    failures: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    retried: bytearray = field(default_factory=bytearray)
    untimed: int = 0  # ends without times: tasks PyTaskFarmer did before mpifarmer took over
    places: dict[tuple[str, int], Place] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the figures could not know, in words

    def count(self, outcome: int) -> int:
        return self.outcome.count(outcome)

    @property
    def finished(self) -> int:
        return self.count(_FINISHED)

    @property
    def failed(self) -> int:
        return self.count(_FAILED)

    @property
    def tasks_retried(self) -> int:
        return self.tasks - self.retried.count(0)

    @property
    def retried_then_finished(self) -> int:
        return self.retried.count(_RETRIED | _RETRIED_FINISHED)

    def place(self, key: tuple[str, int], label: str) -> Place:
        place = self.places.get(key)
        if place is None:
            place = self.places[key] = Place(label)
        return place


def read_farm(workdir: WorkDir) -> Farm:
    """The farm of ``workdir``, from its journal, else from PyTaskFarmer's files; a directory with
    neither is not a work directory (:class:`WorkDirError`)."""
    if workdir.journal.exists():
        return _from_journal(workdir)
    if workdir.timeline.exists() or workdir.finished.exists() or workdir.toprocess.exists():
        return _from_pytaskfarmer(workdir)
    if not workdir.root.is_dir():
        raise WorkDirError(workdir.root, "does not exist; give the task list the farm ran or -w/--workdir DIR")
    raise WorkDirError(workdir.root, "is not a work directory (no journal.jsonl, nor PyTaskFarmer's files); "
                       "give the task list the farm ran or -w/--workdir DIR")


def _code(record: dict[str, Any]) -> str:
    if record.get("rc") is not None:
        return f"exit {record['rc']}"
    if record.get("sig") is not None:
        try:
            return f"signal {signal.Signals(record['sig']).name}"
        except ValueError:
            return f"signal {record['sig']}"
    return "?"


class _Pool:
    """One rank of one farmer, while its records are read: when it came and left, its slots."""

    __slots__ = ("host", "start", "end", "slots", "seen")

    def __init__(self, host: str, start: float, slots: int | None) -> None:
        self.host, self.start, self.end, self.slots, self.seen = host, start, math.inf, slots, 0


def _from_journal(workdir: WorkDir) -> Farm:
    farm = Farm(f"the journal of {workdir.root}")
    pools: dict[tuple[str, int], _Pool] = {}
    ranks_of: dict[str, int] = {}
    for record in all_records(workdir, _WANTED):
        kind = record.get("e")
        if kind == rec.END:
            _on_end(farm, pools, record)
        elif kind == rec.ADD:
            farm.tasks = max(farm.tasks, int(record["first"]) + len(record["lines"]))
            _grow(farm)
        elif kind == rec.HELLO:
            fid, ranks = record["f"], max(1, int(record.get("ranks", 1)))
            ranks_of[fid] = ranks
            slots = record.get("slots")
            for rank in range(ranks):
                # Other ranks' hosts are known from their runs' end records only.
                pools[fid, rank] = _Pool(record.get("host", "?") if rank == 0 else "?", float(record.get("t", 0.0)),
                                         int(slots) if isinstance(slots, int) else None)
        elif kind in (rec.BYE, rec.DEAD):
            for rank in range(ranks_of.get(record.get("f", ""), 0)):
                pool = pools.get((record["f"], rank))
                if pool is not None and pool.end == math.inf:
                    pool.end = float(record.get("t", math.inf))
        elif kind == rec.RETRY:
            for task in record.get("ids", []):
                if task < len(farm.outcome) and farm.outcome[task] == _FAILED:
                    farm.outcome[task] = 0
    guessed = 0
    for (_, rank), pool in pools.items():
        slots = pool.slots
        if slots is None:
            guessed += 1
            slots = pool.seen
        farm.place((pool.host, rank), _label(pool.host, rank)).sessions.append(Session(pool.start, pool.end, slots))
    if guessed:
        farm.notes.append(f"{guessed} pool(s) of farmers older than the slots record: their slots are taken as the "
                          "highest slot their runs used + 1")
    missing = [g for g in range(_generation(workdir)) if not workdir.old_journal(g).exists()]
    if missing:
        farm.notes.append(f"the history of journal generation(s) {', '.join(map(str, missing))} is missing: "
                          "their runs are not counted")
    return farm


def _label(host: str, rank: int) -> str:
    return f"{host} rank {rank}"


def _generation(workdir: WorkDir) -> int:
    try:
        with workdir.journal.open("rb") as stream:
            return read_header(stream.read(512))[0]
    except (OSError, ValueError):
        return 0


def _grow(farm: Farm) -> None:
    missing = farm.tasks - len(farm.outcome)
    if missing > 0:
        farm.outcome.extend(bytes(missing))
        farm.retried.extend(bytes(missing))


def _on_end(farm: Farm, pools: dict[tuple[str, int], _Pool], record: dict[str, Any]) -> None:
    """One end record (called for every run: kept lean)."""
    task, state = int(record["id"]), record.get("st")
    if task >= farm.tasks:  # an end before its add: cannot be, but never index past the arrays
        farm.tasks = task + 1
        _grow(farm)
    farm.runs[state] += 1
    if state == rec.FINISHED:
        farm.outcome[task] = _FINISHED
        if farm.retried[task]:
            farm.retried[task] |= _RETRIED_FINISHED
    elif state == rec.FAILED or state == rec.RETRYING:
        if state == rec.FAILED:
            if farm.outcome[task] != _FINISHED:
                farm.outcome[task] = _FAILED
        else:
            farm.retried[task] |= _RETRIED
        counts = farm.failures.setdefault((_code(record), record.get("why") or "-"), [0, 0])
        counts[state == rec.RETRYING] += 1
    t0 = record.get("t0")
    if t0 is None:
        farm.untimed += 1
        return
    t1 = record["t1"]
    if state == rec.FINISHED:
        farm.finished_durations.append(t1 - t0)
    elif state == rec.FAILED or state == rec.RETRYING:
        farm.failed_durations.append(t1 - t0)
    attrs = record.get("attrs")
    units = 1
    if attrs:
        asked = request_of(attrs if isinstance(attrs, dict) else {}).get("slots", 1)
        units = asked if isinstance(asked, int) and asked >= 0 else 1
    host, rank = record.get("host", "?"), record.get("rank", 0)
    key = (host, rank)
    place = farm.places.get(key)
    if place is None:
        place = farm.places[key] = Place(_label(host, rank))
    place.t0.append(t0)
    place.t1.append(t1 if t1 > t0 else t0)
    place.units.append(units)
    pool = pools.get((record.get("f", ""), rank))
    if pool is not None and (pool.slots is None or pool.host == "?"):
        if pool.host == "?":
            pool.host = host
        pool.seen = max(pool.seen, int(record.get("slot", 0)) + 1, units)


def _lines(path: Any) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []


def _from_pytaskfarmer(workdir: WorkDir) -> Farm:
    farm = Farm(f"PyTaskFarmer's files in {workdir.root} (no journal)")
    done: dict[str, dict[int, str]] = {}
    for name, path in (("finished", workdir.finished), ("failed", workdir.failed), ("toprocess", workdir.toprocess)):
        rows = {}
        for row in _lines(path):
            task, _, line = row.partition(" ")
            if task.isdigit():
                rows[int(task)] = line.strip()
        done[name] = rows
    ids = set().union(*done.values())
    farm.tasks = max(ids) + 1 if ids else 0
    _grow(farm)
    for task in done["failed"]:
        farm.outcome[task] = _FAILED
    for task in done["finished"]:
        farm.outcome[task] = _FINISHED
    failed_lines = set(done["failed"].values()) - set(done["finished"].values())
    farm.failures = {("?", "-"): [len(done["failed"]), 0]} if done["failed"] else {}
    events = _pytaskfarmer_events(workdir)
    threads: dict[int, set[int]] = {}
    for event in events:
        t0 = float(event["ts"]) / 1e6
        t1 = t0 + float(event.get("dur", 0)) / 1e6
        failed = event.get("name") in failed_lines
        farm.runs[rec.FAILED if failed else rec.FINISHED] += 1
        (farm.failed_durations if failed else farm.finished_durations).append(t1 - t0)
        pid = int(event.get("pid", 0))
        threads.setdefault(pid, set()).add(int(event.get("tid", 0)))
        farm.place(("pytaskfarmer", pid), f"PyTaskFarmer pid {pid}").add(t0, t1, 1)
    for (_, pid), place in farm.places.items():
        # PyTaskFarmer records no farmer's start or end, nor its --proc: its pool's workers are the
        # threads its runs name, and it was there from its first start to its last end.
        place.sessions.append(Session(min(place.t0), max(place.t1), len(threads[pid])))
    farm.notes.append("PyTaskFarmer records no exit codes, no farmer's start and end and no --proc: a pool's "
                      "slots are the worker processes its runs name, a run's outcome is its command's")
    return farm


def _pytaskfarmer_events(workdir: WorkDir) -> list[dict[str, Any]]:
    """PyTaskFarmer's timeline: a JSON list of complete events (also accepted: an object with
    ``traceEvents``). A file that does not parse is an error naming it."""
    try:
        data = json.loads(workdir.timeline.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except ValueError as error:
        raise WorkDirError(workdir.root, f"its timeline.json does not parse ({error}); without a journal it is "
                           "the only record of the runs' times") from None
    if isinstance(data, dict):
        data = data.get("traceEvents", [])
    if not isinstance(data, list):
        raise WorkDirError(workdir.root, "its timeline.json is not a list of trace events")
    return [event for event in data if isinstance(event, dict) and event.get("ph") == "X"
            and isinstance(event.get("ts"), int | float)]
