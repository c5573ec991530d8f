"""The journal's JSON lines: orjson and the standard library write the same bytes and read each other's."""

from __future__ import annotations

import json

import pytest

from mpifarmer.scheduling import records as rec
from mpifarmer.store import codec
from mpifarmer.task import EndReason


def standard(record: dict) -> bytes:
    return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


RECORDS = [
    rec.add(0, ["echo héllo → ✓", 'printf "%s\\n" tab\there', "x" * 300], {1: {"name": "ü", "cores": 2}}),
    rec.hello("f0-node-12", {"host": "nid001", "pid": 4242, "job": "123_4", "ranks": 4, "slots": [2, 2, 2, 2]},
              1764815400.1234),
    rec.claim("f0", list(range(50))),
    rec.start("f0", 7, pid=99, pst=123456789, host="nid001", rank=3, slot=1, t=1764815400.123456789),
    rec.end("f0", 7, st=rec.FAILED, rc=None, sig=9, t0=1764815400.1, t1=1764815401.0000002, host="nid001", rank=3,
            slot=1, why=EndReason.SIGNALLED, attrs={"retries": 2, "gpus": 1}, att=1, at=1764815402.5, cpus="0-3,8",
            gpus="0,1"),
    rec.end("f0", 8, st=rec.FINISHED, rc=0, sig=None, t0=0.1, t1=0.30000000000000004, host="h", rank=0, slot=0),
    rec.bye("f0", 1764815500.0),
]


@pytest.mark.parametrize("record", RECORDS, ids=[r["e"] for r in RECORDS])
def test_a_record_is_written_as_the_standard_library_writes_it(record: dict) -> None:
    line = codec.record_lines([record])
    assert line == standard(record)
    assert json.loads(line) == json.loads(standard(record))
    assert codec.loads(line.rstrip(b"\n")) == json.loads(standard(record))


def test_records_are_lines_in_order() -> None:
    data = codec.record_lines(RECORDS)
    assert data.endswith(b"\n") and data.count(b"\n") == len(RECORDS)
    assert [json.loads(line) for line in data.splitlines()] == [json.loads(standard(r)) for r in RECORDS]


def test_a_float_with_an_exponent_may_be_spelled_otherwise_but_reads_the_same() -> None:
    record = rec.end("f0", 8, st=rec.FINISHED, rc=0, sig=None, t0=1e-05, t1=1e22, host="h", rank=0, slot=0)
    line = codec.record_lines([record])
    assert json.loads(line) == json.loads(standard(record)) == codec.loads(standard(record))


def test_an_integer_beyond_64_bits_is_written_and_read_all_the_same() -> None:
    record = rec.end("f0", 1, st=rec.FINISHED, rc=0, sig=None, t0=1.0, t1=2.0, host="h", rank=0, slot=0,
                     attrs={"seed": 2**70})
    line = codec.record_lines([record])
    assert line == standard(record)
    assert codec.loads(line)["attrs"]["seed"] == 2**70


@pytest.mark.parametrize("torn", [b'{"e":"end","f":"f0","id":3,"st":"fin', b'{"e":"end"} torn', b"", b"\xff\xfe"])
def test_a_damaged_line_raises_value_error(torn: bytes) -> None:
    with pytest.raises(ValueError):
        codec.loads(torn)
