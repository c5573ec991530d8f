"""Reading a work directory's whole record history, read-only and without its lock.

The records of a work directory are spread over the generations of its journal: the ones
compacted away, kept as ``history/journal.G.jsonl``, and the live ``journal.jsonl``. A reader
that looks while farmers run must see each record once, in order, even if a compaction happens
meanwhile. :func:`journals` makes that so by opening the live journal first: its header names
its generation G, every older generation is already in the history (a compaction links the old
journal there before it replaces the live one), and the open file is the generation G the header
names, whatever is renamed over its path afterwards.

Status, events, report and the timeline read records through here; none of them takes the lock
or writes into the work directory.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from mpifarmer.store import codec
from mpifarmer.store.journal import read_header
from mpifarmer.store.workdir import WorkDir

__all__ = ["all_records", "batches", "journals"]

#: How much of a journal is read at a time.
CHUNK = 1 << 22


@contextlib.contextmanager
def journals(workdir: WorkDir) -> Iterator[tuple[int, Iterator[tuple[int, BinaryIO]]]]:
    """(the live generation G, an iterator of (generation, open journal) for 0 .. G, oldest first).

    Each stream is positioned at its first record (after the header). A generation whose history
    file is missing (a work directory from before compaction existed, or pruned by hand) is
    skipped. A work directory without a journal yields generation 0 and nothing to read."""
    try:
        live: BinaryIO = workdir.journal.open("rb")  # first: see the module docstring
    except FileNotFoundError:
        live = io.BytesIO()
    with live:
        generation, start = read_header(live.read(512))

        def streams() -> Iterator[tuple[int, BinaryIO]]:
            for old in range(generation):
                try:
                    stream = workdir.old_journal(old).open("rb")
                except FileNotFoundError:
                    continue
                with stream:
                    _, first = read_header(stream.read(512))
                    stream.seek(first)
                    yield old, stream
            live.seek(start)
            yield generation, live

        yield generation, streams()


def batches(stream: BinaryIO, marker: bytes | tuple[bytes, ...] | None = None,
            chunk: int = CHUNK) -> Iterator[list[dict[str, Any]]]:
    """The records of one journal from where ``stream`` stands, a list per chunk read.

    Only whole lines count: a torn line (one ended by `` torn``) and a last line without its
    newline (still being written, or cut by a crash) are left out. With ``marker``, only lines
    that contain those bytes are parsed, which is much faster when few lines are wanted (for
    example ``b'"e":"end"'``; a tuple of markers: lines with any of them); records are still
    checked to be objects."""
    search = None
    if isinstance(marker, tuple):  # one regular expression: a single C call per line
        search = re.compile(b"|".join(re.escape(one) for one in marker)).search
    rest = b""
    while data := stream.read(chunk):
        data = rest + data
        cut = data.rfind(b"\n") + 1
        data, rest = data[:cut], data[cut:]
        found = []
        for line in data.splitlines():
            if search is not None:
                if not search(line):
                    continue
            elif marker is not None and marker not in line:
                continue
            try:
                record = codec.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                found.append(record)
        yield found


def all_records(workdir: WorkDir, marker: bytes | tuple[bytes, ...] | None = None) -> Iterator[dict[str, Any]]:
    """Every record of the work directory, oldest first (see :func:`batches` for ``marker``)."""
    with journals(workdir) as (_, streams):
        for _, stream in streams:
            for found in batches(stream, marker):
                yield from found
