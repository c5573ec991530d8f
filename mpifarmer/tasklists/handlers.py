"""Task-list handlers: how one line of a task list becomes a shell command."""

from __future__ import annotations

import shlex
from typing import Any

from mpifarmer.task import TaskSpec

__all__ = ["PLACEHOLDER", "ListTaskList", "TaskList", "TemplateTaskList", "TaskSpec"]

#: The marker in a template that stands for the task line.
PLACEHOLDER = "{}"


class TaskList:
    """Turns one task-list line into the shell command that a runner executes.

    The reader (:mod:`mpifarmer.tasklists.reader`) splits the file into task lines; a handler
    only maps each line to a command. Subclasses override :meth:`command`; their constructor's
    keyword arguments are the options a handler definition may set (see :mod:`mpifarmer.config`),
    and arrive as strings from INI files. The base class returns the line unchanged.
    """

    def command(self, line: str) -> str | TaskSpec | tuple[str, dict[str, Any]]:
        """Return the shell command for the task-list ``line``, or the command and a mapping of
        the task's attributes (a :class:`TaskSpec` or a 2-tuple). A bare string, as
        PyTaskFarmer's handlers return, means no attributes."""
        return line

    def describe(self, line: str) -> TaskSpec:
        """:meth:`command`'s answer for ``line``, as a :class:`TaskSpec`."""
        spec = self.command(line)
        if isinstance(spec, str):
            return TaskSpec(spec)
        command, attrs = spec
        if not isinstance(command, str) or not isinstance(attrs, dict):
            raise TypeError(f"{type(self).__name__}.command({line!r}) must return a string or (string, dict), "
                            f"not {spec!r}")
        return TaskSpec(command, attrs)

    def command_of(self, line: str) -> str:
        """:meth:`describe`'s command alone; the line itself, with nothing built, for a handler
        that overrides neither :meth:`command` nor :meth:`describe` (rank 0 asks for every task it
        hands out)."""
        kind = type(self)
        if kind.command is TaskList.command and kind.describe is TaskList.describe:
            return line
        return self.describe(line).command

    def check(self, line: str) -> None:
        """Raise ValueError saying what is wrong with ``line``, if anything. The farmer checks every
        task line before it runs anything (and every line appended later), so that a bad line
        stops it with an error naming the file and line. The base class accepts every line."""

    def checked(self, line: str) -> TaskSpec:
        """:meth:`check`, then :meth:`describe`: how the farmer checks a line whose attributes it
        checks too (a handler whose ``describe`` checks as much may do both at once)."""
        self.check(line)
        return self.describe(line)

    def checks_lines(self) -> bool:
        """Whether :meth:`check` is overridden (else the farmer skips a call per line)."""
        return type(self).check is not TaskList.check

    def may_give_attributes(self) -> bool:
        """False for the handlers of this module, which return bare strings: a farmer then skips
        asking for the attributes of every line it adds (a second call per line at start-up)."""
        return type(self).command not in _STRING_ONLY

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ListTaskList(TaskList):
    """Each line is a shell command, run as written. This is the ``default`` handler."""


class TemplateTaskList(TaskList):
    """Each line is substituted into a command template.

    Every ``{}`` in ``command`` is replaced by the line quoted for the shell
    (:func:`shlex.quote`), so the line arrives as one argument whatever blanks, quotes or
    ``$`` it holds. With ``command = process --in {} --out {}.out`` the line ``a b.root`` becomes
    ``process --in 'a b.root' --out 'a b.root'.out``. There is no escape for a literal ``{}``;
    wrap such a command in a script.
    """

    def __init__(self, command: str) -> None:
        if not isinstance(command, str):
            raise TypeError(f"command must be a string, not {type(command).__name__}")
        if PLACEHOLDER not in command:
            raise ValueError(
                f"template has no {PLACEHOLDER} placeholder: {command!r}; "
                f"put {PLACEHOLDER} where the task line should go"
            )
        self.template = command

    def __repr__(self) -> str:
        return f"TemplateTaskList(command={self.template!r})"

    def command(self, line: str) -> str:
        """Return the template with every ``{}`` replaced by ``shlex.quote(line)``."""
        return self.template.replace(PLACEHOLDER, shlex.quote(line))


_STRING_ONLY = (TaskList.command, TemplateTaskList.command)
