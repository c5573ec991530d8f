"""Human-readable views of the ledger: PyTaskFarmer's files and the Perfetto timeline.

``toprocess``, ``running``, ``finished`` and ``failed`` hold one ``ID LINE`` line per task;
``timeline.json`` is Chrome trace-event JSON with one complete event (``"ph": "X"``) per task
run, host and rank as the process, worker slot as the thread.

Two ways of keeping them: :func:`write_views` rewrites files whole and atomically (temporary file
and rename), so each is valid at every moment, at a cost of O(tasks); :func:`append_lines` adds
the tasks that just ended to ``finished`` and ``failed``, at a cost of O(ended), so that those
two are never far behind however long the list is. The timeline is streamed from the journal's
end records (:func:`write_timeline`): no run is held in memory.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from mpifarmer.scheduling import records as rec
from mpifarmer.scheduling.ledger import Ledger, Status
from mpifarmer.scheduling.texts import Texts
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
    """Rewrite ``timeline.json`` from the end records of the journal and of its history (the
    generations compacted away).

    The events of a compacted generation never change, so they are turned into trace text once,
    into ``history/timeline.G.part`` (with the hosts, ranks and slots it uses beside it, in
    ``timeline.G.keys``, written last), and copied from there: a rewrite parses only the current
    generation, however long the farm has run."""
    with journals(workdir) as (generation, streams):
        keys: set[tuple[str, int, int]] = set()
        builder = _Timeline()
        with atomic_write(workdir.timeline) as stream:
            stream.write('{"traceEvents":[')
            out = _Commas(stream)
            for number, journal in streams:
                if number < generation:
                    part, old_keys = _compacted_part(workdir, number, journal, chunk)
                    keys |= old_keys
                    with part.open(encoding="utf-8") as source:
                        out.copy(source)
                else:
                    for text in _event_texts(builder, _end_records(journal, chunk)):
                        out.write(text)
            out.write(json.dumps(_metadata(keys | builder.keys), separators=(",", ":"))[1:-1])
            stream.write('],"displayTimeUnit":"ms"}')


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


def _event_texts(builder: _Timeline, batches: Iterable[list[dict[str, Any]]]) -> Iterator[str]:
    """The trace events of each batch of end records, as comma-separated text (no brackets)."""
    for events in builder.events(batches):
        # json.dumps of a whole list, not of each event: only the one-shot encoder is fast.
        yield json.dumps(events, separators=(",", ":"))[1:-1]


def _compacted_part(workdir: WorkDir, generation: int, journal: BinaryIO,
                   chunk: int) -> tuple[Path, set[tuple[str, int, int]]]:
    """The trace text of a compacted generation and the keys it uses, made once. Two writers may
    make them at once (views are written outside the lock): both write the same, whole, files."""
    part = workdir.history / f"timeline.{generation}.part"
    keys_path = workdir.history / f"timeline.{generation}.keys"
    try:
        return part, {(host, int(rank), int(slot)) for host, rank, slot in json.loads(keys_path.read_text())}
    except (OSError, ValueError, TypeError):
        pass
    builder = _Timeline()
    with atomic_write(part) as stream:
        out = _Commas(stream)
        for text in _event_texts(builder, _end_records(journal, chunk)):
            out.write(text)
    with atomic_write(keys_path) as stream:
        json.dump(sorted(builder.keys), stream)
    return part, builder.keys


def _end_records(journal: BinaryIO, chunk: int) -> Iterator[list[dict[str, Any]]]:
    """A journal's end records, a list per chunk read (a torn last line is left out)."""
    for found in batches(journal, b'"e":"end"', chunk):
        yield [record for record in found if record.get("e") == rec.END]


class _Timeline:
    """Turns end records into trace events, remembering only the hosts, ranks and slots seen.

    A host and rank is a trace process whose ID is a hash of its name, so that events written at
    different times (one part per compacted generation) agree on it without a shared table."""

    def __init__(self) -> None:
        self.keys: set[tuple[str, int, int]] = set()

    def events(self, batches: Iterable[list[dict[str, Any]]]) -> Iterator[list[dict[str, Any]]]:
        for runs in batches:
            yield [event for run in runs if (event := self.event(run)) is not None]

    def event(self, run: dict[str, Any]) -> dict[str, Any] | None:
        t0 = run.get("t0")
        if t0 is None:
            return None
        host, rank, tid = run.get("host", "?"), int(run.get("rank", 0)), int(run.get("slot", 0))
        self.keys.add((host, rank, tid))
        args = {"id": run["id"], "status": run["st"], "rc": run.get("rc")}
        for key, arg in (("sig", "signal"), ("why", "reason"), ("att", "attempt"), ("cpus", "cpus"),
                         ("gpus", "gpus")):
            if key in run:
                args[arg] = run[key]
        attrs = run.get("attrs")
        name = attrs.get("name") if isinstance(attrs, dict) else None
        return {"name": f"{name} (task {run['id']})" if name else f"task {run['id']}", "cat": run["st"], "ph": "X",
                "pid": _pid(host, rank), "tid": tid, "ts": round(t0 * 1e6),
                "dur": max(0, round((run["t1"] - t0) * 1e6)), "args": args}


def _pid(host: str, rank: int) -> int:
    return zlib.crc32(f"{host}\0{rank}".encode()) & 0x7FFFFFFF


def _metadata(keys: set[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """Events naming each host/rank (the process, sorted by host and rank) and slot (the thread)."""
    meta: list[dict[str, Any]] = []
    processes = sorted({(host, rank) for host, rank, _ in keys})
    for index, (host, rank) in enumerate(processes):
        pid = _pid(host, rank)
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "args": {"name": f"{host} rank {rank}"}})
        meta.append({"name": "process_sort_index", "ph": "M", "pid": pid, "args": {"sort_index": index}})
    for host, rank, tid in sorted(keys):
        meta.append({"name": "thread_name", "ph": "M", "pid": _pid(host, rank), "tid": tid,
                     "args": {"name": f"slot {tid}"}})
    return meta


def timeline_events(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trace events for ``runs`` (end records): one complete event per run, with times in
    microseconds, then metadata naming each host/rank and slot."""
    builder = _Timeline()
    events = [event for batch in builder.events([list(runs)]) for event in batch]
    return events + _metadata(builder.keys)
