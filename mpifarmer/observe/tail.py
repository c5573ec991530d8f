"""The recent past from compacted journal generations, without reading them whole.

A compacted generation (``history/journal.G.jsonl``) never changes. Status needs two things
from them: how many runs ended (finished or failed) after a few moments (the rate windows), and
the last failed run of a few tasks. Neither parses every line:

* records are appended in about the order of their times (a run's end is recorded within a
  second or so of its end), so the place where a time is passed is found by bisecting the file
  on the times of the records at a few offsets. Ends within :data:`MARGIN` seconds of the
  moment, or at most :data:`CAP` bytes around it, are parsed and counted exactly; every end
  after that region is counted by searching for the bytes that start a finished or failed end
  record's state (at gigabytes per second), and every end before it is taken to be earlier;
* failed runs are found by the same byte search, and only those lines are parsed.

The counts are exact when no record is appended more than MARGIN seconds out of time order, or,
at rates so high that MARGIN seconds of records exceed CAP bytes (tens of thousands of runs per
second), off by at most the runs misplaced across the edges of the parsed region.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from mpifarmer.scheduling import records as rec
from mpifarmer.store.journal import read_header

__all__ = ["CAP", "MARGIN", "count_ends_after", "failed_runs", "record_time"]

MARGIN = 10.0
CAP = 1 << 20
_PROBE = 1 << 16
_CHUNK = 4 << 20
#: How a finished or failed end record's state starts (records.end writes ``st`` before ``rc``).
_DONE_MARKS = (b'"st":"finished","rc":', b'"st":"failed","rc":')
_FAILED_MARK = b'"st":"failed","rc":'
#: An end record's t1, where records.end put it (other lines are parsed as JSON).
_END_T1 = re.compile(rb'\{"e":"end","f":"[^"\\]*","id":\d+,"st":"\w+","rc":[^,]*,"t0":[^,]*,'
                     rb'"t1":(-?[0-9][0-9.eE+-]*)[,}]')
_TIMED = {rec.END: "t1", rec.START: "t", rec.HELLO: "t", rec.BYE: "t", rec.DEAD: "t"}


def record_time(line: bytes) -> float | None:
    """The time of a journal line's record (an end's ``t1``, a start's, hello's, bye's, dead's
    ``t``), or None for a record without one (add, claim, release, retry) or a torn line."""
    if not line.startswith(b'{"e":"') or not line.endswith(b"}"):
        return None
    fast = _END_T1.match(line)
    if fast is not None:
        return float(fast.group(1))
    kind = line[6 : line.find(b'"', 6)].decode(errors="replace")
    key = _TIMED.get(kind)
    if key is None:
        return None
    try:
        value = json.loads(line).get(key)
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _lines_from(stream: BinaryIO, position: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of each whole line from ``position`` (the start of a line) up to ``end``."""
    while position < end:
        stream.seek(position)
        data = stream.read(min(_PROBE, end - position))
        cut = data.rfind(b"\n") + 1
        if cut == 0:  # a line longer than a probe
            data += stream.readline()
            cut = len(data)
        lines = data[:cut].split(b"\n")
        if data[:cut].endswith(b"\n"):
            lines.pop()
        for line in lines:
            yield position, line
            position += len(line) + 1


def _line_start(stream: BinaryIO, offset: int, start: int) -> int:
    """The start of the first line that begins at or after ``offset``."""
    if offset <= start:
        return start
    stream.seek(offset - 1)
    return offset - 1 + len(stream.readline())


def _time_after(stream: BinaryIO, offset: int, start: int, end: int) -> tuple[float, int] | None:
    """(time, offset of its line) of the first timed record whose line starts at or after
    ``offset``; None if there is none before ``end``."""
    for position, line in _lines_from(stream, _line_start(stream, offset, start), end):
        when = record_time(line)
        if when is not None:
            return when, position
    return None


def _offset_of(stream: BinaryIO, moment: float, start: int, end: int) -> int:
    """Where the records from ``moment`` on begin (the start of the first line whose record is
    timed at or after it), found by bisection on the times of the records at a few offsets."""
    low, high = start, end
    while high - low > _PROBE:
        middle = (low + high) // 2
        found = _time_after(stream, middle, start, end)
        if found is None or found[0] >= moment or found[1] >= high:
            high = middle
        else:
            low = found[1] + 1
    for position, line in _lines_from(stream, _line_start(stream, low, start), end):
        when = record_time(line)
        if when is not None and when >= moment:
            return position
    return end


def _count_marks(stream: BinaryIO, begin: int, end: int) -> int:
    count, position = 0, begin
    overlap = max(len(mark) for mark in _DONE_MARKS) - 1
    stream.seek(begin)
    carry = b""
    while position < end:
        data = stream.read(min(_CHUNK, end - position))
        if not data:
            break
        position += len(data)
        window = carry + data
        count += sum(window.count(mark) for mark in _DONE_MARKS)
        carry = window[-overlap:]
        count -= sum(carry.count(mark) for mark in _DONE_MARKS)  # counted again with the next chunk
    return count + sum(carry.count(mark) for mark in _DONE_MARKS)


def count_ends_after(path: os.PathLike[str] | str, moments: Iterable[float], margin: float = MARGIN,
                     cap: int = CAP) -> dict[float, int]:
    """For each moment, how many runs in this compacted journal ended finished or failed after it
    (see the module docstring for when this is exact). A missing file counts nothing."""
    moments = sorted(set(moments))
    counts = dict.fromkeys(moments, 0)
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return counts
    with stream:
        _, start = read_header(stream.read(512))
        end = os.fstat(stream.fileno()).st_size
        first = _time_after(stream, start, start, end)  # past the add records of a long list, once
        last = _time_after(stream, max(start, end - _PROBE), start, end)
        if not moments or first is None or last is None or last[0] < moments[0] - margin:
            return counts
        start = first[1]
        regions = []
        for moment in moments:
            low = _offset_of(stream, moment - margin, start, end)
            high = _offset_of(stream, moment + margin, start, end)
            if high - low > cap:
                middle = _offset_of(stream, moment, start, end)
                low = _line_start(stream, max(low, middle - cap // 2), start)
                high = _line_start(stream, min(high, middle + cap // 2), start)
            stream.seek(low)
            exact = 0
            for line in stream.read(high - low).split(b"\n"):
                if any(mark in line for mark in _DONE_MARKS):
                    when = record_time(line)
                    exact += when is not None and when > moment
            counts[moment] = exact
            regions.append((moment, high))
        # every end after a moment's region counts for it: count each stretch between the regions'
        # ends once, from the last back, and add up
        after = 0
        following = end
        for moment, high in sorted(regions, key=lambda item: item[1], reverse=True):
            after += _count_marks(stream, high, following) if high < following else 0
            following = min(following, high)
            counts[moment] += after
    return counts


def failed_runs(path: os.PathLike[str] | str, wanted: set[int] | None = None) -> dict[int, dict[str, Any]]:
    """The last failed end record, in this journal file, of each task in ``wanted`` (None: of
    every task); only lines holding a failed end's bytes are parsed. A missing file has none."""
    found: dict[int, dict[str, Any]] = {}
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return found
    with stream:
        rest = b""
        while data := stream.read(_CHUNK):
            data = rest + data
            cut = data.rfind(b"\n") + 1
            data, rest = data[:cut], data[cut:]
            position = data.find(_FAILED_MARK)
            while position >= 0:
                begin = data.rfind(b"\n", 0, position) + 1
                finish = data.find(b"\n", position)
                line = data[begin:finish]
                position = data.find(_FAILED_MARK, finish)
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(record, dict) or record.get("e") != rec.END or record.get("st") != rec.FAILED:
                    continue
                if isinstance(record.get("id"), int) and (wanted is None or record["id"] in wanted):
                    found[record["id"]] = record
    return found
