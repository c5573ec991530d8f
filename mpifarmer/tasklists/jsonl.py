"""The ``jsonl`` handler: each task line is a JSON object holding the command and the task's options.

    {"cmd": "simulate --seed 1", "timeout": 600, "retries": 2, "name": "seed 1"}
    {"cmd": "simulate --seed 2", "env": {"OMP_NUM_THREADS": "4"}, "cores": 4, "cwd": "runs/2"}

Keys: ``cmd`` (the shell command, required), ``timeout`` (seconds, more than 0), ``retries`` (a
whole number, 0 or more), ``env`` (an object of strings added to the task's environment), ``cwd``
(the directory the task runs in, relative to the farmer's), ``name`` (shown in the farmer's log,
the task's log and the timeline), ``cores`` (the CPUs it is bound to, 1 or more; in a pool
that binds no CPUs, the slots it takes) and ``gpus`` (the GPUs it is given, 0 or more; see
:mod:`mpifarmer.resources`). A task's own values win over the command line's (``--task-timeout``,
``--retries``).

:meth:`JsonTaskList.check` says what is wrong with a line, naming the key; the farmer checks
every line before it runs anything, so a bad line stops it with a one-line error naming the file
and line (see :func:`mpifarmer.tasklists.reader.check_lines`).
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Any

from mpifarmer.task import TaskSpec
from mpifarmer.tasklists.handlers import TaskList

__all__ = ["KEYS", "JsonTaskList"]

#: Every key a line may have, in the order the error messages list them.
KEYS = ("cmd", "timeout", "retries", "env", "cwd", "name", "cores", "gpus")


class JsonTaskList(TaskList):
    """Each line is a JSON object with ``cmd`` and the task's options (see the module docstring).
    This is the built-in ``jsonl`` handler."""

    def command(self, line: str) -> TaskSpec:
        return _parse(line)

    def check(self, line: str) -> None:
        _parse(line)

    def checked(self, line: str) -> TaskSpec:
        return _parse(line)  # one parse checks and describes


def _parse(line: str) -> TaskSpec:
    """The command and attributes of ``line``; ValueError naming the key for a bad one."""
    try:
        item = json.loads(line)
    except ValueError as error:
        raise ValueError(f"is not a JSON object ({error}); write one object per line, such as "
                         '{"cmd": "echo hello"}') from None
    if not isinstance(item, dict):
        raise ValueError(f"is a JSON {_kind(item)}, not an object; write one object per line, such as "
                         '{"cmd": "echo hello"}')
    for key in item:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ValueError(f"key {key!r} is unknown; {hint}the keys are {', '.join(KEYS)}")
    if "cmd" not in item:
        raise ValueError("key 'cmd' is missing: give the task's shell command under 'cmd'")
    command = item["cmd"]
    if not isinstance(command, str) or not command.strip():
        raise ValueError(f"key 'cmd' must be a non-empty string (the shell command), not {_shown(command)}")
    attrs: dict[str, Any] = {}
    if "timeout" in item:
        value = item["timeout"]
        if not _number(value) or not 0 < value < math.inf:
            raise ValueError(f"key 'timeout' must be a number of seconds more than 0, not {_shown(value)}")
        attrs["timeout"] = value
    if "retries" in item:
        attrs["retries"] = _whole(item, "retries", 0)
    if "env" in item:
        env = item["env"]
        if not isinstance(env, dict):
            raise ValueError(f"key 'env' must be an object of strings, such as {{\"A\": \"1\"}}, not {_shown(env)}")
        for name, value in env.items():
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"key 'env' names the variable {name!r}, which cannot be one (empty, or with '=')")
            if not isinstance(value, str):
                raise ValueError(f"key 'env' must map names to strings; {name!r} is {_shown(value)}")
        attrs["env"] = env
    if "cwd" in item:
        cwd = item["cwd"]
        if not isinstance(cwd, str) or not cwd or "\0" in cwd:
            raise ValueError(f"key 'cwd' must be a directory path (a non-empty string), not {_shown(cwd)}")
        attrs["cwd"] = cwd
    if "name" in item:
        name = item["name"]
        if not isinstance(name, str):
            raise ValueError(f"key 'name' must be a string, not {_shown(name)}")
        attrs["name"] = name
    resources = {}
    if "cores" in item:
        resources["cores"] = _whole(item, "cores", 1)  # a pool that binds no CPUs counts them in slots
    if "gpus" in item:
        resources["gpus"] = _whole(item, "gpus", 0)  # 0 too: it wins over --gpus-per-task
    if resources:
        attrs["resources"] = resources
    return TaskSpec(command, attrs)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(item: dict[str, Any], key: str, least: int) -> int:
    value = item[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError(f"key {key!r} must be a whole number, {least} or more, not {_shown(value)}")
    return value


def _kind(value: object) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _shown(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
