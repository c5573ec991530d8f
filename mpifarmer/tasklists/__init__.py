"""Task-list handlers: how a line of the task list becomes a shell command.

``ListTaskList`` (the default) runs each line as written; ``TemplateTaskList`` substitutes each
line into a command template; ``JsonTaskList`` (``-t jsonl``) reads a JSON object per line, with
the command and the task's options.
"""

from mpifarmer.tasklists.handlers import ListTaskList, TaskList, TemplateTaskList
from mpifarmer.tasklists.jsonl import JsonTaskList

__all__ = ["JsonTaskList", "ListTaskList", "TaskList", "TemplateTaskList"]
