"""The append-only journal: the work directory's source of truth.

Writers append whole records, one JSON object per line, while holding the work-directory
lock, with a single ``write`` call. Readers keep the byte offset they have read up to, so
catching up costs only what others appended since. The file is opened anew for every read
and append: on NFS that is what makes other nodes' appends visible (close-to-open).

Compaction (see :meth:`mpifarmer.store.store.Store.compact`) replaces the journal by a new
*generation*: a file that starts with a header record ``{"e": "journal", "gen": G}`` and holds
only what was appended since; the ledger up to there is in a snapshot. A reader notices the
new generation at its next read, however far into the old file its offset was, because every
read checks the header (:class:`GenerationChanged`). A journal without a header is generation 0.

A writer killed in the middle of a write leaves a line with no newline. The next writer
ends it with :data:`TORN_END` before appending, which no JSON object ends with, and every reader
skips lines that are not valid JSON: a torn record is lost for every reader, never misread and
never read by some and not others. (A bare newline would not do: a write cut just before a
record's newline leaves a whole JSON object, which the farmer that saw it torn skipped and the
newline would make valid for everyone after; see bug 15 in tests/reliability/README.md.)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from mpifarmer.store import codec

__all__ = ["GenerationChanged", "Journal", "NewerJournal", "compaction_step", "read_header"]

logger = logging.getLogger(__name__)

#: What ends a torn last line: it makes the line invalid JSON whatever part of a record it holds.
TORN_END = b" torn\n"

class FaultInjection:
    """Kills this process at a chosen journal append, for crash-consistency tests.

    Set ``MPIFARMER_FAULT=N:WHERE``: at the N-th append (counted from 1) of this process, with
    WHERE ``before`` (nothing written), ``torn`` (half the bytes written), ``unended`` (every
    byte but the last newline: the first record may be a whole JSON object) or ``after`` (all
    written), the process sends itself SIGKILL. With WHERE ``compact1``, ``compact2`` or
    ``compact3`` it is killed in its N-th compaction instead: after writing the snapshot, after
    linking the old journal into the history, or after replacing the journal. Not for
    production use.
    """

    def __init__(self, spec: str) -> None:
        count, _, self.where = spec.partition(":")
        self.at = int(count)
        if self.where not in ("before", "torn", "unended", "after", "compact1", "compact2", "compact3"):
            raise ValueError(f"MPIFARMER_FAULT={spec!r}: expected N:before, N:torn, N:unended, N:after or "
                             "N:compact1..3")
        self.appends = 0
        self.compactions = 0

    def compaction_step(self, step: int) -> None:
        if step == 1:
            self.compactions += 1
        if self.compactions == self.at and self.where == f"compact{step}":
            os.kill(os.getpid(), signal.SIGKILL)

    def before_write(self, fd: int, payload: bytes) -> None:
        if self.where.startswith("compact"):
            return
        self.appends += 1
        if self.appends == self.at and self.where == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.appends == self.at and self.where in ("torn", "unended"):
            os.write(fd, payload[: max(1, len(payload) // 2)] if self.where == "torn" else payload[:-1])
            os.kill(os.getpid(), signal.SIGKILL)

    def after_write(self) -> None:
        if self.appends == self.at and self.where == "after":
            os.kill(os.getpid(), signal.SIGKILL)


_FAULT = FaultInjection(os.environ["MPIFARMER_FAULT"]) if os.environ.get("MPIFARMER_FAULT") else None


class Trace:
    """With ``MPIFARMER_JOURNAL_TRACE=DIR``, every read and append of this process is logged to
    DIR/journal-trace.PID (offsets, sizes, record counts): for the crash harness, to find out
    afterwards what each critical section saw. Not for production use."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, f"journal-trace.{os.getpid()}")

    def __call__(self, *fields: object) -> None:
        with open(self.path, "a") as stream:
            stream.write(" ".join(map(str, (f"{time.time():.6f}", *fields))) + "\n")


_TRACE = Trace(os.environ["MPIFARMER_JOURNAL_TRACE"]) if os.environ.get("MPIFARMER_JOURNAL_TRACE") else None


HEADER = "journal"
#: The journal format this version writes in headers, and the newest it reads.
FORMAT = 1
_HEADER_START = b'{"e":"journal"'
_HEADER_PROBE = 512  # a header line is shorter than this


class GenerationChanged(Exception):
    """The journal was compacted since it was last read: load the snapshot of ``generation``,
    then :meth:`Journal.rebase`."""

    def __init__(self, generation: int, start: int) -> None:
        super().__init__(f"the journal is now of generation {generation}")
        self.generation, self.start = generation, start


def read_header(head: bytes) -> tuple[int, int]:
    """(generation, offset of the first record) from the first bytes of a journal file."""
    if not head.startswith(_HEADER_START):
        return 0, 0
    cut = head.find(b"\n")
    if cut < 0:
        raise ValueError("journal header without a newline")
    header = json.loads(head[:cut])
    if int(header.get("v", 1)) > FORMAT:
        raise NewerJournal(int(header["v"]))
    return int(header["gen"]), cut + 1


class NewerJournal(ValueError):
    """The journal was written in a format newer than this mpifarmer reads."""

    def __init__(self, version: int) -> None:
        super().__init__(f"the journal is in format {version}, newer than this mpifarmer reads ({FORMAT})")


def compaction_step(step: int) -> None:
    """A point where fault injection may kill this process during a compaction."""
    if _FAULT is not None:
        _FAULT.compaction_step(step)


class Journal:
    """Incremental reader and whole-record appender of one journal file."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.generation = 0
        self.start = 0  # where the records of this generation begin (after the header)
        self.offset = 0
        self._torn = 0  # length of the partial line that ends the file (at self.offset)
        self.skipped = 0
        self.raced = 0  # appends that found records they had not read (see _unread)
        self.more = False  # whether the last read_new stopped at max_bytes, before the end
        self._own: list[tuple[int, int]] = []  # (offset, length) of such appends, not to be read back

    @staticmethod
    def trace(*fields: object) -> None:
        """Add a line to this process's journal trace, if one is kept (see :class:`Trace`)."""
        if _TRACE is not None:
            _TRACE(*fields)

    def read_new(self, max_bytes: int = -1) -> list[dict[str, Any]]:
        """Return the records appended since the last call (those in about ``max_bytes``, if
        given and this reader has no appends of its own to skip: call again until it returns
        none). Raises :class:`GenerationChanged` if the journal was compacted meanwhile."""
        try:
            with self.path.open("rb") as stream:
                generation, start = read_header(stream.read(_HEADER_PROBE))
                if generation != self.generation:
                    raise GenerationChanged(generation, start)
                if self.offset < start:
                    self.offset = self.start = start
                stream.seek(self.offset)
                limit = max_bytes if not self._own else -1
                data = stream.read(limit)
                self.more = 0 < limit == len(data)
                if self.more and b"\n" not in data:
                    data += stream.readline()  # a record longer than the limit: read it whole
        except FileNotFoundError:
            self.more = False
            return []
        if self._own:
            data = self._without_own(data)
        end = data.rfind(b"\n") + 1
        self._torn = len(data) - end
        records = []
        for line in data[:end].splitlines():
            if not line:
                continue
            try:
                record = codec.loads(line)
            except ValueError:
                self.skipped += 1
                logger.warning("%s: skipping a damaged journal line (%d bytes)", self.path, len(line))
                continue
            if isinstance(record, dict):
                records.append(record)
        if _TRACE is not None:
            _TRACE("read", self.offset, len(data), end, len(records),
                   ",".join(f"{r.get('e')}:{r.get('f', '')}:{r.get('id', r.get('ids', ''))}" for r in records[-3:]))
        self.offset += end
        return records

    def rebase(self, generation: int, start: int) -> None:
        """Read on from the start of generation ``generation`` (after loading its snapshot)."""
        self.generation, self.start, self.offset = generation, start, start
        self._torn = 0
        self._own.clear()

    def new_generation(self, generation: int) -> None:
        """Replace the journal by an empty one of ``generation`` (with the lock held, when the
        snapshot of everything before is written): a whole file, fsynced, then renamed over."""
        header = codec.record_lines([{"e": HEADER, "v": FORMAT, "gen": generation}])
        temporary = self.path.with_name(f".{self.path.name}.{generation}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, header)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        self.rebase(generation, len(header))

    @property
    def size(self) -> int:
        """Bytes of records read or written in this generation."""
        return self.offset - self.start

    def _without_own(self, data: bytes) -> bytes:
        """``data`` (read from :attr:`offset`) without this writer's own appends after a race;
        the offset moves past them as if they had been read."""
        kept, position = [], 0
        for start, length in self._own:
            kept.append(data[position : start - self.offset])
            position = start - self.offset + length
        kept.append(data[position:])
        self.offset += sum(length for _, length in self._own)
        self._own.clear()
        return b"".join(kept)

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append ``records``; call with the lock held and after :meth:`read_new`."""
        if not records:
            return
        payload = codec.record_lines(records)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            unread = self._unread(size)
            if size and os.pread(fd, 1, size - 1) != b"\n":  # the file's end, not what was read: others
                payload = TORN_END + payload  # may have ended the line; else end it, unreadable for all
            if _FAULT is not None:
                _FAULT.before_write(fd, payload)
            written = os.write(fd, payload)
            end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: where this write ended
            if _TRACE is not None:
                _TRACE("append", self.offset, self._torn, unread, end - len(payload), len(payload), len(records),
                       ",".join(f"{r.get('e')}:{r.get('id', r.get('ids', ''))}" for r in records))
            if written != len(payload):
                # A short write (disk full) leaves a partial line, which readers skip.
                raise OSError(28, f"short write to {self.path} ({written} of {len(payload)} bytes)")
            if self.fsync:
                os.fsync(fd)
            if _FAULT is not None:
                _FAULT.after_write()
        finally:
            os.close(fd)
        if unread:  # the next read returns the others' records, and skips these
            self._own.append((end - len(payload), len(payload)))
            return
        self.offset += self._torn + len(payload)
        self._torn = 0

    def _unread(self, size: int) -> bool:
        """Whether others appended since :meth:`read_new`, although the lock was held (logged).

        The records are appended all the same (refusing would lose results), but what was
        decided from the older view (claims, dead verdicts) may make a task run twice. A lock
        that does not keep other nodes out (a filesystem whose flock is node-local) does this."""
        expected = self.offset + self._torn
        if size == expected:
            return False
        self.raced += 1
        if self._own:
            return True  # logged already: the others' records have not been read since
        logger.error("%s grew from %d to %d bytes while this farmer held the work-directory lock: the lock does "
                     "not keep other farmers out on this filesystem, so tasks may run twice; use --lock-mode strict "
                     "or a --lock-dir on a filesystem whose flock works across nodes", self.path, expected, size)
        return True
