"""Run each task in a container with ``apptainer exec`` (or ``singularity exec``)."""

from __future__ import annotations

import os
import shutil

from mpifarmer.runners.base import Runner
from mpifarmer.runners.options import GPU_CHOICES, parse_bool, parse_choice, parse_environment, parse_words
from mpifarmer.runners.shifter import guarded_script
from mpifarmer.task import Task

__all__ = ["ApptainerRunner"]

#: The programs looked for on PATH, in this order, when no ``command`` is given.
PROGRAMS = ("apptainer", "singularity")


class ApptainerRunner(Runner):
    """Execute each task in an Apptainer (or SingularityCE) container, with an optional setup.

    The argv is::

        apptainer exec [--nv | --rocm] [--bind B ...] [--env SETTING ...] [OPTION ...] IMAGE /bin/bash -c SCRIPT

    SCRIPT is what :class:`~mpifarmer.runners.ShifterRunner` runs (``SETUP && { TASK }``, in a
    temporary directory with ``tempdir``). Apptainer passes the environment in and starts in the
    current directory, so the task has mpifarmer's variables and its own ``env``, and runs
    where it would without a container; its processes keep the CPU affinity it was started
    with. A task given GPUs gets ``--nv`` (NVIDIA) or ``--rocm`` (AMD), and its
    ``CUDA_VISIBLE_DEVICES`` (or ``ROCR_VISIBLE_DEVICES``) selects its GPUs among those bound in.

    Options:

    ``image``
        A SIF file, a sandbox directory or a URI such as ``docker://ubuntu:22.04``. Required.
    ``setup``
        Shell commands run in the container before the task, which runs only if they succeed.
    ``binds``
        Bind paths (``/host[:/container[:options]]``), space-separated or a list: ``--bind`` each.
    ``environment``
        Settings ``NAME=VALUE``, space-separated or a list: ``--env`` each.
    ``options``
        More words for ``exec`` as they stand (``--contain``, ``--writable-tmpfs``...). With
        ``--cleanenv``, mpifarmer's variables do not reach the task.
    ``gpu``
        How a task's GPUs enter the container: ``auto`` (default: as the farmer found them,
        NVIDIA's way unless they are AMD's), ``nvidia``, ``amd``, or ``none``.
    ``tempdir``
        When true, each task runs in a fresh temporary directory inside the container.
    ``command``
        The program: a name on PATH or a path. Default: ``apptainer`` if it is on PATH, else
        ``singularity`` if that is, else ``apptainer``.

    Example (INI)::

        [sim]
        Runner = mpifarmer.runners.ApptainerRunner
        image = /project/images/sim.sif
        binds = /scratch
        setup = source /opt/sim/env.sh
    """

    def __init__(self, image: str, setup: str = "", binds: str | list[str] = "", environment: str | list[str] = "",
                 options: str | list[str] = "", gpu: str = "auto", tempdir: bool | str = False,
                 command: str = "") -> None:
        if not isinstance(image, str) or not image.strip():
            raise ValueError(f"image must be a non-empty string naming an image, not {image!r}")
        for name, value in (("setup", setup), ("command", command)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string, not {type(value).__name__}")
        self.image = image.strip()
        self.setup = setup.strip()
        self.binds = parse_words("binds", binds)
        self.environment = parse_environment("environment", environment)
        if any("=" not in setting for setting in self.environment):
            raise ValueError("environment must hold NAME=VALUE settings (Apptainer passes the rest in)")
        self.options = parse_words("options", options)
        self.gpu = parse_choice("gpu", gpu, GPU_CHOICES)
        self.tempdir = parse_bool("tempdir", tempdir)
        # Resolved once, here, so that build stays pure; a missing program fails each task with
        # exit code 127 and the reason in its log, not the farmer.
        self.command = command.strip() or _installed()

    def __repr__(self) -> str:
        return (f"ApptainerRunner(image={self.image!r}, setup={self.setup!r}, binds={self.binds!r}, "
                f"environment={self.environment!r}, options={self.options!r}, gpu={self.gpu!r}, "
                f"tempdir={self.tempdir!r}, command={self.command!r})")

    def build(self, task: Task) -> list[str]:
        """Return the ``apptainer exec`` argv that runs ``task.command`` in the image."""
        argv = [self.command, "exec", *_gpu_flags(self.gpu, task)]
        argv += [f"--bind={bind}" for bind in self.binds]
        argv += [f"--env={setting}" for setting in self.environment]
        return [*argv, *self.options, self.image, "/bin/bash", "-c", guarded_script(task.command, self.setup,
                                                                                   self.tempdir)]


def _installed() -> str:
    for program in PROGRAMS:
        found = shutil.which(program)
        if found:
            return os.path.abspath(found)
    return PROGRAMS[0]


def _gpu_flags(choice: str, task: Task) -> list[str]:
    if not task.gpus or choice == "none":
        return []
    vendor = task.gpu_vendor if choice == "auto" else choice
    return ["--rocm"] if vendor == "amd" else ["--nv"]
