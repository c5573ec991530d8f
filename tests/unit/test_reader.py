"""Reading task lines: what is a task, IDs and line numbers, offsets, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpifarmer.errors import TaskListError
from mpifarmer.tasklists.reader import TaskLines, read_task_lines


def write(tmp_path: Path, data: bytes, name: str = "tasks.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read(tmp_path: Path, data: bytes, **options: object) -> TaskLines:
    return read_task_lines(write(tmp_path, data), **options)  # type: ignore[arg-type]


def read_error(tmp_path: Path, data: bytes, **options: object) -> TaskListError:
    with pytest.raises(TaskListError) as caught:
        read(tmp_path, data, **options)
    return caught.value


def test_blank_and_comment_lines_are_not_tasks_but_keep_their_line_numbers(tmp_path: Path) -> None:
    tasks = read(tmp_path, b"# header\n\necho a\n   \n  # indented\n\techo b  \necho # not a comment\n")
    assert tasks.texts == ["echo a", "echo b", "echo # not a comment"]
    assert list(tasks.linenos) == [3, 6, 7]
    assert tasks.end == len(b"# header\n\necho a\n   \n  # indented\n\techo b  \necho # not a comment\n")
    assert tasks.next_lineno == 8
    assert tasks.tail_start is None and tasks.tail_lineno is None


def test_crlf_line_endings_are_stripped(tmp_path: Path) -> None:
    tasks = read(tmp_path, b"echo a\r\n\r\n#c\r\necho b\r\n")
    assert tasks.texts == ["echo a", "echo b"]
    assert list(tasks.linenos) == [1, 4]


def test_missing_final_newline_still_gives_the_last_task(tmp_path: Path) -> None:
    data = b"echo a\necho b"
    tasks = read(tmp_path, data)
    assert tasks.texts == ["echo a", "echo b"]
    assert list(tasks.linenos) == [1, 2]
    assert tasks.end == len(data) and tasks.next_lineno == 3
    assert tasks.tail_start == len(b"echo a\n") and tasks.tail_lineno == 2


def test_unterminated_last_line_is_left_for_the_next_read(tmp_path: Path) -> None:
    tasks = read(tmp_path, b"echo a\necho b", include_unterminated=False)
    assert tasks.texts == ["echo a"]
    assert tasks.end == len(b"echo a\n") and tasks.next_lineno == 2
    assert tasks.tail_start is None


def test_file_with_only_an_unterminated_line_and_include_unterminated_false(tmp_path: Path) -> None:
    tasks = read(tmp_path, b"echo a", include_unterminated=False)
    assert tasks.texts == [] and tasks.end == 0 and tasks.next_lineno == 1


def test_empty_file_has_no_tasks(tmp_path: Path) -> None:
    tasks = read(tmp_path, b"")
    assert (tasks.texts, tasks.end, tasks.next_lineno, len(tasks)) == ([], 0, 1, 0)


def test_reading_on_from_an_offset_continues_ids_and_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, b"# c\necho a\necho b")
    first = read_task_lines(path, include_unterminated=False)
    assert first.texts == ["echo a"]
    with path.open("ab") as stream:
        stream.write(b"-more\n\necho c\n")
    rest = read_task_lines(path, start=first.end, first_lineno=first.next_lineno, include_unterminated=False)
    assert rest.texts == ["echo b-more", "echo c"]
    assert list(rest.linenos) == [3, 5]
    assert rest.end == path.stat().st_size and rest.next_lineno == 6


def test_reading_at_the_end_returns_nothing_and_keeps_the_position(tmp_path: Path) -> None:
    path = write(tmp_path, b"echo a\n")
    tasks = read_task_lines(path, start=7, first_lineno=2)
    assert tasks.texts == [] and tasks.end == 7 and tasks.next_lineno == 2


def test_tail_start_is_an_absolute_offset_when_reading_from_an_offset(tmp_path: Path) -> None:
    path = write(tmp_path, b"echo a\necho b\necho c")
    tasks = read_task_lines(path, start=7, first_lineno=2)
    assert tasks.texts == ["echo b", "echo c"]
    assert tasks.tail_start == 14 and tasks.tail_lineno == 3
    again = read_task_lines(path, start=tasks.tail_start, first_lineno=tasks.tail_lineno)
    assert again.texts == ["echo c"] and list(again.linenos) == [3]


def test_utf8_text_is_kept(tmp_path: Path) -> None:
    tasks = read(tmp_path, "echo été ✓\n".encode())
    assert tasks.texts == ["echo été ✓"]


def test_non_utf8_byte_names_the_line_and_column(tmp_path: Path) -> None:
    error = read_error(tmp_path, b"echo a\n# ok\necho caf\xe9\n")
    assert error.line == 3
    assert "0xe9" in error.problem and "column 9" in error.problem
    assert str(error) == f"{tmp_path / 'tasks.txt'}:3: {error.problem}"
    assert "\n" not in str(error)


def test_nul_byte_names_the_line(tmp_path: Path) -> None:
    error = read_error(tmp_path, b"echo a\r\necho b\r\necho \x00c\r\n")
    assert error.line == 3 and "NUL" in error.problem


def test_bad_byte_after_an_offset_names_the_absolute_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"echo a\necho b\n\xff\n")
    with pytest.raises(TaskListError) as caught:
        read_task_lines(path, start=7, first_lineno=2)
    assert caught.value.line == 3


def test_bad_byte_in_an_unterminated_tail_left_for_later_is_not_an_error_yet(tmp_path: Path) -> None:
    tasks = read(tmp_path, b"echo a\n\xff", include_unterminated=False)
    assert tasks.texts == ["echo a"]


def test_a_one_megabyte_line_is_one_task(tmp_path: Path) -> None:
    long = "echo " + "x" * (1 << 20)
    tasks = read(tmp_path, f"echo a\n{long}\necho b\n".encode())
    assert [len(text) for text in tasks.texts] == [6, len(long), 6]
    assert tasks.texts[1] == long and list(tasks.linenos) == [1, 2, 3]


def test_directory_gives_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(TaskListError) as caught:
        read_task_lines(tmp_path)
    assert caught.value.line is None
    assert str(caught.value) == f"{tmp_path}: is a directory; give the task list file"


def test_missing_file_gives_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(TaskListError) as caught:
        read_task_lines(missing)
    assert caught.value.path == str(missing) and caught.value.line is None
    assert "no such file" in str(caught.value) and "\n" not in str(caught.value)


def test_a_leading_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "tasks.txt"
    path.write_bytes(b"\xef\xbb\xbf# comment\necho a\n")
    lines = read_task_lines(path)
    assert lines.texts == ["echo a"] and list(lines.linenos) == [2] and lines.end == path.stat().st_size


@pytest.mark.parametrize("data", [
    b"echo a\necho b\n",
    b"echo a\necho b",  # no newline at the end
    "ünï ✓\n€ 5\n".encode(),
    b"a\n\nb\n",  # a blank line
    b"a\n  b\n", b"a \nb\n", b"a\r\nb\r\n", b"#c\na\n", b"a\n#c\n", b"a # not a comment\n",
    "a\u00a0\nb\n".encode(), "\u2003a\n".encode(),  # Unicode spaces that str.strip removes
    b"a\x1fb\n", b"a\x1f\n",
])
def test_lists_read_in_bulk_read_as_line_by_line(tmp_path: Path, data: bytes,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from mpifarmer.tasklists import reader as module

    bulk = read(tmp_path, data)
    monkeypatch.setattr(module, "_all_plain", lambda chunks: False)
    one_by_one = read(tmp_path, data)
    assert (list(bulk.texts), list(bulk.linenos), bulk.end, bulk.next_lineno, bulk.tail_start) == \
        (list(one_by_one.texts), list(one_by_one.linenos), one_by_one.end, one_by_one.next_lineno,
         one_by_one.tail_start)


def test_plain_lists_take_the_bulk_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mpifarmer.tasklists import reader as module

    plain = module._all_plain
    assert plain([b"echo a", b"echo b"]) and not plain([b"echo a", b" echo b"]) and not plain([b"a", b""])
    taken = []
    monkeypatch.setattr(module, "_all_plain", lambda chunks: taken.append(plain(chunks)) or taken[-1])
    assert list(read(tmp_path, b"echo a\necho b\n").texts) == ["echo a", "echo b"]
    assert taken == [True]


@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbfecho a\necho b\n# c\n\n  echo d\r\necho e",
    "".join(f"echo {i}\n" for i in range(50)).encode() + b"echo last",
    b"a\n" * 40,
])
@pytest.mark.parametrize("unterminated", [True, False])
def test_a_list_read_in_small_blocks_reads_as_in_one(tmp_path: Path, data: bytes, unterminated: bool,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from mpifarmer.tasklists import reader as module

    whole = read(tmp_path, data, include_unterminated=unterminated)
    for block in (1, 2, 5, 7, 64):
        monkeypatch.setattr(module, "BLOCK", block)
        small = read(tmp_path, data, include_unterminated=unterminated)
        assert (list(small.texts), list(small.linenos), small.end, small.next_lineno, small.tail_start,
                small.tail_lineno) == (list(whole.texts), list(whole.linenos), whole.end, whole.next_lineno,
                                       whole.tail_start, whole.tail_lineno), f"block {block}"
    resumed = read(tmp_path, data, start=whole.end if not unterminated else 0, include_unterminated=unterminated)
    assert unterminated or list(resumed.texts) == []
