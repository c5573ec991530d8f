"""Runner and task-list handler definitions, read from INI and YAML files.

A definition gives a name to a class and its constructor options. Runners come from, lowest
precedence first:

1. the built-in ``default``: :class:`mpifarmer.runners.BasicRunner`;
2. every ``*.ini`` in ``~/.pytaskfarmer/runners.d/`` (PyTaskFarmer's files, read as they are);
3. every ``*.ini``, ``*.yaml`` and ``*.yml`` in ``~/.mpifarmer/runners.d/``.

Task-list handlers come from the built-in ``default`` (:class:`mpifarmer.tasklists.ListTaskList`)
and ``jsonl`` (:class:`mpifarmer.tasklists.JsonTaskList`), then ``~/.mpifarmer/tasklists.d/`` (same
file types), then ``*.ini``, ``*.yaml`` and ``*.yml`` in the current directory. INI form (``Runner``
for runners, ``TaskList`` for handlers; the class key is matched case-insensitively, option names
keep their case)::

    [mcc]
    Runner = mpifarmer.runners.ShifterRunner
    image = docker:example/image:1.0
    modules = cvmfs

YAML form: a mapping of names to mappings, e.g. ``mcc: {Runner: ..., image: ..., modules: [cvmfs]}``.

Rules:

* ``default`` is reserved: a file that defines it is an error, so ``default`` always means the
  built-in class (as PyTaskFarmer documents); so is the built-in handler ``jsonl``.
* A later source overrides an earlier one with the same name; two files of one directory
  defining the same name is an error.
* Files are read in name order; names starting with ``.`` are skipped. Empty files define nothing.
* INI files use :mod:`configparser`'s standard rules: ``[DEFAULT]`` keys apply to every section,
  and ``%`` must be written ``%%`` (as in PyTaskFarmer).
* Files in the current directory are the user's own: one that cannot be read or parsed, is larger
  than 1 MiB, or has no section with a ``TaskList`` key is ignored, and so are its sections without
  that key. In the ``*.d`` directories every section must name its class.
* ``taskfarmer.runners.BasicRunner``, ``taskfarmer.runners.ShifterRunner`` and
  ``taskfarmer.tasks.ListTaskList`` are aliases of the mpifarmer classes; any other path is
  imported, and the class must derive from :class:`~mpifarmer.runners.Runner` or
  :class:`~mpifarmer.tasklists.TaskList`.

Everything is checked when the definitions are loaded (class, option names, required options,
option values, by constructing each definition once), so a mistake stops the farmer at start with
a one-line :class:`~mpifarmer.errors.ConfigError` naming the file and section.
"""

from __future__ import annotations

import ast
import configparser
import difflib
import functools
import importlib
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import yaml

from mpifarmer.errors import ConfigError
from mpifarmer.runners import (
    ApptainerRunner,
    BasicRunner,
    HoldRunner,
    NoopRunner,
    PodmanHPCRunner,
    Runner,
    ShifterRunner,
)
from mpifarmer.tasklists import JsonTaskList, ListTaskList, TaskList

__all__ = [
    "Definition",
    "load_runner_definitions",
    "load_tasklist_definitions",
    "make_runner",
    "make_tasklist",
]

logger = logging.getLogger(__name__)

#: The name of the built-in definition, which files may not redefine.
DEFAULT_NAME = "default"
#: Files in the current directory larger than this are not read (they are likely data).
CWD_FILE_LIMIT = 1 << 20

_INI_SUFFIXES = (".ini",)
_ALL_SUFFIXES = (".ini", ".yaml", ".yml")

_ALIASES: dict[str, type] = {
    "taskfarmer.runners.BasicRunner": BasicRunner,
    "taskfarmer.runners.ShifterRunner": ShifterRunner,
    "taskfarmer.tasks.ListTaskList": ListTaskList,
}
_PUBLIC_PATHS: dict[type, str] = {
    BasicRunner: "mpifarmer.runners.BasicRunner",
    NoopRunner: "mpifarmer.runners.NoopRunner",
    HoldRunner: "mpifarmer.runners.HoldRunner",
    ShifterRunner: "mpifarmer.runners.ShifterRunner",
    PodmanHPCRunner: "mpifarmer.runners.PodmanHPCRunner",
    ApptainerRunner: "mpifarmer.runners.ApptainerRunner",
    ListTaskList: "mpifarmer.tasklists.ListTaskList",
    JsonTaskList: "mpifarmer.tasklists.JsonTaskList",
}


@dataclass(frozen=True)
class Definition:
    """A named class and the keyword arguments to construct it with.

    ``source`` and ``section`` say where it was defined (both ``None`` for the built-in
    ``default``); ``class_path`` is the dotted path, with aliases replaced by the mpifarmer class.
    """

    name: str
    class_path: str
    factory: type
    options: dict[str, Any]
    source: Path | None
    section: str | None


@dataclass(frozen=True)
class _Kind:
    """What distinguishes runner definitions from handler definitions."""

    noun: str
    key: str
    base: type
    base_path: str
    default: type
    where: str
    builtins: tuple[tuple[str, type], ...] = ()  # built-in definitions besides default, reserved like it


_RUNNER = _Kind(
    noun="runner",
    key="Runner",
    base=Runner,
    base_path="mpifarmer.runners.Runner",
    default=BasicRunner,
    where="~/.mpifarmer/runners.d, ~/.pytaskfarmer/runners.d",
)
_TASKLIST = _Kind(
    noun="task-list handler",
    key="TaskList",
    base=TaskList,
    base_path="mpifarmer.tasklists.TaskList",
    default=ListTaskList,
    where="~/.mpifarmer/tasklists.d, *.ini/*.yaml/*.yml in the current directory",
    builtins=(("jsonl", JsonTaskList),),
)


@dataclass(frozen=True)
class _Source:
    """A directory searched for definition files."""

    directory: Path
    suffixes: tuple[str, ...]
    lenient: bool = False


def load_runner_definitions(home: Path | None = None) -> dict[str, Definition]:
    """Return the runner definitions visible to a user whose home directory is ``home``.

    Raises :class:`~mpifarmer.errors.ConfigError` for the first definition that is wrong.
    """
    home = Path.home() if home is None else home
    sources = [
        _Source(home / ".pytaskfarmer" / "runners.d", _INI_SUFFIXES),
        _Source(home / ".mpifarmer" / "runners.d", _ALL_SUFFIXES),
    ]
    return _load(_RUNNER, sources)


def load_tasklist_definitions(home: Path | None = None, cwd: Path | None = None) -> dict[str, Definition]:
    """Return the task-list handler definitions from ``home`` and the directory ``cwd``.

    Raises :class:`~mpifarmer.errors.ConfigError` for the first definition that is wrong.
    """
    home = Path.home() if home is None else home
    cwd = Path.cwd() if cwd is None else cwd
    sources = [
        _Source(home / ".mpifarmer" / "tasklists.d", _ALL_SUFFIXES),
        _Source(cwd, _ALL_SUFFIXES, lenient=True),
    ]
    return _load(_TASKLIST, sources)


def make_runner(name: str, definitions: dict[str, Definition]) -> Runner:
    """Construct the runner called ``name``; an unknown name is a ConfigError listing the known."""
    return cast(Runner, _make(_RUNNER, name, definitions))


def make_tasklist(name: str, definitions: dict[str, Definition]) -> TaskList:
    """Construct the task-list handler called ``name``; an unknown name is a ConfigError."""
    return cast(TaskList, _make(_TASKLIST, name, definitions))


def _make(kind: _Kind, name: str, definitions: dict[str, Definition]) -> object:
    definition = definitions.get(name)
    if definition is None:
        names = sorted(definitions, key=lambda n: (n != DEFAULT_NAME, n))
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(
            None,
            None,
            f"unknown {kind.noun} '{name}'; {hint}defined {kind.noun}s: {', '.join(names)} (from {kind.where})",
        )
    return _construct(definition)


def _construct(definition: Definition) -> object:
    try:
        return definition.factory(**definition.options)
    except Exception as exc:  # a user class may raise anything; report it as bad configuration
        raise ConfigError(
            definition.source,
            definition.section,
            f"{definition.class_path} rejected its options: {_one_line(f'{type(exc).__name__}: {exc}')}",
        ) from exc


def _load(kind: _Kind, sources: list[_Source]) -> dict[str, Definition]:
    builtins = {DEFAULT_NAME: kind.default, **dict(kind.builtins)}
    definitions = {name: Definition(name, _PUBLIC_PATHS[cls], cls, {}, None, None) for name, cls in builtins.items()}
    for source in sources:
        seen: dict[str, Path] = {}
        for path in _files(source):
            for section, values in _read(kind, path, source.lenient):
                if section in builtins:
                    raise ConfigError(
                        path,
                        section,
                        f"the name '{section}' is reserved for the built-in "
                        f"{_PUBLIC_PATHS[builtins[section]]}; choose another name",
                    )
                if section in seen:
                    raise ConfigError(
                        path,
                        section,
                        f"{kind.noun} '{section}' is also defined in {seen[section]}; rename or remove one of them",
                    )
                seen[section] = path
                if section in definitions:
                    logger.debug("%s '%s' from %s overrides an earlier one", kind.noun, section, path)
                definitions[section] = _define(kind, path, section, values)
    return definitions


def _files(source: _Source) -> list[Path]:
    if not source.directory.is_dir():
        return []
    return sorted(
        path
        for path in source.directory.iterdir()
        if path.suffix in source.suffixes and not path.name.startswith(".") and path.is_file()
    )


def _read(kind: _Kind, path: Path, lenient: bool) -> list[tuple[str, dict[str, Any]]]:
    """Return the (name, values) of each definition in ``path``, class key included.

    In lenient mode a file that cannot be read or parsed gives ``[]`` unless it mentions the
    class key (then it was meant as a definition, and its error is reported), and sections
    without the class key are left out; otherwise both raise ConfigError. A section that has
    the class key is checked in both modes.
    """
    text = ""
    try:
        if lenient and path.stat().st_size > CWD_FILE_LIMIT:
            logger.debug("not reading %s for definitions: larger than %d bytes", path, CWD_FILE_LIMIT)
            return []
        text = path.read_text(encoding="utf-8")
        parse = _ini_sections if path.suffix == ".ini" else _yaml_sections
        sections = parse(kind, path, text)
    except (OSError, UnicodeDecodeError, ConfigError) as exc:
        if lenient and kind.key not in text:
            logger.debug("not reading %s for definitions: %s", path, exc)
            return []
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(path, None, f"cannot read the file: {_one_line(str(exc))}") from exc
    result = []
    for name, raw in sections:
        if isinstance(raw, Mapping) and _class_keys(kind, raw):
            result.append((_name(kind, path, name), _values(path, name, raw)))
        elif lenient:
            continue
        elif not isinstance(raw, Mapping):
            raise ConfigError(
                path,
                str(name),
                f"the definition must be a mapping with a '{kind.key}' key and options, not a {type(raw).__name__}",
            )
        else:
            raise ConfigError(
                path,
                str(name),
                f"no '{kind.key}' key; add '{kind.key}' naming the {kind.noun} class, "
                f"e.g. {_PUBLIC_PATHS[kind.default]}",
            )
    return result


def _name(kind: _Kind, path: Path, name: object) -> str:
    if not isinstance(name, str):
        raise ConfigError(path, str(name), f"{kind.noun} names must be strings; quote {name!r}")
    return name


def _values(path: Path, name: object, raw: Mapping[Any, Any]) -> dict[str, Any]:
    """Return the section's keys and values; INI values are interpolated here."""
    values: dict[str, Any] = {}
    for key in raw:
        if not isinstance(key, str):
            raise ConfigError(path, str(name), f"option names must be strings; quote {key!r}")
        try:
            values[key] = raw[key]
        except configparser.InterpolationError as exc:
            raise ConfigError(
                path, str(name), f"bad '%' in key '{key}': {_one_line(str(exc))}; write %% for a literal %"
            ) from exc
    return values


def _ini_sections(kind: _Kind, path: Path, text: str) -> list[tuple[object, object]]:
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep option names' case
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise ConfigError(path, getattr(exc, "section", None), _ini_problem(exc)) from exc
    return [(name, parser[name]) for name in parser.sections()]


def _ini_problem(exc: configparser.Error) -> str:
    fix = "each line must be 'key = value' below a '[name]' header"
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"INI syntax error at line {exc.lineno}: {exc.line.strip()!r} comes before any [name] header"
    if isinstance(exc, configparser.ParsingError):
        lineno, shown = exc.errors[0]
        return f"INI syntax error at line {lineno}: {_unrepr(shown).strip()!r}; {fix}"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"INI error at line {exc.lineno}: section [{exc.section}] appears twice; merge or rename"
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"INI error at line {exc.lineno}: key '{exc.option}' appears twice in the section; keep one"
    return f"INI syntax error: {_one_line(str(exc))}; {fix}"


@functools.cache
def _strict_loader() -> type:
    """A safe YAML loader that rejects a key given twice in one mapping (PyYAML keeps the last).

    Made on first use: PyYAML is imported only when there is a YAML file to read."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if duplicate:
                    problem = f"key {key!r} appears twice"
                    raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def _yaml_sections(kind: _Kind, path: Path, text: str) -> list[tuple[object, object]]:
    import yaml

    try:
        loader = _strict_loader()(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, _yaml_problem(exc)) from exc
    if data is None:
        return []
    if not isinstance(data, dict):
        raise ConfigError(
            path,
            None,
            f"the top level must be a mapping of {kind.noun} names to definitions, not a {type(data).__name__}",
        )
    return list(data.items())


def _yaml_problem(exc: yaml.YAMLError) -> str:
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return f"YAML syntax error: {_one_line(str(exc))}"


def _class_keys(kind: _Kind, values: Mapping[Any, Any]) -> list[str]:
    return [key for key in values if isinstance(key, str) and key.lower() == kind.key.lower()]


def _define(kind: _Kind, path: Path, section: str, values: dict[str, Any]) -> Definition:
    """Check one definition from a file and return it; every problem is a ConfigError."""

    def fail(problem: str) -> ConfigError:
        return ConfigError(path, section, problem)

    keys = _class_keys(kind, values)
    if len(keys) > 1:
        raise fail(f"the class is given twice ({', '.join(keys)}); keep one '{kind.key}' key")
    written = values[keys[0]]
    if not isinstance(written, str) or not written.strip():
        raise fail(f"'{kind.key}' must be a class path such as {_PUBLIC_PATHS[kind.default]}")
    class_path = written.strip()
    factory = _resolve(kind, class_path, fail)
    class_path = _PUBLIC_PATHS.get(factory, class_path)
    options = {key: value for key, value in values.items() if key != keys[0]}
    _check_signature(factory, class_path, options, fail)
    definition = Definition(section, class_path, factory, options, path, section)
    _construct(definition)
    return definition


def _resolve(kind: _Kind, class_path: str, fail: Callable[[str], ConfigError]) -> type:
    """Return the class that ``class_path`` names, checking that it is a ``kind.base``."""
    factory: object
    if class_path in _ALIASES:
        factory = _ALIASES[class_path]
    else:
        module_name, _, attribute = class_path.rpartition(".")
        if not module_name or not attribute:
            raise fail(f"'{class_path}' is not a class path; write module.Class")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise fail(
                f"cannot import module '{module_name}' for {class_path} (no module '{exc.name}'); "
                "check the spelling, or install the module or add it to PYTHONPATH"
            ) from exc
        except Exception as exc:  # the user's module failed while importing
            raise fail(f"importing module '{module_name}' failed: {_one_line(f'{type(exc).__name__}: {exc}')}") from exc
        try:
            factory = getattr(module, attribute)
        except AttributeError as exc:
            raise fail(f"module '{module_name}' has no '{attribute}'; check the class name") from exc
    if not isinstance(factory, type) or not issubclass(factory, kind.base):
        raise fail(f"{class_path} is not a {kind.noun} class; it must derive from {kind.base_path}")
    if inspect.isabstract(factory):
        raise fail(f"{class_path} is abstract; name a subclass that implements it")
    return factory


def _check_signature(
    factory: type, class_path: str, options: dict[str, Any], fail: Callable[[str], ConfigError]
) -> None:
    """Reject option names the constructor does not take, and missing required ones."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to inspect: constructing will tell
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    named = [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    accepted = sorted(p.name for p in named)
    for key in options:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            listed = ", ".join(accepted) if accepted else "none"
            raise fail(f"unknown key '{key}' for {class_path}; accepted keys: {listed}{hint}")
    missing = [p.name for p in named if p.default is p.empty and p.name not in options]
    if missing:
        raise fail(f"missing key '{missing[0]}' for {class_path}; required keys: {', '.join(missing)}")


def _unrepr(shown: object) -> str:
    """configparser keeps a bad line as its repr(); give back the line itself."""
    try:
        line = ast.literal_eval(shown) if isinstance(shown, str) else shown
    except (ValueError, SyntaxError):
        line = shown
    return str(line)


def _one_line(text: str) -> str:
    return " ".join(text.split())
