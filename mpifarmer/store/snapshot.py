"""Snapshots: the ledger as of the start of a journal generation.

A restart that replayed every record of a million-task journal would parse a million JSON
lines; one that reads a snapshot reads three byte buffers (task lines, their end offsets,
task states) and a short JSON header, then replays only the journal written since.

Layout: one JSON line (format version, generation, the ledger's facts, the buffers' sizes and
their CRC-32), then the buffers back to back. A snapshot is written whole and atomically
(temporary file, fsync, rename) before the journal that refers to it exists, and it is checked
when read: a damaged one raises :class:`SnapshotError`, and the store rebuilds the ledger from
the journal history instead.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from mpifarmer.scheduling.ledger import Ledger
from mpifarmer.store.workdir import atomic_write

__all__ = ["SnapshotError", "read_snapshot", "snapshot_task_count", "write_snapshot"]

FORMAT = 1


class SnapshotError(Exception):
    """A snapshot is missing, damaged, or of an unknown format."""


def write_snapshot(path: Path, ledger: Ledger, generation: int) -> None:
    facts, buffers = ledger.state()
    crc = 0
    for buffer in buffers:
        crc = zlib.crc32(buffer, crc)
    head = {"kind": "mpifarmer-snapshot", "v": FORMAT, "gen": generation, "sizes": [len(b) for b in buffers],
            "crc": crc, "facts": facts}
    with atomic_write(path, fsync=True, binary=True) as stream:
        stream.write(json.dumps(head, separators=(",", ":")).encode() + b"\n")
        for buffer in buffers:
            stream.write(buffer)


def read_snapshot(path: Path, generation: int) -> Ledger:
    """The ledger a snapshot holds; it must be of ``generation``."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SnapshotError(f"{path}: cannot read it ({error.strerror or error})") from None
    cut = data.find(b"\n")
    try:
        head = json.loads(data[:cut])
        if head.get("kind") != "mpifarmer-snapshot" or head.get("v") != FORMAT or head.get("gen") != generation:
            raise SnapshotError(f"{path}: not a snapshot of generation {generation} in format {FORMAT}")
        buffers, position, crc = [], cut + 1, 0
        for size in head["sizes"]:
            buffers.append(data[position : position + size])
            crc = zlib.crc32(buffers[-1], crc)
            position += size
        if position != len(data) or crc != head["crc"]:
            raise SnapshotError(f"{path}: damaged (size or checksum)")
        return Ledger.from_state(head["facts"], buffers)
    except (ValueError, KeyError, TypeError) as error:
        raise SnapshotError(f"{path}: damaged ({error})") from None


def snapshot_task_count(path: Path) -> int:
    """How many tasks a snapshot holds, from its first line only (0 if it cannot be read)."""
    try:
        with path.open("rb") as stream:
            return int(json.loads(stream.readline())["facts"]["tasks"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
