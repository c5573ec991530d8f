"""The append-only journal: incremental reads, whole-record appends, torn and damaged lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpifarmer.store.journal import Journal


def rec(n: int, **extra: object) -> dict[str, object]:
    return {"e": "test", "n": n, **extra}


def appended(journal: Journal, *records: dict[str, object]) -> None:
    """Append under the journal's contract: read what others wrote first."""
    journal.read_new()
    journal.append(list(records))


def raw_append(path: Path, data: bytes) -> None:
    """What a writer killed mid-write (or another program) leaves behind."""
    with path.open("ab") as stream:
        stream.write(data)


def file_lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "journal.jsonl"


def test_missing_file_reads_as_empty(path: Path) -> None:
    journal = Journal(path)
    assert journal.read_new() == [] and journal.offset == 0


def test_append_writes_one_compact_json_line_per_record(path: Path) -> None:
    journal = Journal(path)
    appended(journal, rec(1), rec(2, text="été ✓"))
    assert path.read_text(encoding="utf-8") == '{"e":"test","n":1}\n{"e":"test","n":2,"text":"été ✓"}\n'
    assert journal.offset == path.stat().st_size


def test_append_of_nothing_creates_nothing(path: Path) -> None:
    Journal(path).append([])
    assert not path.exists()


def test_reads_are_incremental(path: Path) -> None:
    writer, reader = Journal(path), Journal(path)
    appended(writer, rec(1), rec(2))
    assert reader.read_new() == [rec(1), rec(2)]
    assert reader.read_new() == []
    appended(writer, rec(3))
    assert reader.read_new() == [rec(3)]
    assert reader.offset == writer.offset == path.stat().st_size


def test_own_appends_are_not_read_back(path: Path) -> None:
    journal = Journal(path)
    appended(journal, rec(1))
    assert journal.read_new() == []


def test_two_writers_keep_their_offsets_right(path: Path) -> None:
    first, second, observer = Journal(path), Journal(path), Journal(path)
    appended(first, rec(1))
    appended(second, rec(2))
    appended(first, rec(3))
    assert first.read_new() == []  # it read rec(2) before appending rec(3)
    assert second.read_new() == [rec(3)]
    appended(second, rec(4), rec(5))
    assert first.read_new() == [rec(4), rec(5)]
    assert observer.read_new() == [rec(n) for n in range(1, 6)]
    assert first.offset == second.offset == observer.offset == path.stat().st_size


def test_torn_last_line_is_not_read_and_the_offset_stops_before_it(path: Path) -> None:
    journal = Journal(path)
    appended(journal, rec(1))
    size = path.stat().st_size
    raw_append(path, b'{"e":"test","n":2,"te')
    reader = Journal(path)
    assert reader.read_new() == [rec(1)]
    assert reader.offset == size
    assert reader.skipped == 0


def test_next_append_terminates_a_torn_line_and_readers_skip_it(path: Path) -> None:
    writer = Journal(path)
    appended(writer, rec(1))
    observer = Journal(path)
    assert observer.read_new() == [rec(1)]
    raw_append(path, b'{"e":"test","n":2,"te')  # a writer killed mid-write
    appended(writer, rec(3))
    assert file_lines(path) == [b'{"e":"test","n":1}', b'{"e":"test","n":2,"te torn', b'{"e":"test","n":3}',
                               b""]
    assert writer.offset == path.stat().st_size
    assert observer.read_new() == [rec(3)]
    assert observer.skipped == 1
    assert Journal(path).read_new() == [rec(1), rec(3)]


def test_reader_that_saw_the_torn_line_reads_on_after_another_writer_ended_it(path: Path) -> None:
    appended(Journal(path), rec(1))
    raw_append(path, b'{"e":"tes')
    early, writer = Journal(path), Journal(path)
    assert early.read_new() == [rec(1)]
    appended(writer, rec(2))
    assert early.read_new() == [rec(2)]
    appended(early, rec(3))
    assert file_lines(path)[-2:] == [b'{"e":"test","n":3}', b""]  # no stray blank line
    assert writer.read_new() == [rec(3)]


def test_torn_line_in_an_otherwise_empty_file(path: Path) -> None:
    raw_append(path, b'{"e":')
    journal = Journal(path)
    assert journal.read_new() == []
    journal.append([rec(1)])
    assert Journal(path).read_new() == [rec(1)]
    assert journal.offset == path.stat().st_size


def test_damaged_and_non_object_lines_are_skipped(path: Path) -> None:
    raw_append(path, b'{"e":"test","n":1}\nnot json\n\xff\xfe\n[1, 2]\n{"e":"test","n":2}\n')
    journal = Journal(path)
    assert journal.read_new() == [rec(1), rec(2)]
    assert journal.skipped == 2
    assert journal.offset == path.stat().st_size


def test_many_records_round_trip(path: Path) -> None:
    records = [rec(n, lines=[f"task {n} {'x' * (n % 50)}"]) for n in range(2000)]
    appended(Journal(path), *records)
    assert Journal(path).read_new() == records
    assert all(json.loads(line) for line in file_lines(path)[:-1])


def test_fsync_mode_appends_the_same_bytes(path: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.jsonl"
    appended(Journal(path, fsync=True), rec(1), rec(2))
    appended(Journal(plain), rec(1), rec(2))
    assert path.read_bytes() == plain.read_bytes()


def _all(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line]


def test_an_append_after_an_unread_one_is_logged_and_nothing_is_lost_or_read_twice(
        path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two writers whose lock failed to keep them apart (both read, then both append)."""
    a, b = Journal(path), Journal(path)
    a.append([{"n": 0}])
    assert a.read_new() == [] and b.read_new() == [{"n": 0}]
    b.append([{"n": 1, "by": "b"}])
    with caplog.at_level("ERROR"):
        a.append([{"n": 2, "by": "a"}])
        a.append([{"n": 3, "by": "a"}])  # still unread: one error for the lot
    assert a.raced == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "while this farmer held the work-directory lock" in errors[0], errors
    # a reads what b wrote, and not its own records back; every reader sees all four, undamaged.
    assert a.read_new() == [{"n": 1, "by": "b"}]
    assert b.read_new() == [{"n": 2, "by": "a"}, {"n": 3, "by": "a"}]
    fresh = Journal(path)
    assert [r["n"] for r in fresh.read_new()] == [0, 1, 2, 3] and fresh.skipped == 0
    # And the offsets are right again: the next appends are read by the other side only.
    a.append([{"n": 4}])
    b.append([{"n": 5}])
    assert b.read_new() == [{"n": 4}]
    assert a.read_new() == [{"n": 5}]
    assert a.raced == 2 and b.raced == 1  # b's append of 5 found 4 unread
    assert [r["n"] for r in _all(path)] == [0, 1, 2, 3, 4, 5]


def test_a_race_over_a_torn_line_leaves_only_the_torn_record_damaged(path: Path) -> None:
    a, b = Journal(path), Journal(path)
    a.append([{"n": 0}])
    with path.open("ab") as stream:
        stream.write(b'{"n": "torn')
    a.read_new(), b.read_new()
    b.append([{"n": 1}])
    a.append([{"n": 2}])
    fresh = Journal(path)
    assert [r["n"] for r in fresh.read_new()] == [0, 1, 2] and fresh.skipped == 1
    assert a.read_new() == [{"n": 1}]


def test_a_record_torn_just_before_its_newline_is_lost_for_every_reader(path: Path) -> None:
    """Bug 15 of tests/reliability/README.md: a writer killed after writing a record's JSON but
    before its newline leaves a line that parses. A farmer that read the file then took it for
    torn (it has no newline) and skipped it; its own append then ended the line with a newline,
    and every later reader applied the record that farmer had not: a task finished twice."""
    appended(Journal(path), rec(1))
    raw_append(path, json.dumps(rec(2), separators=(",", ":")).encode())  # all but the newline
    seen_torn = Journal(path)
    assert seen_torn.read_new() == [rec(1)]
    seen_torn.append([rec(3)])
    later = Journal(path)
    assert later.read_new() == [rec(1), rec(3)], "every reader agrees with the one that saw the record torn"
    assert later.skipped == 1


def test_a_record_torn_before_its_newline_behind_an_unread_append_is_lost_too(path: Path) -> None:
    """The same, when the farmer that ends the line had not read it at all (a lock that did not
    keep others out): it must not complete a record it never applied."""
    appended(Journal(path), rec(1))
    behind = Journal(path)
    assert behind.read_new() == [rec(1)]
    raw_append(path, json.dumps(rec(2), separators=(",", ":")).encode() + b"\n")
    raw_append(path, json.dumps(rec(3), separators=(",", ":")).encode())
    behind.append([rec(4)])
    assert Journal(path).read_new() == [rec(1), rec(2), rec(4)]
    assert behind.read_new() == [rec(2)]


def test_a_reader_notices_a_new_generation_however_far_it_had_read(path: Path) -> None:
    from mpifarmer.store.journal import GenerationChanged

    writer, reader = Journal(path), Journal(path)
    writer.append([rec(i) for i in range(5)])
    assert reader.read_new() == [rec(i) for i in range(5)]
    writer.new_generation(1)
    writer.append([rec(5)])
    assert writer.generation == 1 and path.read_bytes().startswith(b'{"e":"journal"')
    with pytest.raises(GenerationChanged) as caught:
        reader.read_new()
    assert caught.value.generation == 1
    reader.rebase(caught.value.generation, caught.value.start)
    assert reader.read_new() == [rec(5)]
    reader.append([rec(6)])
    fresh = Journal(path)
    with pytest.raises(GenerationChanged):
        fresh.read_new()  # a new reader starts at generation 0, and is told to load the snapshot first
    fresh.generation = 1
    assert fresh.read_new() == [rec(5), rec(6)], "the header is not a record"


def test_reads_in_chunks_say_when_there_is_more_and_take_long_records_whole(path: Path) -> None:
    journal = Journal(path)
    long = {"e": "test", "n": 1, "pad": "x" * 500}
    journal.append([rec(0), long, rec(2), rec(3)])
    reader, got = Journal(path), []
    while True:
        got += reader.read_new(max_bytes=40)
        if not reader.more:
            break
    assert got == [rec(0), long, rec(2), rec(3)] and reader.offset == path.stat().st_size
