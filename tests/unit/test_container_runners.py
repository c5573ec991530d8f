"""The podman-hpc and Apptainer runners: their argv lists, compared exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mpifarmer.config import load_runner_definitions, make_runner
from mpifarmer.errors import ConfigError
from mpifarmer.runners import ApptainerRunner, PodmanHPCRunner, ShifterRunner
from mpifarmer.task import RUN_VARIABLES, Task

PASSED = [f"--env={name}" for name in RUN_VARIABLES]
ROCM = ["--device=/dev/kfd", "--device=/dev/dri"]


def task(command: str = "echo hi", gpus: int = 0, vendor: str | None = None, env: dict | None = None) -> Task:
    return Task(0, command, command, {"env": env} if env else {}, gpus=gpus, gpu_vendor=vendor)


# --- podman-hpc -------------------------------------------------------------------------------


def test_podman_hpc_minimal() -> None:
    assert PodmanHPCRunner("ubuntu:22.04").build(task()) == [
        "podman-hpc", "run", "--rm", *PASSED, "ubuntu:22.04", "/bin/bash", "-c", "echo hi"]


def test_podman_hpc_every_option() -> None:
    runner = PodmanHPCRunner("img", setup="source /env.sh", volumes="/a:/x /b:/y:ro", environment="A=1 B",
                             workdir="/x", options="--mpi --squash-dir=/tmp/s", tempdir=False, command="podman")
    argv = runner.build(task("a || b", gpus=2, vendor="nvidia", env={"COLOUR": "teal", "OMP_NUM_THREADS": "3"}))
    assert argv == ["podman", "run", "--rm", "--gpu", "--volume=/a:/x", "--volume=/b:/y:ro", "--workdir=/x",
                    *PASSED, "--env=COLOUR", "--env=A=1", "--env=B", "--mpi", "--squash-dir=/tmp/s", "img",
                    "/bin/bash", "-c", "source /env.sh && { a || b\n}"]


@pytest.mark.parametrize(("gpu", "vendor", "flags"), [
    ("auto", "nvidia", ["--gpu"]), ("auto", None, ["--gpu"]), ("auto", "amd", ROCM), ("nvidia", "amd", ["--gpu"]),
    ("amd", None, ROCM), ("none", "nvidia", []),
])
def test_podman_hpc_passes_a_task_s_gpus_the_way_its_vendor_needs(gpu: str, vendor: str | None,
                                                                  flags: list[str]) -> None:
    argv = PodmanHPCRunner("img", gpu=gpu).build(task(gpus=1, vendor=vendor))
    assert argv[3:3 + len(flags)] == flags and argv[3 + len(flags)] == PASSED[0]
    assert PodmanHPCRunner("img", gpu=gpu).build(task(gpus=0, vendor=vendor))[3] == PASSED[0]  # no GPU, no flag


def test_podman_hpc_tempdir_runs_the_shifter_script() -> None:
    argv = PodmanHPCRunner("img", setup="s", tempdir="yes").build(task("t"))
    assert argv[-1] == ShifterRunner("img", setup="s", tempdir=True).script("t")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"image": " "}, "image must be"), ({"image": "i", "gpu": "intel"}, "gpu must be one of auto, nvidia, amd, none"),
    ({"image": "i", "environment": "=1"}, "names no variable"), ({"image": "i", "command": " "}, "command must name"),
    ({"image": "i", "tempdir": "maybe"}, "tempdir must be true or false"),
])
def test_podman_hpc_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PodmanHPCRunner(**kwargs)


# --- Apptainer --------------------------------------------------------------------------------


def test_apptainer_minimal_and_every_option() -> None:
    assert ApptainerRunner("img.sif", command="apptainer").build(task()) == [
        "apptainer", "exec", "img.sif", "/bin/bash", "-c", "echo hi"]
    runner = ApptainerRunner("docker://ubuntu:22.04", setup="module load x", binds="/scratch /data:/d:ro",
                             environment=["A=1 2"], options="--contain", command="/opt/bin/singularity")
    assert runner.build(task("run", gpus=1, vendor="nvidia")) == [
        "/opt/bin/singularity", "exec", "--nv", "--bind=/scratch", "--bind=/data:/d:ro", "--env=A=1 2", "--contain",
        "docker://ubuntu:22.04", "/bin/bash", "-c", "module load x && { run\n}"]


@pytest.mark.parametrize(("gpu", "vendor", "flags"), [
    ("auto", "nvidia", ["--nv"]), ("auto", None, ["--nv"]), ("auto", "amd", ["--rocm"]), ("amd", "nvidia", ["--rocm"]),
    ("nvidia", "amd", ["--nv"]), ("none", "amd", []),
])
def test_apptainer_passes_a_task_s_gpus_the_way_its_vendor_needs(gpu: str, vendor: str | None,
                                                                 flags: list[str]) -> None:
    runner = ApptainerRunner("i", gpu=gpu, command="apptainer")
    assert runner.build(task(gpus=2, vendor=vendor)) == ["apptainer", "exec", *flags, "i", "/bin/bash", "-c", "echo hi"]
    assert runner.build(task(gpus=0, vendor=vendor)) == ["apptainer", "exec", "i", "/bin/bash", "-c", "echo hi"]


def test_apptainer_takes_whichever_program_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ApptainerRunner("i").command == "apptainer"  # neither: named, and each task fails saying so
    singularity = tmp_path / "singularity"
    singularity.write_text("#!/bin/sh\n")
    singularity.chmod(0o755)
    assert ApptainerRunner("i").command == str(singularity)
    apptainer = tmp_path / "apptainer"
    shutil.copy(singularity, apptainer)
    assert ApptainerRunner("i").command == str(apptainer)  # both: Apptainer's own name first
    assert ApptainerRunner("i", command="singularity").command == "singularity"


def test_apptainer_environment_needs_values() -> None:
    with pytest.raises(ValueError, match="NAME=VALUE settings"):
        ApptainerRunner("i", environment="A")


def test_both_are_defined_like_any_runner(tmp_path: Path) -> None:
    runners = tmp_path / ".mpifarmer" / "runners.d"
    runners.mkdir(parents=True)
    (runners / "c.yaml").write_text("gpu:\n  Runner: mpifarmer.runners.PodmanHPCRunner\n  image: img\n"
                                    "  volumes: [/a:/b]\n"
                                    "sif:\n  Runner: mpifarmer.runners.ApptainerRunner\n  image: x.sif\n  gpu: amd\n")
    definitions = load_runner_definitions(tmp_path)
    assert isinstance(make_runner("gpu", definitions), PodmanHPCRunner)
    assert make_runner("sif", definitions).build(task(gpus=1))[2] == "--rocm"  # type: ignore[union-attr]
    (runners / "c.yaml").write_text("bad:\n  Runner: mpifarmer.runners.PodmanHPCRunner\n  image: img\n  gpus: 1\n")
    with pytest.raises(ConfigError, match="unknown key 'gpus'.*did you mean 'gpu'"):
        load_runner_definitions(tmp_path)
