"""The container runners under real farmers: podman-hpc and Apptainer as stand-ins, and Podman for real.

This machine has neither podman-hpc (NERSC's wrapper, not packaged by Debian) nor Apptainer or
Singularity (not in Debian 12), and no GPU. So each is replaced by a *stand-in executable* on
PATH that records the argv it was given and then does what the tool does with its environment
(podman passes in only the variables named with ``--env``; Apptainer passes in everything, plus
``--env`` settings) and runs the task's ``/bin/bash -c SCRIPT`` on the host. The GPUs are the
fake inventory ``--gpus 0,1,2,3``.

Where Debian's ``podman`` (with ``runc``) can run containers, one test runs the podman-hpc
runner's argv with ``podman`` itself (``command = podman``: the argv is podman-hpc's but for
``--gpu``, which only podman-hpc knows) in an image built here from the host's own binaries,
with storage and configuration of its own under the test's temporary directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from farmhelpers import journal, run_farmer, write_list

#: Records its argv as a JSON line, then runs the container's command (the last 3 words) as the
#: tool would: with only the variables named by --env (podman) or with everything (apptainer).
STAND_IN = '''#!{python}
import json, os, sys
argv = sys.argv
with open({record!r}, "a") as stream:
    stream.write(json.dumps([os.path.basename(argv[0])] + argv[1:]) + "\\n")
settings = [word[len("--env="):] for word in argv if word.startswith("--env=")]
env = {{}} if {podman} else dict(os.environ)
for setting in settings:
    name, equals, value = setting.partition("=")
    if equals:
        env[name] = value
    elif name in os.environ:
        env[name] = os.environ[name]
env.setdefault("PATH", "/usr/bin:/bin")
os.execve("/bin/bash", argv[-3:], env)
'''

#: What each task writes: its ID, then the variables it saw inside the "container".
SHOWN = ("PROC_NUMBER", "MPIFARMER_GPUS", "CUDA_VISIBLE_DEVICES", "MPIFARMER_CPUS", "OMP_NUM_THREADS", "COLOUR",
         "SECRET", "FROM_RUNNER")


def stand_in(directory: Path, name: str, record: Path, podman: bool) -> None:
    directory.mkdir(exist_ok=True)
    program = directory / name
    program.write_text(STAND_IN.format(python=sys.executable, record=str(record), podman=podman))
    program.chmod(0o755)


def define(home: Path, text: str) -> None:
    runners = home / ".mpifarmer" / "runners.d"
    runners.mkdir(parents=True, exist_ok=True)
    (runners / "containers.yaml").write_text(text)


def task_lines(out: Path) -> list[str]:
    shown = "|".join(f"${name}" for name in SHOWN)
    return [json.dumps({"cmd": f': {task}; echo "{shown}" >> {out}', **extra}) for task, extra in enumerate((
        {"gpus": 1}, {"gpus": 0, "env": {"COLOUR": "teal"}}, {"gpus": 2}, {"gpus": 0}, {"gpus": 1}))]


def seen(out: Path) -> dict[int, dict[str, str]]:
    found = {}
    for line in out.read_text().splitlines():
        values = dict(zip(SHOWN, line.split("|"), strict=True))
        found[int(values["PROC_NUMBER"])] = values
    return found


@pytest.mark.parametrize("tool", ["podman-hpc", "apptainer"])
def test_a_container_runner_passes_each_task_its_gpus_and_variables(tmp_path: Path, clean_home: dict[str, str],
                                                                    tool: str) -> None:
    record, out, bin_dir = tmp_path / "argv", tmp_path / "out", tmp_path / "bin"
    stand_in(bin_dir, tool, record, podman=tool == "podman-hpc")
    home = Path(clean_home["HOME"])
    cls = "PodmanHPCRunner" if tool == "podman-hpc" else "ApptainerRunner"
    define(home, f"box:\n  Runner: mpifarmer.runners.{cls}\n  image: example.org/image:1\n"
                 "  environment: [FROM_RUNNER=yes]\n")
    tasks = write_list(tmp_path / "tasks.jsonl", task_lines(out))
    env = dict(clean_home, PATH=f"{bin_dir}{os.pathsep}{clean_home['PATH']}", SECRET="host-only")
    result = run_farmer(tasks, "-t", "jsonl", "-r", "box", "-n", "2", "--gpus", "0,1,2,3", "--gpus-per-task", "1",
                        cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    calls = {}
    for line in record.read_text().splitlines():
        argv = json.loads(line)
        script = argv[-1]
        calls[next(i for i, text in enumerate(task_lines(out)) if json.loads(text)["cmd"] == script)] = argv
    assert sorted(calls) == [0, 1, 2, 3, 4]
    gpu_flag = "--gpu" if tool == "podman-hpc" else "--nv"
    found = seen(out)
    ends = {r["id"]: r for r in journal(tmp_path / "tasks.jsonl_workdir") if r["e"] == "end"}
    for task, argv in calls.items():
        wanted = json.loads(task_lines(out)[task]).get("gpus")
        assert argv[:2] == [tool, "run" if tool == "podman-hpc" else "exec"]
        assert (gpu_flag in argv) == bool(wanted), (task, argv)
        assert argv[-4:-1] == ["example.org/image:1", "/bin/bash", "-c"]
        assert "--env=FROM_RUNNER=yes" in argv and found[task]["FROM_RUNNER"] == "yes"
        assert found[task]["MPIFARMER_GPUS"] == found[task]["CUDA_VISIBLE_DEVICES"] == ends[task].get("gpus", "")
        assert len([gpu for gpu in found[task]["MPIFARMER_GPUS"].split(",") if gpu]) == wanted
    assert found[1]["COLOUR"] == "teal"  # the task's own env, named with --env for podman
    # Podman passes in only what is named; Apptainer everything.
    assert {values["SECRET"] for values in found.values()} == ({""} if tool == "podman-hpc" else {"host-only"})


def _podman_works(env: dict[str, str]) -> bool:
    if shutil.which("podman") is None or shutil.which("runc") is None:
        return False
    probe = subprocess.run(["podman", "images"], env=env, capture_output=True, timeout=60)
    return probe.returncode == 0


def mini_image(tmp_path: Path, env: dict[str, str]) -> str:
    """An image of the host's own bash and a few tools with their libraries, imported into podman."""
    root = tmp_path / "rootfs"
    for program in ("bash", "cat", "grep", "cut", "env"):
        path = Path(shutil.which(program) or f"/bin/{program}")
        linked = subprocess.run(["ldd", path], capture_output=True, text=True).stdout.split()
        files = [path, *(Path(lib) for lib in linked if lib.startswith("/"))]
        for file in files:
            target = root / file.relative_to("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file.resolve(), target)
    if not (root / "bin").exists():  # a merged /usr: the argv's /bin/bash is /usr/bin/bash
        (root / "bin").symlink_to("usr/bin")
    for directory in ("proc", "sys", "dev", "tmp", "data"):
        (root / directory).mkdir(exist_ok=True)
    (root / "in-the-image").write_text("yes\n")
    tar = subprocess.run(["tar", "-C", root, "-c", "."], capture_output=True, check=True).stdout
    subprocess.run(["podman", "import", "-", "localhost/mpifarmer-test:1"], input=tar, env=env, check=True,
                   capture_output=True, timeout=120)
    return "localhost/mpifarmer-test:1"


def test_the_podman_hpc_runner_s_argv_runs_for_real_with_podman(tmp_path: Path, clean_home: dict[str, str]) -> None:
    """podman (Debian's, with runc) stands in for podman-hpc, whose run options it shares."""
    conf, storage = tmp_path / "containers.conf", tmp_path / "storage.conf"
    # This VM's cgroups are a v1/v2 hybrid, which crun refuses and runc handles; its root lacks
    # CAP_SYS_RESOURCE, so podman's default ulimits (above the hard limits here) cannot be set.
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\nnetns = "none"\n'
                    '[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "none"\n')
    storage.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_path / "graph"}"\n'
                       f'runroot = "{tmp_path / "run"}"\n')
    env = dict(clean_home, CONTAINERS_CONF=str(conf), CONTAINERS_STORAGE_CONF=str(storage))
    if not _podman_works(env):
        pytest.skip("podman and runc cannot run here (apt-get install podman runc)")
    image = mini_image(tmp_path, env)
    data = tmp_path / "data"
    data.mkdir()
    define(Path(clean_home["HOME"]), f"podman:\n  Runner: mpifarmer.runners.PodmanHPCRunner\n  image: {image}\n"
                                     f"  command: podman\n  volumes: [{data}:/data]\n  workdir: /data\n"
                                     "  setup: test -e /in-the-image\n")
    shown = "$PROC_NUMBER|$MPIFARMER_CPUS|$OMP_NUM_THREADS|$(grep Cpus_allowed_list /proc/self/status | cut -f2)|"
    tasks = write_list(tmp_path / "tasks.txt", [f'echo "{shown}$(cat /in-the-image)" > out.$PROC_NUMBER'
                                                for _ in range(4)])
    result = run_farmer(tasks, "-r", "podman", "--cores-per-task", "1", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr + "".join(
        path.read_text() for path in (tmp_path / "tasks.txt_workdir" / "logs").glob("log_*"))
    cpus = {str(cpu) for cpu in os.sched_getaffinity(0)}
    for task in range(4):
        ident, bound, threads, allowed, inside = (data / f"out.{task}").read_text().strip().split("|")
        assert ident == str(task) and inside == "yes"  # it ran in the image, in the volume's directory
        assert bound == allowed and bound in cpus and threads == "1"  # bound to its CPU in the container too
