"""JSON lines for the journal: orjson where it is installed, else the standard library.

Rank 0 writes a journal record for every task run, and encoding it with :mod:`json` was a
quarter of its CPU per task at full hand-out rate (py-spy, bench/mpi_dispatch.py with echo
ranks); orjson encodes the same record in a fifteenth of the time and parses lines about
twice as fast. Both write the same bytes for what records hold (compact separators, keys in
insertion order, non-ASCII as UTF-8, floats as their shortest repr), so journals written
either way read the same. The differences: a float that needs an exponent is spelled
otherwise (``1e-5`` for ``1e-05``: the same number; record times never need one), and a NaN
or infinity in a task's attributes is written as null (valid JSON, unlike ``NaN``). A value orjson
refuses (an integer beyond 64 bits) is written, and read, by :mod:`json`; one neither can
write raises as :mod:`json` does, and a line neither can read raises ValueError.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; a platform without its wheel
    orjson = None

__all__ = ["loads", "record_lines"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _line_std(record: dict[str, Any]) -> bytes:
    return (_dumps(record) + "\n").encode()


if orjson is not None:
    _OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
    _orjson_dumps, _orjson_error = orjson.dumps, orjson.JSONEncodeError

    def _line(record: dict[str, Any]) -> bytes:
        try:
            return _orjson_dumps(record, option=_OPTIONS)
        except _orjson_error:
            return _line_std(record)

    _orjson_loads, _orjson_decode_error = orjson.loads, orjson.JSONDecodeError

    def loads(data: bytes | str) -> Any:
        """One JSON text (bytes or str); ValueError if it is damaged."""
        try:
            return _orjson_loads(data)
        except _orjson_decode_error:
            return json.loads(data)
else:  # pragma: no cover
    _line = _line_std
    loads = json.loads


def record_lines(records: list[dict[str, Any]]) -> bytes:
    """``records`` as JSON lines, each ended by a newline.

    Each line is copied into one buffer and dropped at once: joining a list of them, each kept
    alive until the join, was eight times slower (0.25 against 2.1 us a record, measured), as
    every orjson result then holds a block of its own."""
    buffer = bytearray()
    extend = buffer.extend
    for record in records:
        extend(_line(record))
    return bytes(buffer)
