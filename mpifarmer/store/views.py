"""Human-readable views of the ledger: PyTaskFarmer's files and the Perfetto timeline.

``toprocess``, ``running``, ``finished`` and ``failed`` hold one ``ID LINE`` line per task;
``timeline.json`` is Chrome trace-event JSON with one complete event (``"ph": "X"``) per task
run, host and rank as the process, worker slot as the thread, its args the task's ID, how the run
ended (``status``, exit code ``rc``, ``signal``, ``reason``) and which ``attempt`` it was; and a
counter track (``"ph": "C"``) per host and rank with the number of tasks running there.

Two ways of keeping them: :func:`write_views` rewrites files whole and atomically (temporary file
and rename), so each is valid at every moment, at a cost of O(tasks); :func:`append_lines` adds
the tasks that just ended to ``finished`` and ``failed``, at a cost of O(ended), so that those
two are never far behind however long the list is. The timeline is streamed from the journal's
records (:func:`write_timeline`): no run is held in memory, only the counter's few seconds of
changes not yet written and the long runs still running.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from mpifarmer.scheduling import records as rec
from mpifarmer.scheduling.ledger import Ledger, Status
from mpifarmer.scheduling.texts import Texts
from mpifarmer.store.counter import RunningCounter, process_id, run_span_us
from mpifarmer.store.history import batches, journals
from mpifarmer.store.workdir import WorkDir, atomic_write

__all__ = ["TASK_VIEWS", "Snapshot", "append_lines", "timeline_events", "write_timeline", "write_views"]

#: Every task view, by the status it lists.
TASK_VIEWS = (Status.PENDING, Status.CLAIMED, Status.FINISHED, Status.FAILED)


@dataclass(frozen=True)
class Snapshot:
    """What the task views show, copied from the ledger so that they can be written while it
    changes. ``lines`` is the ledger's own: it only grows, and only the first ``len(status)``
    entries are read."""

    lines: Texts
    status: bytes

    @classmethod
    def of(cls, ledger: Ledger) -> Snapshot:
        return cls(ledger.lines, bytes(ledger.status))


def view_path(workdir: WorkDir, status: int) -> Path:
    return {Status.PENDING: workdir.toprocess, Status.CLAIMED: workdir.running,
            Status.FINISHED: workdir.finished, Status.FAILED: workdir.failed}[status]


def write_views(source: Ledger | Snapshot, workdir: WorkDir, statuses: Iterable[int] = TASK_VIEWS,
                timeline: bool = True) -> None:
    """Rewrite the views of ``statuses`` (and the timeline) from a ledger or a snapshot of one."""
    snapshot = Snapshot.of(source) if isinstance(source, Ledger) else source
    for status in statuses:
        with atomic_write(view_path(workdir, status)) as stream:
            stream.writelines(_rows(snapshot, status))
    if timeline:
        write_timeline(workdir)


def _rows(snapshot: Snapshot, status: int) -> Iterator[str]:
    marker, lines, states = bytes([status]), snapshot.lines, snapshot.status
    task = states.find(marker)
    while task >= 0:
        yield f"{task} {lines[task]}\n"
        task = states.find(marker, task + 1)


def append_lines(path: Path, rows: list[str]) -> None:
    """Append ``rows`` (whole ``ID LINE`` lines) to a view with one write. A line torn by a writer
    killed midway is ended first, so that it damages no other row; the next rewrite drops it."""
    if not rows:
        return
    payload = "".join(rows).encode("utf-8", "surrogateescape")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            payload = b"\n" + payload
        os.write(fd, payload)
    finally:
        os.close(fd)


def write_timeline(workdir: WorkDir, chunk: int = 1 << 22) -> None:
    """Rewrite ``timeline.json`` from the records of the journal and of its history (the
    generations compacted away).

    The events of a compacted generation never change, so they are turned into trace text once,
    into ``history/timeline.G.part``, with beside it the state of the running-task counter at its
    end (``timeline.G.counter``, see :mod:`mpifarmer.store.counter`) and, written last, the hosts,
    ranks and slots it uses (``timeline.G.keys``), and copied from there: a rewrite parses only
    the current generation, however long the farm has run, and reads one counter state."""
    with journals(workdir) as (generation, streams):
        keys: set[tuple[str, int, int]] = set()
        counter: _CounterSource = None
        expected = 0
        with atomic_write(workdir.timeline) as stream:
            stream.write('{"traceEvents":[')
            out = _Commas(stream)
            for number, journal in streams:
                if number != expected:
                    counter = None  # a generation's history is missing: its runs are not counted
                expected = number + 1
                if number < generation:
                    part, old_keys, counter = _compacted_part(workdir, number, journal, chunk, counter)
                    keys |= old_keys
                    with part.open(encoding="utf-8") as source:
                        out.copy(source)
                else:
                    builder = _Timeline(RunningCounter(_counter_state(counter)))
                    for text in _event_texts(builder, _records(journal, chunk)):
                        out.write(text)
                    out.write(_texts(builder.counter.flush()))
                    keys |= builder.keys
            out.write(_texts(_metadata(keys)))
            stream.write('],"displayTimeUnit":"ms"}')


#: Where the counter's state at the end of the last generation is: a cached part's counter file,
#: or the state itself (a part just made), or nowhere (the first generation).
_CounterSource = Path | dict[str, Any] | None


def _counter_state(source: _CounterSource) -> dict[str, Any] | None:
    if isinstance(source, Path):
        try:
            return json.loads(source.read_text())
        except (OSError, ValueError):
            return None  # cannot be: it is written before the keys that make the part count
    return source


class _Commas:
    """Writes pieces of a JSON array's body, with a comma between non-empty ones."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream, self.first = stream, True

    def write(self, text: str) -> None:
        if text:
            self.stream.write(text if self.first else "," + text)
            self.first = False

    def copy(self, source: IO[str]) -> None:
        if source.read(1):
            source.seek(0)
            self.stream.write("" if self.first else ",")
            shutil.copyfileobj(source, self.stream, 1 << 20)
            self.first = False


def _texts(events: list[dict[str, Any]]) -> str:
    """Events as comma-separated JSON text (no brackets). json.dumps of a whole list, not of each
    event: only the one-shot encoder is fast."""
    return json.dumps(events, separators=(",", ":"))[1:-1]


def _event_texts(builder: _Timeline, batches: Iterable[list[dict[str, Any]]]) -> Iterator[str]:
    """The trace events of each batch of records, as comma-separated text."""
    for events in builder.events(batches):
        yield _texts(events)


def _compacted_part(workdir: WorkDir, generation: int, journal: BinaryIO, chunk: int,
                    counter: _CounterSource) -> tuple[Path, set[tuple[str, int, int]], _CounterSource]:
    """The trace text of a compacted generation, the keys it uses and where the counter's state at
    its end is, made once from the counter's state at its start. Two writers may make them at
    once (views are written outside the lock): both write the same, whole, files. A part made by
    an older mpifarmer (no counter file beside it) is made again."""
    part = workdir.history / f"timeline.{generation}.part"
    keys_path = workdir.history / f"timeline.{generation}.keys"
    counter_path = workdir.history / f"timeline.{generation}.counter"
    try:
        keys = {(host, int(rank), int(slot)) for host, rank, slot in json.loads(keys_path.read_text())}
        if counter_path.exists():
            return part, keys, counter_path
    except (OSError, ValueError, TypeError):
        pass
    builder = _Timeline(RunningCounter(_counter_state(counter)))
    with atomic_write(part) as stream:
        out = _Commas(stream)
        for text in _event_texts(builder, _records(journal, chunk)):
            out.write(text)
    state = builder.counter.state()
    with atomic_write(counter_path) as stream:
        # json.dumps, not json.dump: only the one-shot encoder is fast, and the counter's buffer
        # may hold many thousands of changes.
        stream.write(json.dumps(state, separators=(",", ":")))
    with atomic_write(keys_path) as stream:
        json.dump(sorted(builder.keys), stream)
    return part, builder.keys, state


#: The records the timeline reads: runs' ends and starts (for the counter), farmers leaving.
_KINDS = (rec.END, rec.START, rec.BYE, rec.DEAD)
_MARKERS = tuple(f'"e":"{kind}"'.encode() for kind in _KINDS)


def _records(journal: BinaryIO, chunk: int) -> Iterator[list[dict[str, Any]]]:
    """A journal's records of :data:`_KINDS`, a list per chunk read (a torn last line is left out)."""
    for found in batches(journal, _MARKERS, chunk):
        yield [record for record in found if record.get("e") in _KINDS]


class _Timeline:
    """Turns records into trace events, remembering only the hosts, ranks and slots seen and what
    the running-task counter needs. A host and rank is a trace process (see ``process_id``)."""

    def __init__(self, counter: RunningCounter | None = None) -> None:
        self.keys: set[tuple[str, int, int]] = set()
        self.counter = counter if counter is not None else RunningCounter()

    def events(self, batches: Iterable[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
        for records in batches:
            events = []
            for record in records:
                self.counter.feed(record)
                if record["e"] == rec.END and (event := self.event(record)) is not None:
                    events.append(event)
            yield events + self.counter.due()

    def event(self, run: dict[str, Any]) -> dict[str, Any] | None:
        if run.get("t0") is None:
            return None
        host, rank, tid = run.get("host", "?"), int(run.get("rank", 0)), int(run.get("slot", 0))
        self.keys.add((host, rank, tid))
        args = {"id": run["id"], "status": run["st"], "rc": run.get("rc")}
        for key, arg in (("sig", "signal"), ("why", "reason"), ("att", "attempt"), ("cpus", "cpus"),
                         ("gpus", "gpus")):
            if key in run:
                args[arg] = run[key]
        if "attempt" not in args and run["st"] == rec.FINISHED:
            args["attempt"] = 1  # a finished run records its attempt only when it was not the first
        attrs = run.get("attrs")
        name = attrs.get("name") if isinstance(attrs, dict) else None
        start, end = run_span_us(run)
        return {"name": f"{name} (task {run['id']})" if name else f"task {run['id']}", "cat": run["st"], "ph": "X",
                "pid": process_id(host, rank), "tid": tid, "ts": start, "dur": end - start, "args": args}


def _metadata(keys: set[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """Events naming each host/rank (the process, sorted by host and rank) and slot (the thread)."""
    meta: list[dict[str, Any]] = []
    processes = sorted({(host, rank) for host, rank, _ in keys})
    for index, (host, rank) in enumerate(processes):
        pid = process_id(host, rank)
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": f"{host} rank {rank}"}})
        meta.append({"name": "process_sort_index", "ph": "M", "pid": pid, "args": {"sort_index": index}})
    for host, rank, tid in sorted(keys):
        meta.append({"name": "thread_name", "ph": "M", "pid": process_id(host, rank), "tid": tid,
                     "args": {"name": f"slot {tid}"}})
    return meta


def timeline_events(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trace events for ``records`` (end records, and start, bye and dead records for the counter):
    one complete event per run, with times in microseconds, the running-task counter of each
    host/rank, then metadata naming each host/rank and slot."""
    builder = _Timeline()
    events = [event for batch in builder.events([list(records)]) for event in batch]
    return events + builder.counter.flush() + _metadata(builder.keys)
