"""Task-list handlers turn a line into a command: compared exactly, and run through bash."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from mpifarmer.runners import BasicRunner
from mpifarmer.task import Task, TaskSpec
from mpifarmer.tasklists import ListTaskList, TaskList, TemplateTaskList


def run_command(command: str) -> tuple[int, str]:
    argv = BasicRunner().build(Task(id=0, line="", command=command))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return done.returncode, done.stdout


@pytest.mark.parametrize("line", ["echo hi", "a | b > 'c d'", "", "  padded  "])
def test_base_and_list_handlers_return_the_line(line: str) -> None:
    assert TaskList().command(line) == line
    assert ListTaskList().command(line) == line


def test_list_handler_is_a_tasklist() -> None:
    assert isinstance(ListTaskList(), TaskList)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("plain.root", "process --in plain.root --out plain.root.out"),
        ("a b.root", "process --in 'a b.root' --out 'a b.root'.out"),
        ("it's", "process --in 'it'\"'\"'s' --out 'it'\"'\"'s'.out"),
        ("$HOME", "process --in '$HOME' --out '$HOME'.out"),
        ("", "process --in '' --out ''.out"),
    ],
)
def test_template_quotes_every_occurrence(line: str, expected: str) -> None:
    assert TemplateTaskList("process --in {} --out {}.out").command(line) == expected


def test_template_braces_in_line_are_not_expanded_again() -> None:
    assert TemplateTaskList("cat {}").command("{}") == "cat '{}'"


@pytest.mark.parametrize(
    "line",
    ["a b", "it's", 'say "hi"', "$HOME", "`id`", "$(echo no)", "semi;colon", "back\\slash", "tab\there", "*"],
)
def test_template_line_arrives_as_one_argument(line: str) -> None:
    handler = TemplateTaskList("printf '<%s>\\n' {} | tr -d '\\n'; echo")
    code, out = run_command(handler.command(line))
    assert (code, out) == (0, f"<{line}>\n")


def test_template_shell_features_outside_the_placeholder_still_work() -> None:
    handler = TemplateTaskList("echo {} | wc -c; X=2; echo $X")
    code, out = run_command(handler.command("abc"))
    assert (code, out.split()) == (0, ["4", "2"])


def test_template_output_splits_back_into_the_line() -> None:
    line = "weird 'name' with $x and \"quotes\""
    assert shlex.split(TemplateTaskList("prog {}").command(line)) == ["prog", line]


def test_template_without_placeholder_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"template has no \{\} placeholder"):
        TemplateTaskList("process --in file")


def test_template_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="command must be a string"):
        TemplateTaskList(["echo", "{}"])  # type: ignore[arg-type]


def test_repr() -> None:
    assert repr(ListTaskList()) == "ListTaskList()"
    assert repr(TemplateTaskList("x {}")) == "TemplateTaskList(command='x {}')"


class Coloured(TaskList):
    """A handler that gives attributes: the first word is a colour, the rest the command."""

    def command(self, line: str) -> tuple[str, dict]:
        colour, _, command = line.partition(" ")
        return command, {"env": {"COLOUR": colour}}


def test_describe_takes_a_bare_string_as_a_command_without_attributes() -> None:
    assert ListTaskList().describe("echo hi") == ("echo hi", {})
    assert TemplateTaskList("cat {}").describe("a b") == ("cat 'a b'", {})


def test_describe_takes_a_command_and_attributes() -> None:
    spec = Coloured().describe("blue echo $COLOUR")
    assert spec.command == "echo $COLOUR" and spec.attrs == {"env": {"COLOUR": "blue"}}


def test_describe_refuses_an_answer_that_is_neither() -> None:
    class Broken(TaskList):
        def command(self, line: str):  # type: ignore[override]
            return (1, 2)

    with pytest.raises(TypeError, match="must return a string or"):
        Broken().describe("x")


def test_only_handlers_of_ones_own_may_give_attributes() -> None:
    assert not ListTaskList().may_give_attributes()
    assert not TemplateTaskList("cat {}").may_give_attributes()
    assert Coloured().may_give_attributes()


def test_command_of_is_describes_command_whatever_the_handler_overrides() -> None:
    class Upper(TaskList):
        def command(self, line: str) -> str:
            return line.upper()

    class Described(TaskList):
        def describe(self, line: str) -> TaskSpec:
            return super().describe(f"nice {line}")

    for handler, expected in ((TaskList(), "echo hi"), (ListTaskList(), "echo hi"), (Upper(), "ECHO HI"),
                              (Described(), "nice echo hi"), (TemplateTaskList("run {}"), "run 'echo hi'")):
        assert handler.command_of("echo hi") == handler.describe("echo hi").command == expected
