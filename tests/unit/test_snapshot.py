"""Snapshots: the ledger written as a few buffers and read back equal; damage is caught, not misread."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpifarmer.scheduling import records as rec
from mpifarmer.scheduling.ledger import Ledger
from mpifarmer.store.snapshot import SnapshotError, read_snapshot, write_snapshot


def busy_ledger() -> Ledger:
    ledger = Ledger()
    ledger.apply(rec.add(0, ["echo a", "ünï ✓", "echo c", "echo d", "echo e"], {2: {"cores": 4}}))
    ledger.apply(rec.hello("A", {"host": "n1", "boot": "b", "pid": 7, "job": "12_3", "restart": 1}, 1.0))
    ledger.apply(rec.hello("B", {"host": "n2"}, 2.0))
    ledger.apply(rec.claim("A", [0, 1]))
    ledger.apply(rec.claim("B", [2, 3]))
    ledger.apply({"e": "start", "f": "B", "id": 2, "pid": 99, "t": 3.0})
    ledger.apply(rec.end("A", 0, st=rec.FINISHED, rc=0, sig=None, t0=1, t1=2, host="n1", rank=0, slot=0))
    ledger.apply(rec.end("B", 3, st=rec.FAILED, rc=1, sig=None, t0=1, t1=2, host="n2", rank=0, slot=1))
    ledger.apply(rec.bye("A", 4.0))
    return ledger


def test_a_snapshot_reads_back_as_the_ledger_it_was_written_from(tmp_path: Path) -> None:
    ledger = busy_ledger()
    write_snapshot(tmp_path / "snapshot.3", ledger, 3)
    back = read_snapshot(tmp_path / "snapshot.3", 3)
    assert list(back.lines) == list(ledger.lines) and back.status == ledger.status
    assert (back.counts, back.changes, back.registrations) == (ledger.counts, ledger.changes, ledger.registrations)
    assert back.owner == ledger.owner == {2: "B"} and back.attrs == ledger.attrs and back.started == ledger.started
    assert back.farmers == ledger.farmers
    # and it goes on deciding as the original does
    assert back.claim("C", 3) == ledger.claim("C", 3) == rec.claim("C", [1, 4])


@pytest.mark.parametrize("damage", ["truncated", "flipped", "head", "generation", "missing"])
def test_a_damaged_snapshot_is_refused(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "snapshot.1"
    write_snapshot(path, busy_ledger(), 1)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        path.write_bytes(data[:-3])
    elif damage == "flipped":
        data[-2] ^= 0x01
        path.write_bytes(data)
    elif damage == "head":
        path.write_bytes(data[5:])
    elif damage == "missing":
        path.unlink()
    with pytest.raises(SnapshotError):
        read_snapshot(path, 2 if damage == "generation" else 1)
