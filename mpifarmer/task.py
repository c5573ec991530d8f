"""The task record shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Task"]


@dataclass(frozen=True, slots=True)
class Task:
    """One line of the task list.

    ``id`` is the 0-based index among the task lines (blank and comment lines do not count),
    ``line`` the text as it stands in the list, ``command`` the shell command the task-list
    handler made of it. ``attrs`` carries optional per-task attributes (future: cores, GPUs,
    retries, timeouts) without changing this type.
    """

    id: int
    line: str
    command: str
    attrs: dict[str, Any] = field(default_factory=dict)
