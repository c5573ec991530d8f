"""Fixtures for tests that run against the real single-host Slurm test cluster.

The session fixture ``slurm_cluster`` runs ``slurm/testcluster/up.sh`` (which
installs and starts Slurm if needed, and is a quick health check when the
cluster is already up). A cluster this session started is stopped again with
``down.sh`` when the session ends; one that was already up is left running.
Set ``MPIFARMER_SKIP_SLURM=1`` to skip these tests;
otherwise a failing up.sh is reported as a test error, never as a skip.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UP_SH = REPO / "slurm" / "testcluster" / "up.sh"
DOWN_SH = REPO / "slurm" / "testcluster" / "down.sh"
DAEMONS = ("slurmctld", "slurmd", "munged")
HERE = Path(__file__).resolve().parent

# Cold start installs packages with apt; give it plenty of time.
UP_TIMEOUT = 600
# Default bound for any single Slurm command in the tests.
CMD_TIMEOUT = 120


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slurm: runs against the real single-host Slurm test cluster "
        "(slurm/testcluster/up.sh); set MPIFARMER_SKIP_SLURM=1 to skip",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every test under tests/slurm is a cluster test.
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.slurm)


def clean_env() -> dict[str, str]:
    """The current environment without the variables of any enclosing Slurm job.

    If pytest itself runs inside a job or step, inherited SLURM_JOB_ID etc.
    would make srun/sbatch act inside that job instead of the test cluster.
    """
    return {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("SLURM_") and not k.startswith("SLURM_CI_")) or k == "SLURM_CONF"
    }


@dataclass
class SlurmCluster:
    """Handle on the running test cluster."""

    env: dict[str, str] = field(default_factory=clean_env)
    up_output: str = ""

    def run(
        self,
        args: list[str],
        *,
        timeout: float = CMD_TIMEOUT,
        check: bool = True,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command with a timeout; on failure, fail with its output."""
        full_env = dict(self.env)
        if env:
            full_env.update(env)
        try:
            proc = subprocess.run(
                args,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"{args!r} did not finish within {timeout} s\n"
                f"stdout:\n{exc.stdout!r}\nstderr:\n{exc.stderr!r}\n"
                f"squeue:\n{self._squeue()}",
                pytrace=False,
            )
        if check and proc.returncode != 0:
            pytest.fail(
                f"{args!r} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}",
                pytrace=False,
            )
        return proc

    def _squeue(self) -> str:
        try:
            return subprocess.run(
                ["squeue"], capture_output=True, text=True, timeout=10, env=self.env
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:  # pragma: no cover
            return f"(squeue failed: {exc})"


def daemons_running() -> set[str]:
    """Which of the test cluster's daemons run on this host now."""
    running = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                name = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if name in DAEMONS:
                running.add(name)
    return running


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    if os.environ.get("MPIFARMER_SKIP_SLURM") == "1":
        pytest.skip("MPIFARMER_SKIP_SLURM=1: Slurm cluster tests skipped")
    was_up = daemons_running()
    cluster = SlurmCluster()
    try:
        proc = subprocess.run(
            ["bash", str(UP_SH)],
            capture_output=True,
            text=True,
            timeout=UP_TIMEOUT,
            env=cluster.env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{UP_SH} did not finish within {UP_TIMEOUT} s\n"
            f"stdout:\n{exc.stdout!r}\nstderr:\n{exc.stderr!r}",
            pytrace=False,
        )
    if proc.returncode != 0:
        pytest.fail(
            f"{UP_SH} failed (exit {proc.returncode}); "
            "set MPIFARMER_SKIP_SLURM=1 to skip the Slurm tests\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}",
            pytrace=False,
        )
    cluster.up_output = proc.stderr
    yield cluster
    if not was_up:  # this session started it: leave the machine as it found it
        subprocess.run(["bash", str(DOWN_SH)], capture_output=True, timeout=120, env=cluster.env,
                       stdin=subprocess.DEVNULL)
