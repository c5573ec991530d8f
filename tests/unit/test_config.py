"""Loading runner and task-list handler definitions from INI and YAML files."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from mpifarmer.config import (
    Definition,
    load_runner_definitions,
    load_tasklist_definitions,
    make_runner,
    make_tasklist,
)
from mpifarmer.errors import ConfigError
from mpifarmer.runners import BasicRunner, ShifterRunner
from mpifarmer.task import Task
from mpifarmer.tasklists import JsonTaskList, ListTaskList, TemplateTaskList


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def runners_d(home: Path) -> Path:
    return home / ".mpifarmer" / "runners.d"


def legacy_d(home: Path) -> Path:
    return home / ".pytaskfarmer" / "runners.d"


def tasklists_d(home: Path) -> Path:
    return home / ".mpifarmer" / "tasklists.d"


def runner_error(home: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_runner_definitions(home)
    message = str(caught.value)
    assert "\n" not in message
    return caught.value


def tasklist_error(home: Path, cwd: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_tasklist_definitions(home, cwd)
    assert "\n" not in str(caught.value)
    return caught.value


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    (tmp_path / "cwd").mkdir()
    return tmp_path / "cwd"


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module of user classes; returns its name."""
    write(
        tmp_path / "lib" / "myfarm.py",
        """
        from mpifarmer.runners import Runner
        from mpifarmer.tasklists import TaskList

        class Srun(Runner):
            def __init__(self, ntasks="1"):
                self.ntasks = int(ntasks)
            def build(self, task):
                return ["srun", f"--ntasks={self.ntasks}", "bash", "-c", task.command]

        class Loose(Runner):
            def __init__(self, **options):
                self.options = options
            def build(self, task):
                return ["env", *sorted(f"{k}={v}" for k, v in self.options.items()), task.command]

        class Upper(TaskList):
            def command(self, line):
                return line.upper()

        class NotARunner:
            pass

        not_a_class = 3
        """,
    )
    write(tmp_path / "lib" / "brokenmod.py", "raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    return "myfarm"


# --- defaults ---------------------------------------------------------------------------------


def test_no_files_gives_only_the_built_in_definitions(home: Path, cwd: Path) -> None:
    runners = load_runner_definitions(home)
    assert runners == {"default": Definition("default", "mpifarmer.runners.BasicRunner", BasicRunner, {}, None, None)}
    handlers = load_tasklist_definitions(home, cwd)
    assert handlers == {
        "default": Definition("default", "mpifarmer.tasklists.ListTaskList", ListTaskList, {}, None, None),
        "jsonl": Definition("jsonl", "mpifarmer.tasklists.JsonTaskList", JsonTaskList, {}, None, None),
    }
    assert isinstance(make_runner("default", runners), BasicRunner)
    assert isinstance(make_tasklist("default", handlers), ListTaskList)


def test_default_is_reserved(home: Path) -> None:
    path = write(runners_d(home) / "a.ini", "[default]\nRunner = mpifarmer.runners.ShifterRunner\nimage = x\n")
    error = runner_error(home)
    assert (error.path, error.section) == (str(path), "default")
    assert "reserved" in error.problem


# --- runner files -----------------------------------------------------------------------------


def test_ini_runner(home: Path) -> None:
    path = write(
        runners_d(home) / "nersc.ini",
        """
        [mcc]
        Runner = mpifarmer.runners.ShifterRunner
        image = docker:mucoll:1.5
        setup = source /opt/init.sh
        volumes = /a:/a /b:/b
        modules = cvmfs
        tempdir = False
        """,
    )
    definitions = load_runner_definitions(home)
    assert sorted(definitions) == ["default", "mcc"]
    mcc = definitions["mcc"]
    assert (mcc.class_path, mcc.factory, mcc.source, mcc.section) == (
        "mpifarmer.runners.ShifterRunner",
        ShifterRunner,
        path,
        "mcc",
    )
    assert mcc.options == {
        "image": "docker:mucoll:1.5",
        "setup": "source /opt/init.sh",
        "volumes": "/a:/a /b:/b",
        "modules": "cvmfs",
        "tempdir": "False",
    }
    runner = make_runner("mcc", definitions)
    assert runner.build(Task(0, "l", "run it")) == [
        "shifter",
        "--image=docker:mucoll:1.5",
        "--volume=/a:/a",
        "--volume=/b:/b",
        "--module=cvmfs",
        "--",
        "/bin/bash",
        "-c",
        "source /opt/init.sh && { run it\n}",
    ]


def test_make_returns_a_new_instance_each_time(home: Path) -> None:
    write(runners_d(home) / "a.ini", "[s]\nRunner = mpifarmer.runners.ShifterRunner\nimage = x\n")
    definitions = load_runner_definitions(home)
    assert make_runner("s", definitions) is not make_runner("s", definitions)


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_yaml_runner(home: Path, suffix: str) -> None:
    write(
        runners_d(home) / f"sites{suffix}",
        """
        gpu:
          Runner: mpifarmer.runners.ShifterRunner
          image: docker:nvidia/cuda:12.2
          modules: [gpu, "cvmfs"]
          volumes: ["/global/a b:/data"]
          tempdir: yes
        plain:
          runner: mpifarmer.runners.BasicRunner
        """,
    )
    definitions = load_runner_definitions(home)
    assert sorted(definitions) == ["default", "gpu", "plain"]
    assert definitions["gpu"].options["tempdir"] is True
    gpu = make_runner("gpu", definitions)
    assert gpu.build(Task(0, "l", "t"))[:5] == [
        "shifter",
        "--image=docker:nvidia/cuda:12.2",
        "--volume=/global/a b:/data",
        "--module=gpu",
        "--module=cvmfs",
    ]
    assert isinstance(make_runner("plain", definitions), BasicRunner)


def test_empty_files_define_nothing(home: Path) -> None:
    write(runners_d(home) / "empty.yaml", "# nothing yet\n")
    write(runners_d(home) / "empty.ini", "; nothing yet\n")
    assert sorted(load_runner_definitions(home)) == ["default"]


def test_class_key_is_case_insensitive_option_names_keep_case(home: Path) -> None:
    write(runners_d(home) / "a.ini", "[s]\nRUNNER = mpifarmer.runners.ShifterRunner\nImage = x\n")
    error = runner_error(home)
    assert error.problem == (
        "unknown key 'Image' for mpifarmer.runners.ShifterRunner; "
        "accepted keys: image, modules, setup, tempdir, volumes; did you mean 'image'?"
    )


def test_default_section_keys_apply_to_every_section(home: Path) -> None:
    write(
        runners_d(home) / "a.ini",
        """
        [DEFAULT]
        image = shared:1
        [one]
        Runner = mpifarmer.runners.ShifterRunner
        [two]
        Runner = mpifarmer.runners.ShifterRunner
        image = own:2
        """,
    )
    definitions = load_runner_definitions(home)
    assert definitions["one"].options == {"image": "shared:1"}
    assert definitions["two"].options == {"image": "own:2"}


def test_percent_must_be_doubled_in_ini(home: Path) -> None:
    write(
        runners_d(home) / "a.ini",
        "[s]\nRunner = mpifarmer.runners.ShifterRunner\nimage = x\nsetup = date +%%Y\n",
    )
    assert load_runner_definitions(home)["s"].options["setup"] == "date +%Y"
    write(
        runners_d(home) / "a.ini",
        "[s]\nRunner = mpifarmer.runners.ShifterRunner\nimage = x\nsetup = date +%Y\n",
    )
    error = runner_error(home)
    assert error.section == "s"
    assert "write %% for a literal %" in error.problem


def test_hidden_and_other_files_are_not_read(home: Path) -> None:
    write(runners_d(home) / ".old.ini", "this is not INI\n")
    write(runners_d(home) / "notes.txt", "this is not INI\n")
    write(runners_d(home) / "a.ini.bak", "this is not INI\n")
    assert sorted(load_runner_definitions(home)) == ["default"]


def test_same_name_twice_in_one_directory_is_an_error(home: Path) -> None:
    first = write(runners_d(home) / "a.ini", "[s]\nRunner = mpifarmer.runners.BasicRunner\n")
    second = write(runners_d(home) / "b.yaml", "s:\n  Runner: mpifarmer.runners.BasicRunner\n")
    error = runner_error(home)
    assert (error.path, error.section) == (str(second), "s")
    assert str(first) in error.problem


# --- PyTaskFarmer compatibility ---------------------------------------------------------------


def test_pytaskfarmer_runner_files_and_aliases(home: Path) -> None:
    path = write(
        legacy_d(home) / "atlas.ini",
        """
        [reco22]
        Runner = taskfarmer.runners.ShifterRunner
        image = zlmarshall/atlas-grid-centos7:20191110
        setup = source ${ATLAS_LOCAL_ROOT_BASE}/user/atlasLocalSetup.sh
        modules = cvmfs
        tempdir = True

        [plain]
        Runner = taskfarmer.runners.BasicRunner
        """,
    )
    write(legacy_d(home) / "ignored.yaml", "not: [read")  # PyTaskFarmer only read *.ini
    definitions = load_runner_definitions(home)
    assert sorted(definitions) == ["default", "plain", "reco22"]
    reco = definitions["reco22"]
    assert (reco.class_path, reco.factory, reco.source) == (
        "mpifarmer.runners.ShifterRunner",
        ShifterRunner,
        path,
    )
    runner = make_runner("reco22", definitions)
    assert isinstance(runner, ShifterRunner)
    assert runner.tempdir is True
    assert runner.modules == ["cvmfs"]
    assert definitions["plain"].class_path == "mpifarmer.runners.BasicRunner"


def test_mpifarmer_directory_overrides_pytaskfarmer_directory(home: Path) -> None:
    write(legacy_d(home) / "a.ini", "[s]\nRunner = taskfarmer.runners.ShifterRunner\nimage = old\n")
    new = write(runners_d(home) / "a.yaml", "s:\n  Runner: mpifarmer.runners.ShifterRunner\n  image: new\n")
    definitions = load_runner_definitions(home)
    assert (definitions["s"].options, definitions["s"].source) == ({"image": "new"}, new)


# --- user classes -----------------------------------------------------------------------------


def test_user_runner_class(home: Path, user_module: str) -> None:
    write(runners_d(home) / "a.ini", f"[srun]\nRunner = {user_module}.Srun\nntasks = 4\n")
    runner = make_runner("srun", load_runner_definitions(home))
    assert runner.build(Task(0, "l", "x")) == ["srun", "--ntasks=4", "bash", "-c", "x"]


def test_user_class_with_var_keywords_accepts_any_key(home: Path, user_module: str) -> None:
    write(runners_d(home) / "a.ini", f"[loose]\nRunner = {user_module}.Loose\nB = 2\na = 1\n")
    runner = make_runner("loose", load_runner_definitions(home))
    assert runner.build(Task(0, "l", "x")) == ["env", "B=2", "a=1", "x"]


def test_constructor_failure_at_make_time_names_file_and_section(home: Path, user_module: str) -> None:
    srun = importlib.import_module(user_module).Srun
    source = home / "a.ini"
    definitions = {"bad": Definition("bad", "myfarm.Srun", srun, {"ntasks": "four"}, source, "bad")}
    with pytest.raises(ConfigError) as caught:
        make_runner("bad", definitions)
    assert (caught.value.path, caught.value.section) == (str(source), "bad")
    assert caught.value.problem.startswith("myfarm.Srun rejected its options: ValueError: invalid literal")


# --- runner errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("class_path", "expected"),
    [
        ("nosuchmodule.Runner", "cannot import module 'nosuchmodule' for nosuchmodule.Runner"),
        ("mpifarmer.nosuch.Runner", "cannot import module 'mpifarmer.nosuch'"),
        ("mpifarmer.runners.ShiftRunner", "module 'mpifarmer.runners' has no 'ShiftRunner'"),
        ("BasicRunner", "'BasicRunner' is not a class path; write module.Class"),
        ("myfarm.Upper", "myfarm.Upper is not a runner class; it must derive from mpifarmer.runners.Runner"),
        ("myfarm.NotARunner", "myfarm.NotARunner is not a runner class"),
        ("myfarm.not_a_class", "myfarm.not_a_class is not a runner class"),
        ("mpifarmer.runners.Runner", "mpifarmer.runners.Runner is abstract"),
        ("taskfarmer.tasks.ListTaskList", "is not a runner class"),
        ("brokenmod.X", "importing module 'brokenmod' failed: RuntimeError: boom at import"),
    ],
)
def test_bad_class_path(home: Path, user_module: str, class_path: str, expected: str) -> None:
    path = write(runners_d(home) / "a.ini", f"[r]\nRunner = {class_path}\n")
    error = runner_error(home)
    assert (error.path, error.section) == (str(path), "r")
    assert expected in error.problem
    assert str(error).startswith(f"{path} [r]: ")


def test_unknown_key(home: Path) -> None:
    path = write(runners_d(home) / "a.ini", "[mcc]\nRunner = mpifarmer.runners.ShifterRunner\nimgae = x\n")
    error = runner_error(home)
    assert str(error) == (
        f"{path} [mcc]: unknown key 'imgae' for mpifarmer.runners.ShifterRunner; "
        "accepted keys: image, modules, setup, tempdir, volumes; did you mean 'image'?"
    )


def test_unknown_key_for_a_class_without_options(home: Path) -> None:
    write(runners_d(home) / "a.ini", "[b]\nRunner = mpifarmer.runners.NoopRunner\nshell = zsh\n")
    assert runner_error(home).problem == ("unknown key 'shell' for mpifarmer.runners.NoopRunner; accepted keys: none")


def test_basic_runner_with_another_shell(home: Path) -> None:
    write(runners_d(home) / "a.ini", "[fast]\nRunner = mpifarmer.runners.BasicRunner\nshell = sh\n")
    runner = make_runner("fast", load_runner_definitions(home))
    assert runner.build(Task(0, "x", "echo $0")) == [os.path.abspath(shutil.which("sh")), "-c", "echo $0"]
    assert repr(runner) == "BasicRunner(shell='sh')"


def test_basic_runner_with_a_missing_shell(home: Path) -> None:
    path = write(runners_d(home) / "a.ini", "[z]\nRunner = mpifarmer.runners.BasicRunner\nshell = no-such-shell\n")
    error = runner_error(home)
    assert (error.path, error.section) == (str(path), "z")
    assert "shell 'no-such-shell' is not an executable program on PATH; give its full path" in error.problem


def test_missing_required_key(home: Path) -> None:
    write(runners_d(home) / "a.ini", "[s]\nRunner = mpifarmer.runners.ShifterRunner\nsetup = x\n")
    assert runner_error(home).problem == (
        "missing key 'image' for mpifarmer.runners.ShifterRunner; required keys: image"
    )


@pytest.mark.parametrize("form", ["ini", "yaml"])
def test_bad_tempdir_value(home: Path, form: str) -> None:
    if form == "ini":
        path = write(
            runners_d(home) / "a.ini",
            "[s]\nRunner = mpifarmer.runners.ShifterRunner\nimage = x\ntempdir = maybe\n",
        )
    else:
        path = write(runners_d(home) / "a.yaml", "s: {Runner: mpifarmer.runners.ShifterRunner, image: x, tempdir: 2}\n")
    error = runner_error(home)
    assert (error.path, error.section) == (str(path), "s")
    assert error.problem.startswith(
        "mpifarmer.runners.ShifterRunner rejected its options: ValueError: tempdir must be true or false"
    )


def test_missing_class_key_in_runners_d(home: Path) -> None:
    path = write(runners_d(home) / "a.ini", "[s]\nimage = x\n")
    error = runner_error(home)
    assert (error.path, error.section) == (str(path), "s")
    assert error.problem.startswith("no 'Runner' key")


def test_class_given_twice(home: Path) -> None:
    write(runners_d(home) / "a.yaml", "s: {Runner: mpifarmer.runners.BasicRunner, runner: x.Y}\n")
    assert "the class is given twice (Runner, runner)" in runner_error(home).problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[s]\nRunner = mpifarmer.runners.BasicRunner\njust some words\n",
            "INI syntax error at line 3: 'just some words'",
        ),
        ("Runner = x\n[s]\n", "INI syntax error at line 1: 'Runner = x' comes before any [name] header"),
        ("[s]\nRunner = a.B\n[s]\nRunner = c.D\n", "INI error at line 3: section [s] appears twice"),
        ("[s]\nRunner = a.B\nRunner = c.D\n", "INI error at line 3: key 'Runner' appears twice"),
    ],
)
def test_ini_syntax_errors(home: Path, text: str, expected: str) -> None:
    path = write(runners_d(home) / "bad.ini", text)
    error = runner_error(home)
    assert error.path == str(path)
    assert error.problem.startswith(expected)


@pytest.mark.parametrize(
    ("text", "section", "expected"),
    [
        ("s:\n  Runner: [unclosed\n", None, "YAML syntax error at line 3, column 1"),
        ("s:\n  Runner: a.B\n\tbad: tab\n", None, "YAML syntax error at line 3"),
        (
            "- Runner: a.B\n",
            None,
            "the top level must be a mapping of runner names to definitions, not a list",
        ),
        ("just a string\n", None, "not a str"),
        ("s: mpifarmer.runners.BasicRunner\n", "s", "the definition must be a mapping with a 'Runner' key"),
        ("s: {Runner: mpifarmer.runners.BasicRunner}\ns: {Runner: x.Y}\n", None, "key 's' appears twice"),
        ("1: {Runner: mpifarmer.runners.BasicRunner}\n", "1", "runner names must be strings"),
        ("s: {Runner: mpifarmer.runners.BasicRunner, 3: x}\n", "s", "option names must be strings"),
        ("s: {Runner: [a, b]}\n", "s", "'Runner' must be a class path"),
    ],
)
def test_yaml_errors(home: Path, text: str, section: str | None, expected: str) -> None:
    path = write(runners_d(home) / "bad.yaml", text)
    error = runner_error(home)
    assert (error.path, error.section) == (str(path), section)
    assert expected in error.problem


def test_unreadable_encoding_in_runners_d(home: Path) -> None:
    path = runners_d(home) / "latin.ini"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"[s]\nRunner = mpifarmer.runners.BasicRunner\n# caf\xe9\n")
    error = runner_error(home)
    assert error.path == str(path)
    assert error.problem.startswith("cannot read the file")


# --- make_* with unknown names ----------------------------------------------------------------


def test_unknown_runner_name(home: Path) -> None:
    write(runners_d(home) / "a.ini", "[mcc]\nRunner = mpifarmer.runners.ShifterRunner\nimage = x\n")
    definitions = load_runner_definitions(home)
    with pytest.raises(ConfigError) as caught:
        make_runner("x", definitions)
    assert (caught.value.path, caught.value.section) == (None, None)
    assert str(caught.value) == (
        "unknown runner 'x'; defined runners: default, mcc (from ~/.mpifarmer/runners.d, ~/.pytaskfarmer/runners.d)"
    )


def test_unknown_runner_name_suggests_a_close_one(home: Path) -> None:
    write(runners_d(home) / "a.ini", "[shifter]\nRunner = mpifarmer.runners.ShifterRunner\nimage = x\n")
    with pytest.raises(ConfigError, match=re.escape("unknown runner 'shifer'; did you mean 'shifter'?")):
        make_runner("shifer", load_runner_definitions(home))


def test_unknown_tasklist_name(home: Path, cwd: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        make_tasklist("files", load_tasklist_definitions(home, cwd))
    assert str(caught.value).startswith(
        "unknown task-list handler 'files'; defined task-list handlers: default, jsonl (")


# --- task-list handlers -----------------------------------------------------------------------


def test_tasklists_d_ini_and_yaml(home: Path, cwd: Path) -> None:
    write(
        tasklists_d(home) / "a.ini",
        """
        [files]
        TaskList = mpifarmer.tasklists.TemplateTaskList
        command = process --in {} --out {}.out
        """,
    )
    write(
        tasklists_d(home) / "b.yaml",
        """
        plain:
          TaskList: taskfarmer.tasks.ListTaskList
        """,
    )
    definitions = load_tasklist_definitions(home, cwd)
    assert sorted(definitions) == ["default", "files", "jsonl", "plain"]
    files = make_tasklist("files", definitions)
    assert isinstance(files, TemplateTaskList)
    assert files.command("a b") == "process --in 'a b' --out 'a b'.out"
    assert definitions["plain"].class_path == "mpifarmer.tasklists.ListTaskList"
    assert isinstance(make_tasklist("plain", definitions), ListTaskList)


def test_template_without_placeholder_is_a_config_error(home: Path, cwd: Path) -> None:
    path = write(tasklists_d(home) / "a.ini", "[t]\nTaskList = mpifarmer.tasklists.TemplateTaskList\ncommand = ls\n")
    error = tasklist_error(home, cwd)
    assert (error.path, error.section) == (str(path), "t")
    assert "template has no {} placeholder" in error.problem


def test_missing_class_key_in_tasklists_d(home: Path, cwd: Path) -> None:
    write(tasklists_d(home) / "a.yaml", "t: {command: 'x {}'}\n")
    assert tasklist_error(home, cwd).problem.startswith("no 'TaskList' key")


def test_runner_class_as_handler_is_rejected(home: Path, cwd: Path) -> None:
    write(tasklists_d(home) / "a.ini", "[t]\nTaskList = mpifarmer.runners.BasicRunner\n")
    assert tasklist_error(home, cwd).problem == (
        "mpifarmer.runners.BasicRunner is not a task-list handler class; "
        "it must derive from mpifarmer.tasklists.TaskList"
    )


def test_user_handler_class(home: Path, cwd: Path, user_module: str) -> None:
    write(cwd / "handlers.ini", f"[up]\nTaskList = {user_module}.Upper\n")
    assert make_tasklist("up", load_tasklist_definitions(home, cwd)).command("ab") == "AB"


def test_current_directory_definitions_and_override(home: Path, cwd: Path) -> None:
    write(
        tasklists_d(home) / "a.ini",
        "[files]\nTaskList = mpifarmer.tasklists.TemplateTaskList\ncommand = a {}\n",
    )
    local = write(
        cwd / "farm.yml",
        """
        files:
          TaskList: mpifarmer.tasklists.TemplateTaskList
          command: b {}
        notes: {author: me}
        """,
    )
    definitions = load_tasklist_definitions(home, cwd)
    assert definitions["files"].source == local
    assert make_tasklist("files", definitions).command("x") == "b x"
    assert "notes" not in definitions


def test_current_directory_ignores_files_that_are_not_definitions(home: Path, cwd: Path) -> None:
    write(cwd / "broken.yaml", "a: [unclosed\n")
    write(cwd / "broken.ini", "no header here\n")
    write(cwd / "list.yaml", "- 1\n- 2\n")
    write(cwd / "ci.yml", "stages: [build, test]\nbuild: {script: make}\n")
    write(cwd / "setup.ini", "[metadata]\nname = thing\n[s]\nRunner = mpifarmer.runners.BasicRunner\n")
    write(cwd / "pct.ini", "[x]\nformat = %(missing)s\n")
    (cwd / "latin.ini").write_bytes(b"[x]\nv = caf\xe9\n")
    write(cwd / "big.yaml", "t: {TaskList: no.Such}\n" + "# padding\n" * 200_000)
    (cwd / "dir.yaml").mkdir()
    write(cwd / "mixed.ini", "[metadata]\nname = x\n[t]\nTaskList = mpifarmer.tasklists.ListTaskList\n")
    assert sorted(load_tasklist_definitions(home, cwd)) == ["default", "jsonl", "t"]


def test_current_directory_definition_with_errors_is_reported(home: Path, cwd: Path) -> None:
    path = write(
        cwd / "farm.ini",
        "[metadata]\nname = x\n[t]\nTaskList = mpifarmer.tasklists.TemplateTaskList\ncomand = x {}\n",
    )
    error = tasklist_error(home, cwd)
    assert (error.path, error.section) == (str(path), "t")
    assert error.problem.startswith(
        "unknown key 'comand' for mpifarmer.tasklists.TemplateTaskList; accepted keys: command"
    )


def test_current_directory_percent_error_in_a_definition_is_reported(home: Path, cwd: Path) -> None:
    write(cwd / "farm.ini", "[t]\nTaskList = mpifarmer.tasklists.TemplateTaskList\ncommand = printf %s {}\n")
    assert "write %% for a literal %" in tasklist_error(home, cwd).problem


def test_runner_files_in_current_directory_are_not_read(tmp_path: Path, home: Path, cwd: Path) -> None:
    write(cwd / "r.ini", "[s]\nRunner = mpifarmer.runners.ShifterRunner\nimage = x\n")
    assert sorted(load_runner_definitions(home)) == ["default"]
