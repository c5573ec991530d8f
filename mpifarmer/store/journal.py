"""The append-only journal: the work directory's source of truth.

Writers append whole records, one JSON object per line, while holding the work-directory
lock, with a single ``write`` call. Readers keep the byte offset they have read up to, so
catching up costs only what others appended since. The file is opened anew for every read
and append: on NFS that is what makes other nodes' appends visible (close-to-open).

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

__all__ = ["Journal"]

logger = logging.getLogger(__name__)

#: What ends a torn last line: it makes the line invalid JSON whatever part of a record it holds.
TORN_END = b" torn\n"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class FaultInjection:
    """Kills this process at a chosen journal append, for crash-consistency tests.

    Set ``MPIFARMER_FAULT=N:WHERE``: at the N-th append (counted from 1) of this process, with
    WHERE ``before`` (nothing written), ``torn`` (half the bytes written), ``unended`` (every
    byte but the last newline: the first record may be a whole JSON object) or ``after`` (all
    written), the process sends itself SIGKILL. Not for production use.
    """

    def __init__(self, spec: str) -> None:
        count, _, self.where = spec.partition(":")
        self.at = int(count)
        if self.where not in ("before", "torn", "unended", "after"):
            raise ValueError(f"MPIFARMER_FAULT={spec!r}: expected N:before, N:torn, N:unended or N:after")
        self.appends = 0

    def before_write(self, fd: int, payload: bytes) -> None:
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


class Journal:
    """Incremental reader and whole-record appender of one journal file."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.offset = 0
        self._torn = 0  # length of the partial line that ends the file (at self.offset)
        self.skipped = 0
        self.raced = 0  # appends that found records they had not read (see _unread)
        self._own: list[tuple[int, int]] = []  # (offset, length) of such appends, not to be read back

    @staticmethod
    def trace(*fields: object) -> None:
        """Add a line to this process's journal trace, if one is kept (see :class:`Trace`)."""
        if _TRACE is not None:
            _TRACE(*fields)

    def read_new(self) -> list[dict[str, Any]]:
        """Return the records appended since the last call."""
        try:
            with self.path.open("rb") as stream:
                stream.seek(self.offset)
                data = stream.read()
        except FileNotFoundError:
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
                record = json.loads(line)
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
        payload = "".join(_dumps(record) + "\n" for record in records).encode()
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
