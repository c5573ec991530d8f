"""The append-only journal: the work directory's source of truth.

Writers append whole records, one JSON object per line, while holding the work-directory
lock, with a single ``write`` call. Readers keep the byte offset they have read up to, so
catching up costs only what others appended since. The file is opened anew for every read
and append: on NFS that is what makes other nodes' appends visible (close-to-open).

A writer killed in the middle of a write leaves a line with no newline. The next writer
ends it with a newline before appending, and every reader skips lines that are not valid
JSON, so a torn record is lost but never misread.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

__all__ = ["Journal"]

logger = logging.getLogger(__name__)

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class FaultInjection:
    """Kills this process at a chosen journal append, for crash-consistency tests.

    Set ``MPIFARMER_FAULT=N:WHERE``: at the N-th append (counted from 1) of this process, with
    WHERE ``before`` (nothing written), ``torn`` (half the bytes written) or ``after`` (all
    written), the process sends itself SIGKILL. Not for production use.
    """

    def __init__(self, spec: str) -> None:
        count, _, self.where = spec.partition(":")
        self.at = int(count)
        if self.where not in ("before", "torn", "after"):
            raise ValueError(f"MPIFARMER_FAULT={spec!r}: expected N:before, N:torn or N:after")
        self.appends = 0

    def before_write(self, fd: int, payload: bytes) -> None:
        self.appends += 1
        if self.appends == self.at and self.where == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.appends == self.at and self.where == "torn":
            os.write(fd, payload[: max(1, len(payload) // 2)])
            os.kill(os.getpid(), signal.SIGKILL)

    def after_write(self) -> None:
        if self.appends == self.at and self.where == "after":
            os.kill(os.getpid(), signal.SIGKILL)


_FAULT = FaultInjection(os.environ["MPIFARMER_FAULT"]) if os.environ.get("MPIFARMER_FAULT") else None


class Journal:
    """Incremental reader and whole-record appender of one journal file."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.offset = 0
        self._torn = 0  # length of the partial line that ends the file (at self.offset)
        self.skipped = 0

    def read_new(self) -> list[dict[str, Any]]:
        """Return the records appended since the last call."""
        try:
            with self.path.open("rb") as stream:
                stream.seek(self.offset)
                data = stream.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self._torn = len(data) - end
        records = []
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                self.skipped += 1
                logger.warning("%s: skipping a damaged journal line (%d bytes)", self.path, len(line))
                continue
            if isinstance(record, dict):
                records.append(record)
        self.offset += end
        return records

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append ``records``; call with the lock held and after :meth:`read_new`."""
        if not records:
            return
        payload = "".join(_dumps(record) + "\n" for record in records).encode()
        if self._torn:
            payload = b"\n" + payload
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if _FAULT is not None:
                _FAULT.before_write(fd, payload)
            written = os.write(fd, payload)
            if written != len(payload):
                # A short write (disk full) leaves a partial line, which readers skip.
                raise OSError(28, f"short write to {self.path} ({written} of {len(payload)} bytes)")
            if self.fsync:
                os.fsync(fd)
            if _FAULT is not None:
                _FAULT.after_write()
        finally:
            os.close(fd)
        self.offset += self._torn + len(payload)
        self._torn = 0
