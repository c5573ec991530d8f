"""The jsonl task-list handler: a JSON object per line, the command and the task's options."""

from __future__ import annotations

import pytest

from mpifarmer.errors import TaskListError
from mpifarmer.task import TaskSpec
from mpifarmer.tasklists import JsonTaskList
from mpifarmer.tasklists.reader import check_lines

HANDLER = JsonTaskList()


def test_a_line_with_only_cmd_is_the_command_without_attributes() -> None:
    assert HANDLER.describe('{"cmd": "echo hi > out"}') == TaskSpec("echo hi > out", {})


def test_every_option_becomes_an_attribute_and_cores_and_gpus_a_resource_request() -> None:
    line = ('{"cmd": "run", "timeout": 2.5, "retries": 3, "env": {"A": "1"}, "cwd": "sub", "name": "first", '
            '"cores": 2, "gpus": 1}')
    assert HANDLER.describe(line) == TaskSpec("run", {
        "timeout": 2.5, "retries": 3, "env": {"A": "1"}, "cwd": "sub", "name": "first",
        "resources": {"cores": 2, "gpus": 1}})
    assert HANDLER.checked(line) == HANDLER.describe(line)  # the farmer's check of a line describes it too


def test_no_gpus_asks_for_none() -> None:
    # Recorded, not left out: a task's 0 wins over --gpus-per-task.
    assert HANDLER.describe('{"cmd": "x", "gpus": 0}').attrs == {"resources": {"gpus": 0}}


def test_the_handler_says_it_checks_lines_and_gives_attributes() -> None:
    assert HANDLER.checks_lines() and HANDLER.may_give_attributes()


@pytest.mark.parametrize(("line", "expected"), [
    ('{"cmd": "x"', "is not a JSON object"),
    ('["echo", "x"]', "is a JSON array, not an object"),
    ('"echo x"', "is a JSON string, not an object"),
    ("echo x", "is not a JSON object"),
    ('{"timeout": 5}', "key 'cmd' is missing"),
    ('{"cmd": ""}', "key 'cmd' must be a non-empty string"),
    ('{"cmd": ["echo"]}', "key 'cmd' must be a non-empty string"),
    ('{"cmd": "x", "tmeout": 5}', "key 'tmeout' is unknown; did you mean 'timeout'?"),
    ('{"cmd": "x", "colour": "red"}', "key 'colour' is unknown; the keys are cmd, timeout,"),
    ('{"cmd": "x", "timeout": "5"}', "key 'timeout' must be a number of seconds more than 0, not \"5\""),
    ('{"cmd": "x", "timeout": 0}', "key 'timeout' must be a number of seconds more than 0"),
    ('{"cmd": "x", "timeout": -1}', "key 'timeout'"),
    ('{"cmd": "x", "timeout": true}', "key 'timeout'"),
    ('{"cmd": "x", "timeout": NaN}', "key 'timeout'"),
    ('{"cmd": "x", "retries": 1.5}', "key 'retries' must be a whole number, 0 or more, not 1.5"),
    ('{"cmd": "x", "retries": -1}', "key 'retries'"),
    ('{"cmd": "x", "retries": false}', "key 'retries'"),
    ('{"cmd": "x", "env": ["A=1"]}', "key 'env' must be an object of strings"),
    ('{"cmd": "x", "env": {"A": 1}}', "key 'env' must map names to strings; 'A' is 1"),
    ('{"cmd": "x", "env": {"A=B": "1"}}', "key 'env' names the variable 'A=B'"),
    ('{"cmd": "x", "cwd": 3}', "key 'cwd' must be a directory path"),
    ('{"cmd": "x", "cwd": ""}', "key 'cwd'"),
    ('{"cmd": "x", "name": null}', "key 'name' must be a string, not null"),
    ('{"cmd": "x", "cores": 0}', "key 'cores' must be a whole number, 1 or more, not 0"),
    ('{"cmd": "x", "gpus": "1"}', "key 'gpus' must be a whole number, 0 or more"),
])
def test_a_bad_line_is_rejected_naming_the_key(line: str, expected: str) -> None:
    with pytest.raises(ValueError) as caught:
        HANDLER.check(line)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_check_lines_names_the_file_and_the_line_of_the_first_bad_one() -> None:
    texts = ['{"cmd": "a"}', '{"cmd": "b", "retries": "2"}', "garbage"]
    with pytest.raises(TaskListError) as caught:
        check_lines("tasks.jsonl", texts, [1, 4, 5], HANDLER.check)
    assert caught.value.line == 4
    assert str(caught.value).startswith("tasks.jsonl:4: key 'retries' must be a whole number")
