"""Parsing of runner options that may arrive as strings from INI files or as YAML values."""

from __future__ import annotations

__all__ = ["GPU_CHOICES", "parse_bool", "parse_choice", "parse_environment", "parse_words"]

#: A container runner's ``gpu`` option: how a task's GPUs are passed into the container.
GPU_CHOICES = ("auto", "nvidia", "amd", "none")

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def parse_bool(name: str, value: object) -> bool:
    """Interpret ``value`` as a boolean option called ``name``.

    Accepts ``bool``, the integers 0 and 1, and (case-insensitively, surrounding blanks
    ignored) the strings true/false, yes/no, on/off, 1/0.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(f"{name} must be true or false (also yes/no, on/off, 1/0), not {value!r}")


def parse_words(name: str, value: object) -> list[str]:
    """Interpret ``value`` as a list of words for the option called ``name``.

    A string is split on whitespace (``"a b"`` gives ``["a", "b"]``, ``""`` gives ``[]``);
    a list or tuple must hold strings, each taken as one word (it may contain blanks).
    """
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)):
        words = []
        for item in value:
            if not isinstance(item, str):
                raise TypeError(f"{name} must list strings, but {item!r} is a {type(item).__name__}")
            if item.strip():
                words.append(item.strip())
        return words
    raise TypeError(f"{name} must be a space-separated string or a list of strings, not {type(value).__name__}")


def parse_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Interpret ``value`` as one of ``choices`` (case and surrounding blanks ignored)."""
    word = value.strip().lower() if isinstance(value, str) else value
    if word not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return word


def parse_environment(name: str, value: object) -> list[str]:
    """Interpret ``value`` as environment settings: words (or list items) ``NAME=VALUE``, or
    ``NAME`` alone for a variable passed on from the task's own environment."""
    settings = parse_words(name, value)
    for setting in settings:
        variable = setting.partition("=")[0]
        if not variable or not (variable[0].isalpha() or variable[0] == "_") or not all(
                c.isalnum() or c == "_" for c in variable):
            raise ValueError(f"{name} must hold NAME=VALUE or NAME settings; {setting!r} names no variable")
    return settings
