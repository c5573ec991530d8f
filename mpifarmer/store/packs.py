"""Packed task logs: many runs' output in a few append-only files, with an index.

With ``--logs packed`` a task's stdout and stderr go to an unnamed file in node-local
temporary space while it runs. When it ends, its spawner copies the whole output into the
pool's *pack* file as one framed record and only then appends one line describing it to the
pool's *index*. Every pool (every spawner it starts, on every rank) writes files of its own,
named after its farmer, rank and spawner generation, so no file ever has two writers and no
writer ever appends after another's torn tail::

    logs/pack.STEM.index   first line {"pack": 1, "f": FARMER, "rank": R, "host": H}; then one
                           line per run: {"id", "run", "pack", "off", "len", "crc", "rc", "t0", "t1"}
    logs/pack.STEM.N       records: a header line b"#run ID RUN LEN\\n", then LEN bytes

A record is trusted only through its index line, and an index line only if the bytes it names
lie inside the pack file, start with the header it implies and have its CRC-32. A writer killed
at any instruction leaves at worst an unindexed partial record or an unterminated last index
line, which every reader ignores; runs indexed before are untouched. A pack rolls over to
``N+1`` at :data:`LIMIT` bytes.

The spawner loads this file by its path, so it imports only the standard library and nothing
of mpifarmer, and stays quick to load (no dataclasses, no typing).
"""

from __future__ import annotations

import json
import os
import zlib

TYPE_CHECKING = False  # not typing's: the spawner loads this file and must start fast
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["LIMIT", "Attempt", "IndexText", "PackWriter", "attempts", "read_index", "verify"]

#: A pack file rolls over once a record would take it past this many bytes.
LIMIT = 1 << 30
#: Records larger than this are copied into the pack in chunks of this size.
CHUNK = 1 << 20
INDEX_SUFFIX = ".index"
VERSION = 1

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def header(task: int, run: int, length: int) -> bytes:
    """The line that starts a record in a pack file (readable with ``less``)."""
    return b"#run %d %d %d\n" % (task, run, length)


class PackFault:
    """Kills this process at a chosen record, for crash-consistency tests (as the journal's
    ``MPIFARMER_FAULT``). ``MPIFARMER_PACK_FAULT=N:WHERE``: at the N-th record of this writer,
    WHERE ``torn`` (half the record written), ``data`` (the record written, not its index
    line), ``index`` (half of the index write holding its line) or ``after`` (the index line
    written). Not for production use."""

    WHERE = ("torn", "data", "index", "after")

    def __init__(self, spec: str) -> None:
        count, _, self.where = spec.partition(":")
        self.at = int(count)
        if self.where not in self.WHERE:
            raise ValueError(f"MPIFARMER_PACK_FAULT={spec!r}: expected N:torn, N:data, N:index or N:after")

    @staticmethod
    def kill() -> None:
        os.kill(os.getpid(), 9)


class PackWriter:
    """The one writer of ``STEM.index`` and ``STEM.N``; files are created on the first record.

    Not thread-safe and not shared: one per spawner process."""

    def __init__(self, stem: str, identity: dict, limit: int = LIMIT, fault: PackFault | None = None) -> None:
        self.stem = stem
        self.fault = fault
        self.identity = identity  # farmer, rank, host: the index's first line
        self.limit = limit
        self._index = -1
        self._pack = -1
        self._number = -1
        self._size = 0
        self._run = 0
        self._lines: list[bytes] = []

    def add(self, task: int, source: int, rc: int | None, t0: float, t1: float) -> None:
        """Copy the whole content of the file open at ``source`` into the pack as task's run;
        its index line is written by the next :meth:`flush`."""
        length = os.fstat(source).st_size
        self._run += 1
        head = header(task, self._run, length)
        if self._pack < 0 or (self._size and self._size + len(head) + length > self.limit):
            self._roll()
        offset = self._size
        if length <= CHUNK:
            data = os.pread(source, length, 0)
            if len(data) != length:  # cut short while read (a task truncating its own output)
                data = data.ljust(length, b"\0")
            crc = zlib.crc32(data)
            self._write_record(head + data, offset)
        else:
            crc, position = 0, 0
            _pwrite_all(self._pack, head, offset)
            while position < length:
                data = os.pread(source, min(CHUNK, length - position), position)
                if not data:  # cut short while copied: the header's length still holds
                    data = bytes(min(CHUNK, length - position))
                _pwrite_all(self._pack, data, offset + len(head) + position)
                crc = zlib.crc32(data, crc)
                position += len(data)
        self._record(task, offset, head, length, crc, rc, t0, t1)

    def note(self, task: int, text: str, rc: int, t: float) -> None:
        """A run that never started: ``text`` (why) is its output."""
        data = text.encode()
        self._run += 1
        head = header(task, self._run, len(data))
        if self._pack < 0 or (self._size and self._size + len(head) + len(data) > self.limit):
            self._roll()
        offset = self._size
        self._write_record(head + data, offset)
        self._record(task, offset, head, len(data), zlib.crc32(data), rc, t, t)

    def _write_record(self, record: bytes, offset: int) -> None:
        fault = self.fault
        if fault is not None and fault.at == self._run and fault.where == "torn":
            _pwrite_all(self._pack, record[: max(1, len(record) // 2)], offset)
            fault.kill()
        _pwrite_all(self._pack, record, offset)
        if fault is not None and fault.at == self._run and fault.where == "data":
            fault.kill()

    def _record(self, task: int, offset: int, head: bytes, length: int, crc: int, rc: int | None, t0: float,
                t1: float) -> None:
        self._size = offset + len(head) + length
        # as _dumps of {"id", "run", "pack", "off", "len", "crc", "rc", "t0", "t1"} would write it, faster
        self._lines.append(b'{"id":%d,"run":%d,"pack":%d,"off":%d,"len":%d,"crc":%d,"rc":%s,"t0":%r,"t1":%r}\n' % (
            task, self._run, self._number, offset, length, crc, b"null" if rc is None else b"%d" % rc, t0, t1))

    def flush(self) -> None:
        """Append the index lines of the records added since the last call, in one write."""
        if not self._lines:
            return
        data = b"".join(self._lines)
        self._lines.clear()
        fault = self.fault
        if fault is not None and fault.where in ("index", "after") and self._run - len(data.splitlines()) < fault.at \
                <= self._run:
            if fault.where == "index":
                _write_all(self._index, data[: max(1, len(data) // 2)])
                fault.kill()
            _write_all(self._index, data)
            fault.kill()
        _write_all(self._index, data)

    def pending(self) -> bool:
        return bool(self._lines)

    def close(self) -> None:
        self.flush()
        for fd in (self._pack, self._index):
            if fd >= 0:
                os.close(fd)
        self._pack = self._index = -1

    def _roll(self) -> None:
        """Start the next pack file (and, the first time, the index). The index lines of the
        previous pack's records are written first: they describe bytes already written."""
        if self._index < 0:
            self._open_index()
        else:
            self.flush()
        if self._pack >= 0:
            os.close(self._pack)
        self._number += 1
        self._pack = os.open(f"{self.stem}.{self._number}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._size = 0

    def _open_index(self) -> None:
        base = self.stem
        for attempt in range(100):  # the stem is unique by construction; a stray file of that name is kept
            try:
                self._index = os.open(self.stem + INDEX_SUFFIX, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL,
                                      0o644)
                break
            except FileExistsError:
                self.stem = f"{base}-{attempt + 1}"
        else:
            raise FileExistsError(f"{base}{INDEX_SUFFIX} and 99 variants exist")
        _write_all(self._index, _dumps({"pack": VERSION, **self.identity}).encode() + b"\n")


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- reading -----------------------------------------------------------------------------------


class IndexText:
    """An index file as read: its first line (who wrote it), its entries, and what was skipped."""

    __slots__ = ("path", "identity", "entries", "damaged", "tail")

    def __init__(self, path: str, identity: dict, entries: list[dict], damaged: int, tail: bytes) -> None:
        self.path = path
        self.identity = identity
        self.entries = entries
        self.damaged = damaged  # complete lines that are not entries
        self.tail = tail  # an unterminated last line (its writer was killed mid-write)

    @property
    def stem(self) -> str:
        return self.path[: -len(INDEX_SUFFIX)]


_KEYS = ("id", "run", "pack", "off", "len", "crc")


def read_index(path: str, task: int | None = None) -> IndexText:
    """Read an index; with ``task``, only that task's entries (found without parsing the others)."""
    with open(path, "rb") as stream:
        data = stream.read()
    end = data.rfind(b"\n") + 1
    tail = data[end:]
    if end == 0:  # created, its writer killed before the first line was whole: nothing in it yet
        return IndexText(path, {}, [], 0, tail)
    first, _, body = data[:end].partition(b"\n")
    try:
        identity = json.loads(first)
    except ValueError:
        identity = None
    damaged = 0
    if not isinstance(identity, dict) or identity.get("pack") != VERSION:
        identity, damaged = {}, 1
    if task is None:
        lines: Iterator[bytes] = iter(body.splitlines())
    else:
        lines = _lines_of(body, task)
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            damaged += 1
            continue
        if not isinstance(entry, dict) or not all(isinstance(entry.get(key), int) for key in _KEYS):
            damaged += 1
            continue
        entries.append(entry)
    return IndexText(path, identity, entries, damaged, tail)


def _lines_of(body: bytes, task: int) -> Iterator[bytes]:
    """The lines of ``body`` that start as the writer starts ``task``'s entries."""
    needle = b'{"id":%d,' % task
    position = 0 if body.startswith(needle) else (body.find(b"\n" + needle) + 1 or -1)
    while position >= 0:
        end = body.find(b"\n", position)
        end = len(body) if end < 0 else end
        yield body[position:end]
        position = body.find(b"\n" + needle, end) + 1 or -1


def verify(stem: str, entry: dict, size_of: dict[int, int] | None = None) -> bytes | None:
    """The output an index entry describes, or None if the pack does not hold it intact (its
    bytes lie beyond the file's end, or do not start with the header, or fail the CRC)."""
    path = f"{stem}.{entry['pack']}"
    head = header(entry["id"], entry["run"], entry["len"])
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if entry["off"] < 0 or entry["off"] + len(head) + entry["len"] > size:
                return None
            stream.seek(entry["off"])
            data = stream.read(len(head) + entry["len"])
    except OSError:
        return None
    if not data.startswith(head):
        return None
    output = data[len(head) :]
    if zlib.crc32(output) != entry["crc"]:
        return None
    return output


class Attempt:
    """One run of a task whose output can be read: from a pack, or a ``log_ID`` file."""

    __slots__ = ("task", "t0", "t1", "rc", "farmer", "rank", "host", "where", "output")

    def __init__(self, task: int, t0: float | None, t1: float, rc: int | None, farmer: str | None,
                 rank: int | None, host: str | None, where: str, output: bytes | None) -> None:
        self.task, self.t0, self.t1, self.rc = task, t0, t1, rc
        self.farmer, self.rank, self.host = farmer, rank, host
        self.where = where  # the file it is read from
        self.output = output  # None: its index entry names bytes the pack does not hold (intact)


def attempts(logs: str, task: int) -> list[Attempt]:
    """Every readable run of ``task`` in the log directory, both layouts, oldest first."""
    found = []
    try:
        names = sorted(os.listdir(logs))
    except FileNotFoundError:
        names = []
    for name in names:
        if name.startswith("pack.") and name.endswith(INDEX_SUFFIX):
            try:
                index = read_index(os.path.join(logs, name), task)
            except OSError:
                continue
            for entry in index.entries:
                output = verify(index.stem, entry)
                found.append(Attempt(task, entry.get("t0"), float(entry.get("t1") or 0.0), entry.get("rc"),
                                     index.identity.get("f"), index.identity.get("rank"),
                                     index.identity.get("host"), f"{index.stem}.{entry['pack']}", output))
    # the files layout: log_ID, and log_ID.N for the earlier attempts of a task that was retried
    stem = f"log_{task}"
    for name in [stem, *(n for n in names if n.startswith(stem + ".") and n[len(stem) + 1 :].isdigit())]:
        plain = os.path.join(logs, name)
        try:
            with open(plain, "rb") as stream:
                found.append(Attempt(task, None, os.fstat(stream.fileno()).st_mtime, None, None, None, None, plain,
                                     stream.read()))
        except OSError:
            pass
    found.sort(key=lambda a: (a.t1, a.t0 or 0.0))
    return found
