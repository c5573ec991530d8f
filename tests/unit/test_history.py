"""The read-only history reader: every record once, in order, across generations and compactions."""

import json
import os

from mpifarmer.store.history import all_records, batches, journals
from mpifarmer.store.workdir import WorkDir


def _lines(*records):
    return b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in records)


def _header(generation):
    return _lines({"e": "journal", "v": 1, "gen": generation})


def _workdir(tmp_path):
    workdir = WorkDir(tmp_path / "w")
    workdir.history.mkdir(parents=True)
    workdir.old_journal(0).write_bytes(_lines({"e": "add", "n": 0}, {"e": "end", "n": 1}))
    workdir.old_journal(1).write_bytes(_header(1) + _lines({"e": "end", "n": 2}))
    workdir.journal.write_bytes(_header(2) + _lines({"e": "claim", "n": 3}, {"e": "end", "n": 4}))
    return workdir


def test_every_generation_is_read_once_oldest_first(tmp_path):
    workdir = _workdir(tmp_path)
    assert [r["n"] for r in all_records(workdir)] == [0, 1, 2, 3, 4]
    assert [r["n"] for r in all_records(workdir, b'"e":"end"')] == [1, 2, 4]


def test_a_compaction_while_reading_neither_hides_nor_repeats_a_record(tmp_path):
    workdir = _workdir(tmp_path)
    with journals(workdir) as (generation, streams):
        assert generation == 2
        # What Store.compact does: link the live journal into the history, then replace it.
        os.link(workdir.journal, workdir.old_journal(2))
        new = workdir.root / "journal.new"
        new.write_bytes(_header(3) + _lines({"e": "end", "n": 99}))
        os.replace(new, workdir.journal)
        seen = [r["n"] for _, stream in streams for found in batches(stream) for r in found]
    assert seen == [0, 1, 2, 3, 4]
    assert [r["n"] for r in all_records(workdir)] == [0, 1, 2, 3, 4, 99]


def test_torn_and_unfinished_lines_are_left_out(tmp_path):
    workdir = WorkDir(tmp_path / "w")
    workdir.root.mkdir()
    workdir.journal.write_bytes(_lines({"n": 1}) + b'{"n": 2} torn\n' + _lines({"n": 3}) + b'{"n": 4}')
    assert [r["n"] for r in all_records(workdir)] == [1, 3]


def test_a_missing_journal_is_an_empty_history(tmp_path):
    assert list(all_records(WorkDir(tmp_path / "nothing"))) == []


def test_records_split_across_chunks_are_whole(tmp_path):
    workdir = WorkDir(tmp_path / "w")
    workdir.root.mkdir()
    workdir.journal.write_bytes(_lines(*({"n": i, "pad": "x" * (i % 7)} for i in range(500))))
    with workdir.journal.open("rb") as stream:
        seen = [r["n"] for found in batches(stream, chunk=37) for r in found]
    assert seen == list(range(500))


def test_several_markers_select_the_lines_with_any_of_them(tmp_path):
    workdir = _workdir(tmp_path)
    assert [r["n"] for r in all_records(workdir, (b'"e":"end"', b'"e":"claim"'))] == [1, 2, 3, 4]
    assert [r["n"] for r in all_records(workdir, (b'"e":"add"',))] == [0]
