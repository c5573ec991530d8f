"""Task-list handlers: how one line of a task list becomes a shell command."""

from __future__ import annotations

import shlex

__all__ = ["PLACEHOLDER", "ListTaskList", "TaskList", "TemplateTaskList"]

#: The marker in a template that stands for the task line.
PLACEHOLDER = "{}"


class TaskList:
    """Turns one task-list line into the shell command that a runner executes.

    The reader (:mod:`mpifarmer.tasklists.reader`) splits the file into task lines; a handler
    only maps each line to a command. Subclasses override :meth:`command`; their constructor's
    keyword arguments are the options a handler definition may set (see :mod:`mpifarmer.config`),
    and arrive as strings from INI files. The base class returns the line unchanged.
    """

    def command(self, line: str) -> str:
        """Return the shell command for the task-list ``line``."""
        return line

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
