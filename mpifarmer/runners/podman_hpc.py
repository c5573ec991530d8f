"""Run each task in a container with ``podman-hpc run`` (NERSC's Podman for HPC)."""

from __future__ import annotations

from mpifarmer.runners.base import Runner
from mpifarmer.runners.options import GPU_CHOICES, parse_bool, parse_choice, parse_environment, parse_words
from mpifarmer.runners.shifter import guarded_script
from mpifarmer.task import RUN_VARIABLES, Task

__all__ = ["PodmanHPCRunner"]


class PodmanHPCRunner(Runner):
    """Execute each task in a podman-hpc container, with an optional setup command.

    The argv is::

        podman-hpc run --rm [--gpu] [-v V ...] [-w DIR] -e NAME ... [-e SETTING ...] [OPTION ...]
            IMAGE /bin/bash -c SCRIPT

    SCRIPT is what :class:`~mpifarmer.runners.ShifterRunner` runs (``SETUP && { TASK }``, in a
    temporary directory with ``tempdir``). Podman passes no environment into a container
    unless asked, so the argv names (``-e NAME``, taking the value the task has) every variable
    mpifarmer sets for a run (:data:`mpifarmer.task.RUN_VARIABLES`: the task ID, its CPUs and
    ``OMP_NUM_THREADS``, its GPUs in ``CUDA_VISIBLE_DEVICES`` and the like) and those of the
    task's own ``env``. A task given GPUs gets ``--gpu`` (podman-hpc's NVIDIA module: it binds
    the node's GPUs, and ``CUDA_VISIBLE_DEVICES`` selects the task's among them); on AMD GPUs
    ``--device=/dev/kfd --device=/dev/dri`` instead. The container starts in the image's working
    directory unless ``workdir`` says otherwise; its processes keep the CPU affinity the task
    was started with.

    Options:

    ``image``
        The image, e.g. ``docker.io/library/ubuntu:22.04`` or one migrated with
        ``podman-hpc migrate``. Required.
    ``setup``
        Shell commands run in the container before the task, which runs only if they succeed.
    ``volumes``
        Volume bindings (``/host:/container[:options]``), space-separated or a list: ``-v`` each.
    ``environment``
        Settings ``NAME=VALUE`` (or ``NAME``, passed on), space-separated or a list: ``-e`` each.
    ``workdir``
        The directory the container starts in (``-w``).
    ``options``
        More words for ``podman-hpc run`` as they stand (``--mpi``, ``--squash-dir``...).
    ``gpu``
        How a task's GPUs enter the container: ``auto`` (default: as the farmer found them,
        NVIDIA's way unless they are AMD's), ``nvidia``, ``amd``, or ``none``.
    ``tempdir``
        When true, each task runs in a fresh temporary directory inside the container.
    ``command``
        The program to run (default ``podman-hpc``; ``podman`` works for tests without GPUs).

    Example (YAML)::

        pytorch:
          Runner: mpifarmer.runners.PodmanHPCRunner
          image: nvcr.io/nvidia/pytorch:24.01-py3
          volumes: [/pscratch/sd/u/user:/data]
          workdir: /data
    """

    def __init__(self, image: str, setup: str = "", volumes: str | list[str] = "",
                 environment: str | list[str] = "", workdir: str = "", options: str | list[str] = "",
                 gpu: str = "auto", tempdir: bool | str = False, command: str = "podman-hpc") -> None:
        if not isinstance(image, str) or not image.strip():
            raise ValueError(f"image must be a non-empty string naming an image, not {image!r}")
        for name, value in (("setup", setup), ("workdir", workdir), ("command", command)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a string, not {type(value).__name__}")
        if not command.strip():
            raise ValueError("command must name the podman-hpc program (or podman)")
        self.image = image.strip()
        self.setup = setup.strip()
        self.volumes = parse_words("volumes", volumes)
        self.environment = parse_environment("environment", environment)
        self.workdir = workdir.strip()
        self.options = parse_words("options", options)
        self.gpu = parse_choice("gpu", gpu, GPU_CHOICES)
        self.tempdir = parse_bool("tempdir", tempdir)
        self.command = command.strip()

    def __repr__(self) -> str:
        return (f"PodmanHPCRunner(image={self.image!r}, setup={self.setup!r}, volumes={self.volumes!r}, "
                f"environment={self.environment!r}, workdir={self.workdir!r}, options={self.options!r}, "
                f"gpu={self.gpu!r}, tempdir={self.tempdir!r}, command={self.command!r})")

    def build(self, task: Task) -> list[str]:
        """Return the ``podman-hpc run`` argv that runs ``task.command`` in the image."""
        argv = [self.command, "run", "--rm", *_gpu_flags(self.gpu, task)]
        argv += [f"--volume={volume}" for volume in self.volumes]
        if self.workdir:
            argv.append(f"--workdir={self.workdir}")
        env = task.attrs.get("env")
        own = [name for name in (env if isinstance(env, dict) else {}) if name not in RUN_VARIABLES]
        names = [*RUN_VARIABLES, *own]
        argv += [f"--env={name}" for name in names]
        argv += [f"--env={setting}" for setting in self.environment]
        return [*argv, *self.options, self.image, "/bin/bash", "-c", guarded_script(task.command, self.setup,
                                                                                   self.tempdir)]


def _gpu_flags(choice: str, task: Task) -> list[str]:
    if not task.gpus or choice == "none":
        return []
    vendor = task.gpu_vendor if choice == "auto" else choice
    return ["--device=/dev/kfd", "--device=/dev/dri"] if vendor == "amd" else ["--gpu"]
