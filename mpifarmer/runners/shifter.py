"""Run each task inside a Shifter container (NERSC's container runtime)."""

from __future__ import annotations

import shlex

from mpifarmer.runners.base import Runner
from mpifarmer.runners.options import parse_bool, parse_words
from mpifarmer.task import Task

__all__ = ["ShifterRunner", "guarded_script"]

# Shell variable that holds the per-task temporary directory; a name no task will use.
_TMPVAR = "__mpifarmer_tmpdir"


class ShifterRunner(Runner):
    """Execute each task in a Shifter container, with an optional setup command.

    The argv is::

        shifter --image=IMAGE [--volume=V ...] [--module=M ...] -- /bin/bash -c SCRIPT

    where SCRIPT is ``SETUP && { TASK }`` (just TASK when there is no setup). The braces make
    the setup guard the whole task line, so that a task such as ``a || b`` or ``a; b`` does not
    run, or succeed, when the setup failed. The bash used is the image's ``/bin/bash``. Running
    Shifter per task, rather than the farmer inside Shifter, means the image needs no Python.

    Options (the same as PyTaskFarmer's ``taskfarmer.runners.ShifterRunner``):

    ``image``
        The Shifter image, e.g. ``docker:ubuntu:22.04``. Required.
    ``setup``
        Shell commands that prepare the environment in the container, e.g.
        ``source /opt/setup.sh``.
    ``volumes``
        Volume bindings, as a space-separated string or a list: each one becomes a
        ``--volume=`` option, in Shifter's syntax (``/host/path:/container/path[:flags]``).
    ``modules``
        Shifter modules (e.g. ``cvmfs``, ``gpu``), as a space-separated string or a list: each
        one becomes a ``--module=`` option.
    ``tempdir``
        When true, each task runs in a fresh directory made with ``mktemp -d`` inside the
        container and removed when the task ends (also after ``exit`` or on SIGTERM/SIGINT/
        SIGHUP, but not SIGKILL); the task's exit status is kept. INI strings
        true/false/yes/no/on/off/1/0 are accepted.

    Example (INI)::

        [analysis]
        Runner = mpifarmer.runners.ShifterRunner
        image = docker:myuser/analysis:1.0
        setup = source /opt/analysis/setup.sh
        volumes = /global/cfs/cdirs/myproject:/data
        modules = cvmfs
        tempdir = true

    Unlike PyTaskFarmer, ``BASH_ENV`` is not cleared here: the environment belongs to the pool.
    """

    def __init__(
        self,
        image: str,
        setup: str = "",
        volumes: str | list[str] = "",
        modules: str | list[str] = "",
        tempdir: bool | str = False,
    ) -> None:
        if not isinstance(image, str) or not image.strip():
            raise ValueError(f"image must be a non-empty string naming a Shifter image, not {image!r}")
        if not isinstance(setup, str):
            raise TypeError(f"setup must be a string of shell commands, not {type(setup).__name__}")
        self.image = image.strip()
        self.setup = setup.strip()
        self.volumes = parse_words("volumes", volumes)
        self.modules = parse_words("modules", modules)
        self.tempdir = parse_bool("tempdir", tempdir)

    def __repr__(self) -> str:
        return (
            f"ShifterRunner(image={self.image!r}, setup={self.setup!r}, volumes={self.volumes!r}, "
            f"modules={self.modules!r}, tempdir={self.tempdir!r})"
        )

    def build(self, task: Task) -> list[str]:
        """Return the ``shifter`` argv that runs ``task.command`` in the image."""
        argv = ["shifter", f"--image={self.image}"]
        argv += [f"--volume={volume}" for volume in self.volumes]
        argv += [f"--module={module}" for module in self.modules]
        return [*argv, "--", "/bin/bash", "-c", self.script(task.command)]

    def script(self, command: str) -> str:
        """Return the bash script run in the container for the task ``command``."""
        return guarded_script(command, self.setup, self.tempdir)


def guarded_script(command: str, setup: str, tempdir: bool) -> str:
    """The bash script a container runs for a task: ``SETUP && { TASK }`` (TASK alone without a
    setup), in a fresh temporary directory removed at the end when ``tempdir``. Shared by the
    container runners (Shifter, podman-hpc, Apptainer)."""
    # The newline before "}" lets the task end in "&" or a "# comment".
    body = f"{setup} && {{ {command}\n}}" if setup else command
    if not tempdir:
        return body
    # The task runs in a subshell so that its "exit" or "exec" cannot skip the clean-up;
    # the outer shell's EXIT trap removes the directory and keeps the subshell's status.
    # The final "exit" matters: bash runs a trailing subshell in its own process, dropping
    # the traps, when the subshell is the last command of a "bash -c" script.
    tmp = f'"${_TMPVAR}"'
    return "\n".join(
        [
            f'{_TMPVAR}="$(mktemp -d "${{TMPDIR:-/tmp}}/mpifarmer.XXXXXXXX")" || exit',
            f"trap {shlex.quote(f'rm -rf -- {tmp}')} EXIT",
            "trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM",
            f"(cd {tmp} || exit\n{body}\n)",
            'exit "$?"',
        ]
    )
