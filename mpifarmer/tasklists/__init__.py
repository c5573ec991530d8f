"""Task-list handlers: how a line of the task list becomes a shell command.

``ListTaskList`` (the default) runs each line as written; ``TemplateTaskList`` substitutes each
line into a command template.
"""

from mpifarmer.tasklists.handlers import ListTaskList, TaskList, TemplateTaskList

__all__ = ["ListTaskList", "TaskList", "TemplateTaskList"]
