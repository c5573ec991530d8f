"""The pack writer and reader (mpifarmer.store.packs): records, index, torn ends, kills, attempts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mpifarmer.errors import FarmerError, UsageError
from mpifarmer.store.packs import PackWriter, attempts, read_index, verify
from mpifarmer.store.workdir import WorkDir
from mpifarmer.tasklog import NoOutput, show_log, task_count

IDENTITY = {"f": "f0-host-1", "rank": 0, "host": "host"}


def source(tmp_path: Path, data: bytes) -> int:
    """An open file holding ``data``, as a task's spool file is when the task ends."""
    path = tmp_path / f"spool-{len(list(tmp_path.iterdir()))}"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


def write(writer: PackWriter, tmp_path: Path, task: int, data: bytes, t1: float, rc: int = 0) -> None:
    fd = source(tmp_path, data)
    try:
        writer.add(task, fd, rc, t1 - 0.5, t1)
    finally:
        os.close(fd)


def test_records_round_trip_and_only_the_tasks_own_entries_are_read(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = PackWriter(str(logs / "pack.f0.r0.g0"), IDENTITY)
    for task in (1, 10, 11, 1):  # task 1's needle must not match 10 or 11
        write(writer, tmp_path, task, f"output of {task}\n".encode() * (task + 1), t1=100.0 + len(os.listdir(logs)))
    writer.close()
    assert sorted(os.listdir(logs)) == ["pack.f0.r0.g0.0", "pack.f0.r0.g0.index"]
    index = read_index(str(logs / "pack.f0.r0.g0.index"), 1)
    assert [e["id"] for e in index.entries] == [1, 1] and index.identity == {"pack": 1, **IDENTITY}
    assert [e["id"] for e in read_index(str(logs / "pack.f0.r0.g0.index")).entries] == [1, 10, 11, 1]
    found = attempts(str(logs), 10)
    assert len(found) == 1 and found[0].output == b"output of 10\n" * 11 and found[0].farmer == "f0-host-1"
    assert [a.output for a in attempts(str(logs), 1)] == [b"output of 1\n" * 2] * 2
    assert attempts(str(logs), 2) == []


def test_a_torn_record_and_a_torn_index_line_at_the_end_are_ignored(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    stem = logs / "pack.f0.r0.g0"
    writer = PackWriter(str(stem), IDENTITY)
    write(writer, tmp_path, 3, b"first\n", t1=10.0)
    write(writer, tmp_path, 3, b"second\n", t1=11.0)
    writer.close()
    # a writer killed mid-record, then mid-index-line, for a third run of task 3
    with open(f"{stem}.0", "ab") as pack:
        pack.write(b"#run 3 3 100\nthird, cut")
    with open(f"{stem}.index", "ab") as index:
        index.write(b'{"id":3,"run":3,"pack":0,"off":')
    text = read_index(f"{stem}.index", 3)
    assert len(text.entries) == 2 and text.tail.startswith(b'{"id":3') and text.damaged == 0
    assert [a.output for a in attempts(str(logs), 3)] == [b"first\n", b"second\n"]


def test_an_index_entry_beyond_the_pack_or_with_wrong_bytes_is_not_trusted(tmp_path: Path) -> None:
    workdir = fake_workdir(tmp_path, count=3)
    logs = workdir.logs
    stem = logs / "pack.f0.r0.g0"
    writer = PackWriter(str(stem), IDENTITY)
    write(writer, tmp_path, 0, b"kept\n", t1=10.0)
    write(writer, tmp_path, 1, b"beyond the end\n", t1=11.0)
    write(writer, tmp_path, 2, b"flipped\n", t1=12.0)
    writer.close()
    entries = read_index(f"{stem}.index").entries
    assert verify(str(stem), entries[1]) == b"beyond the end\n"
    # the pack lost its tail (not yet visible on another node, say) and a byte of task 2 changed
    data = bytearray(Path(f"{stem}.0").read_bytes())
    cut = entries[2]["off"]
    data[cut + len(b"#run 2 3 8\n")] ^= 0xFF
    Path(f"{stem}.0").write_bytes(bytes(data))
    assert verify(str(stem), entries[2]) is None  # CRC
    moved = dict(entries[0], off=entries[0]["off"] + 1)
    assert verify(str(stem), moved) is None  # header
    Path(f"{stem}.0").write_bytes(bytes(data[: entries[1]["off"] + 5]))
    assert verify(str(stem), entries[1]) is None  # beyond the end
    assert verify(str(stem), entries[0]) == b"kept\n"
    assert [a.output for a in attempts(str(logs), 1)] == [None]
    out = io.BytesIO()
    assert show_log(workdir, "1", out) == 0
    assert b"is not complete" in out.getvalue() and b"beyond the end" not in out.getvalue()


def test_several_attempts_from_both_layouts_come_oldest_first_with_headers(tmp_path: Path) -> None:
    workdir = fake_workdir(tmp_path, count=8)
    old = PackWriter(os.fspath(workdir.pack_stem("f0-host-1", 0)) + ".g0", IDENTITY)
    new = PackWriter(os.fspath(workdir.pack_stem("f2-host-9", 1)) + ".g0", {"f": "f2-host-9", "rank": 1, "host": "b"})
    write(new, tmp_path, 7, b"third run\n", t1=3000.0, rc=0)
    write(old, tmp_path, 7, b"first run\n", t1=1000.0, rc=1)
    old.close()
    new.close()
    plain = workdir.log(7)
    plain.write_text("second run (files layout)\n")
    os.utime(plain, (2000.0, 2000.0))
    out = io.BytesIO()
    assert show_log(workdir, "7", out) == 0
    lines = out.getvalue().decode().splitlines()
    assert lines[1::2] == ["first run", "second run (files layout)", "third run"]
    assert lines[0].startswith("==> task 7, run 1 of 3: farmer f0-host-1 on host, exit code 1")
    assert lines[2].startswith("==> task 7, run 2 of 3: log_7")
    assert lines[4].startswith("==> task 7, run 3 of 3: farmer f2-host-9 rank 1 on b, exit code 0")


def test_one_attempt_prints_its_output_alone(tmp_path: Path) -> None:
    workdir = fake_workdir(tmp_path, count=1)
    workdir.log(0).write_bytes(b"only\n\x00binary too\n")
    out = io.BytesIO()
    assert show_log(workdir, "0", out) == 0
    assert out.getvalue() == b"only\n\x00binary too\n"


def test_a_pack_rolls_over_at_its_limit(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = PackWriter(str(logs / "pack.f0.r0.g0"), IDENTITY, limit=1000)
    for task in range(20):
        write(writer, tmp_path, task, bytes([65 + task]) * 300, t1=float(task))
    big = bytes(range(256)) * 9000  # over the copy chunk: copied in pieces
    write(writer, tmp_path, 20, big, t1=30.0)
    writer.close()
    packs = sorted(name for name in os.listdir(logs) if not name.endswith(".index"))
    assert len(packs) > 5
    assert all(os.path.getsize(logs / name) <= 1000 for name in packs[:-1])
    for task in range(20):
        assert [a.output for a in attempts(str(logs), task)] == [bytes([65 + task]) * 300]
    assert attempts(str(logs), 20)[0].output == big


@pytest.mark.parametrize("where", ["torn", "data", "index", "after"])
def test_a_writer_killed_at_any_point_loses_at_most_the_run_it_was_writing(tmp_path: Path, where: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {os.fspath(Path(__file__).parents[2])!r})
        from mpifarmer.store.packs import PackFault, PackWriter
        writer = PackWriter({os.fspath(logs / "pack.f0.r0.g0")!r}, {{"f": "f0"}}, fault=PackFault("3:{where}"))
        for task in range(5):
            path = {os.fspath(tmp_path)!r} + f"/spool{{task}}"
            with open(path, "wb") as stream:
                stream.write(b"run of %d\\n" % task * 1000)
            fd = os.open(path, os.O_RDONLY)
            writer.add(task, fd, 0, 1.0, 2.0 + task)
            writer.flush()
    """)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    index = read_index(str(logs / "pack.f0.r0.g0.index"))
    kept = [entry["id"] for entry in index.entries]
    assert kept == ([0, 1, 2] if where == "after" else [0, 1])
    assert (index.tail != b"") == (where == "index")
    for task in range(5):
        outputs = [a.output for a in attempts(str(logs), task)]
        assert outputs == ([b"run of %d\n" % task * 1000] if task in kept else [])


def test_task_count_reads_the_last_intact_add_record(tmp_path: Path) -> None:
    workdir = fake_workdir(tmp_path, count=5)
    with workdir.journal.open("ab") as stream:
        stream.write(b'{"e":"add","first":5,"lines":["a","b"]}\n{"e":"claim","f":"f0","ids":[5]}\n')
        stream.write(b'{"e":"add","first":7,"lines":["c"')  # torn
    assert task_count(workdir) == 7


def test_bad_requests_are_one_line_errors(tmp_path: Path) -> None:
    workdir = fake_workdir(tmp_path, count=2)
    with pytest.raises(UsageError, match="'x' is not a task ID"):
        show_log(workdir, "x", io.BytesIO())
    with pytest.raises(UsageError, match="task 2 is not in .* which has 2 tasks"):
        show_log(workdir, "2", io.BytesIO())
    with pytest.raises(NoOutput, match="task 1 has no output yet") as caught:
        show_log(workdir, "1", io.BytesIO())
    assert caught.value.exit_code == 1
    with pytest.raises(FarmerError, match="is not a work directory") as missing:
        show_log(WorkDir(tmp_path / "nowhere"), "0", io.BytesIO())
    assert missing.value.exit_code == 2


def fake_workdir(tmp_path: Path, count: int) -> WorkDir:
    workdir = WorkDir(tmp_path / "wd")
    workdir.prepare()
    workdir.journal.write_text(json.dumps({"e": "add", "first": 0, "lines": ["true"] * count},
                                          separators=(",", ":")) + "\n")
    return workdir


@pytest.mark.parametrize("left", [b"", b'{"pack": 1, "f": "f0'])
def test_an_index_whose_writer_died_before_its_first_line_was_whole_holds_nothing(tmp_path: Path,
                                                                                   left: bytes) -> None:
    """A spawner killed between creating its index and writing the first line leaves it empty or
    with a partial line (the crash harness found an empty one): nothing damaged, nothing to read."""
    index_path = tmp_path / "pack.f0.r0.g0.index"
    index_path.write_bytes(left)
    index = read_index(str(index_path))
    assert (index.identity, index.entries, index.damaged, index.tail) == ({}, [], 0, left)
    assert attempts(str(tmp_path), 0) == []
